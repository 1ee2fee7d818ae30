//! `lathe inspect`: a model's signature, op histogram and parameter counts, as text or JSON.

use super::opt::OptArgs;
use anyhow::Result;
use clap::Args;
use lathe_compiler::import::tensorflow::saved_model::{self, describe, SavedModelInfo};
use lathe_compiler::pipeline::{NoHooks, PassRecord};
use lathe_ir::{Dim, Graph, TensorType};
use lathe_runtime::cpu::PlanStats;
use lathe_runtime::{Backend, Model, ModelOptions, Specialization};
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Arguments of `lathe inspect`.
#[derive(Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub model: super::source::ModelArgs,
    /// Print JSON (keys: inputs, outputs, ops, nodes, params, param_bytes, nodes_optimized,
    /// passes).
    #[arg(long)]
    pub json: bool,
    /// The optimization whose effect `nodes_optimized` and `passes` report.
    #[command(flatten)]
    pub opt: OptArgs,
}

/// Runs `lathe inspect`.
pub fn run(args: InspectArgs) -> Result<()> {
    let file = args.model.artifact_file()?;
    if let Some(f) = &file {
        // Every section's checksum, the plans' too, which nothing below reads.
        f.verify()
            .map_err(|error| lathe_runtime::RunError::Artifact {
                path: Some(args.model.model.clone()),
                error,
            })?;
    }
    // Each specialization's stored plan (its bytes and its packed weights' bytes).
    let plans = file.as_ref().map_or_else(Vec::new, |f| f.plan_sizes());
    let artifact = file.map(|f| args.model.decode(&f)).transpose()?;
    let format = match &artifact {
        Some(_) => None,
        None => Some(lathe_compiler::ModelFormat::detect(&args.model.model)?),
    };
    let g = match &artifact {
        Some(a) => a.declared().clone(),
        None => args.model.load()?,
    };
    let saved = if format == Some(lathe_compiler::ModelFormat::SavedModel) {
        Some(describe(&args.model.model, args.model.tag.as_deref())?)
    } else {
        None
    };
    let onnx = if format == Some(lathe_compiler::ModelFormat::Onnx) {
        Some(lathe_compiler::import::onnx::model_info(&args.model.model)?)
    } else {
        None
    };
    // An artifact's first specialization, else the declared types with unknown dims as 1.
    let stored = artifact.as_ref().and_then(|a| a.specializations.first());
    let types = match stored {
        Some(s) => s.inputs().iter().map(|i| i.ty.clone()).collect(),
        None => super::declared_signature(&g),
    };
    let options = args.opt.model_options(ModelOptions {
        backend: Backend::Cpu,
        threads: Some(1),
        ..ModelOptions::default()
    })?;
    let signature = super::describe_signature(&g, &types);
    let stored_report = match (&artifact, stored) {
        (Some(a), Some(optimized)) => {
            // The stored specialization, compiled with no passes, as `run` loads it.
            let model = Model::from_artifact(a.clone(), options.clone())?;
            let spec = model.specialize_for(&types)?;
            let mut r = Report::of(&g, optimized, Vec::new());
            r.plan = Some(PlanReport::of(&spec, signature.clone()));
            Some(r)
        }
        _ => None,
    };
    // What `lathe run` executes for these shapes: the specialization, optimized and compiled
    // once. When the CPU compile fails, the optimized graph is still reported, with the error.
    let report = match stored_report {
        Some(r) => r,
        None => {
            let model = Model::with_options(g.clone(), options)?;
            match model.compile_uncached(&types, &mut NoHooks) {
                Ok(spec) => {
                    let optimized = spec
                        .graph()
                        .ok_or_else(|| anyhow::anyhow!("the specialization kept no graph"))?;
                    let mut r = Report::of(&g, optimized, spec.passes().to_vec());
                    r.plan = Some(PlanReport::of(&spec, signature));
                    r
                }
                Err(e) => {
                    let (optimized, passes) = model.optimized_graph(&types, &mut NoHooks)?;
                    let mut r = Report::of(&g, optimized.graph(), passes);
                    r.plan = Some(PlanReport {
                        signature,
                        stats: Err(e.to_string()),
                        interpreted: vec![],
                    });
                    r
                }
            }
        }
    };
    let loaded = args
        .model
        .signature
        .as_deref()
        .unwrap_or(saved_model::DEFAULT_SIGNATURE);
    if args.json {
        let mut j = report.to_json();
        if let Some(a) = &artifact {
            let plans: Vec<Value> = (plans.iter())
                .map(|p| match p {
                    Some((plan, blob)) => json!({"plan_bytes": plan, "blob_bytes": blob}),
                    None => Value::Null,
                })
                .collect();
            j["artifact"] = json!({
                "format_version": lathe_compiler::artifact::FORMAT_VERSION,
                "meta": a.meta,
                "generic": a.generic.is_some(),
                "plans": plans,
            });
        }
        if let Some(info) = &saved {
            j["saved_model"] = saved_model_json(info, loaded);
        }
        if let Some(info) = &onnx {
            let opsets: serde_json::Map<String, Value> = info
                .opsets
                .iter()
                .map(|(d, v)| (d.clone(), json!(v)))
                .collect();
            j["onnx"] = json!({
                "ir_version": info.ir_version,
                "producer_name": info.producer_name,
                "producer_version": info.producer_version,
                "opsets": opsets,
            });
        }
        println!("{}", serde_json::to_string_pretty(&j)?);
    } else {
        if let Some(a) = &artifact {
            println!(
                "artifact: format {} by {}, compiled from {} with `{}`; {} specialization(s): {}; \
                 generic graph {}",
                lathe_compiler::artifact::FORMAT_VERSION,
                a.meta.producer,
                a.meta.source,
                a.meta.pipeline,
                a.meta.specializations.len(),
                a.meta.specializations.join(", "),
                if a.generic.is_some() {
                    "kept"
                } else {
                    "left out"
                }
            );
            for (sig, plan) in a.meta.specializations.iter().zip(&plans) {
                match plan {
                    Some((p, blob)) => println!(
                        "  {sig}: compiled plan stored ({p} bytes, arrays {blob} bytes), loads without compiling"
                    ),
                    None => println!("  {sig}: no compiled plan stored, compiled when loaded"),
                }
            }
        }
        if let Some(info) = &saved {
            print!("{}", saved_model_text(info, loaded));
        }
        if let Some(info) = &onnx {
            let opsets: Vec<String> = info
                .opsets
                .iter()
                .map(|(d, v)| format!("{d} {v}"))
                .collect();
            println!(
                "onnx model: IR version {}, produced by {} {}, operator sets: {}",
                info.ir_version,
                if info.producer_name.is_empty() {
                    "(unknown)"
                } else {
                    &info.producer_name
                },
                info.producer_version,
                opsets.join(", ")
            );
        }
        print!("{}", report.to_text());
    }
    Ok(())
}

/// A SavedModel's tag sets, signatures (the loaded one marked) and functions, as text.
fn saved_model_text(info: &SavedModelInfo, loaded: &str) -> String {
    let tags: Vec<String> = info.tag_sets.iter().map(|t| t.join(",")).collect();
    let mut s = format!("saved model: tag sets {}\n", tags.join("; "));
    s.push_str("signatures:\n");
    for sig in &info.signatures {
        let io = |v: &[(String, String)]| {
            v.iter()
                .map(|(k, t)| format!("{k}: {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mark = if sig.name == loaded { "  (loaded)" } else { "" };
        s.push_str(&format!(
            "  {}({}) -> ({}){mark}\n",
            sig.name,
            io(&sig.inputs),
            io(&sig.outputs)
        ));
    }
    s.push_str(&format!("functions: {}\n", info.functions.len()));
    for f in &info.functions {
        s.push_str(&format!("  {f}\n"));
    }
    s
}

/// The same as JSON: `{tag_sets, loaded_signature, signatures: {name: {method, inputs,
/// outputs}}, functions}`.
fn saved_model_json(info: &SavedModelInfo, loaded: &str) -> Value {
    let io = |v: &[(String, String)]| -> Value {
        v.iter()
            .map(|(k, t)| (k.clone(), json!(t)))
            .collect::<serde_json::Map<_, _>>()
            .into()
    };
    let sigs: serde_json::Map<String, Value> = info
        .signatures
        .iter()
        .map(|s| {
            (
                s.name.clone(),
                json!({"method": s.method, "inputs": io(&s.inputs), "outputs": io(&s.outputs)}),
            )
        })
        .collect();
    json!({
        "tag_sets": info.tag_sets,
        "loaded_signature": loaded,
        "signatures": sigs,
        "functions": info.functions,
    })
}

/// What `inspect` reports about a graph.
struct Report {
    inputs: Vec<(String, TensorType)>,
    outputs: Vec<(String, TensorType)>,
    ops: BTreeMap<&'static str, usize>,
    nodes: usize,
    params: usize,
    param_bytes: usize,
    nodes_optimized: usize,
    ops_optimized: BTreeMap<&'static str, usize>,
    passes: Vec<PassRecord>,
    plan: Option<PlanReport>,
}

/// The CPU backend's plan for one specialization: what `lathe run` would execute.
struct PlanReport {
    /// The signature compiled (unknown dims bound to 1), or why none could be.
    signature: String,
    stats: Result<(PlanStats, f64), String>,
    /// The steps the CPU backend runs on the interpreter: `(node, op, why)`, the capability
    /// query's or the kernel's answer.
    interpreted: Vec<(String, String, String)>,
}

impl PlanReport {
    /// The report of a compiled specialization's CPU plan.
    fn of(spec: &Specialization, signature: String) -> PlanReport {
        let ms = spec.compile_time().as_secs_f64() * 1e3;
        PlanReport {
            signature,
            stats: spec
                .plan_stats()
                .map(|s| (s, ms))
                .ok_or_else(|| "no cpu plan".to_string()),
            interpreted: spec
                .cpu_plan()
                .map(|p| p.interp_steps())
                .unwrap_or_default(),
        }
    }
}

fn histogram(g: &Graph) -> BTreeMap<&'static str, usize> {
    let mut ops = BTreeMap::new();
    for id in g.node_ids() {
        *ops.entry(g.node(id).op.mnemonic()).or_default() += 1;
    }
    ops
}

impl Report {
    fn of(g: &Graph, optimized: &Graph, passes: Vec<PassRecord>) -> Report {
        let (params, param_bytes) = g.param_stats();
        Report {
            inputs: g
                .inputs()
                .iter()
                .map(|i| (i.name.clone(), i.ty.clone()))
                .collect(),
            outputs: g
                .outputs()
                .iter()
                .map(|o| (o.name.clone(), g.value_type(o.value).clone()))
                .collect(),
            ops: histogram(g),
            nodes: g.len(),
            params,
            param_bytes,
            nodes_optimized: optimized.len(),
            ops_optimized: histogram(optimized),
            passes,
            plan: None,
        }
    }

    fn to_json(&self) -> Value {
        let sig = |v: &[(String, TensorType)]| -> Value {
            v.iter()
                .map(|(n, t)| {
                    let shape: Vec<Value> = t
                        .shape
                        .dims()
                        .iter()
                        .map(|d| match d {
                            Dim::Known(n) => json!(n),
                            other => json!(other.to_string()),
                        })
                        .collect();
                    json!({"name": n, "dtype": t.dtype.name(), "shape": shape})
                })
                .collect()
        };
        let plan = self.plan.as_ref().map(|p| match &p.stats {
            Ok((st, ms)) => json!({
                "signature": p.signature,
                "compile_ms": ms,
                "steps": st.steps,
                "gemm_steps": st.gemm_steps,
                "window_steps": st.window_steps,
                "generated_steps": st.generated_steps,
                "epilogues": st.epilogues,
                "parallel_waves": st.parallel_waves,
                "interp_steps": st.interp_steps,
                "control_steps": st.control_steps,
                "region_steps": st.region_steps,
                "interpreted": p.interpreted.iter().map(|(node, op, why)| json!({
                    "node": node, "op": op, "reason": why,
                })).collect::<Vec<_>>(),
                "arena_bytes": st.arena_bytes,
                "arena_lower_bound": st.arena_lower_bound,
                "output_bytes": st.output_bytes,
            }),
            Err(e) => json!({"signature": p.signature, "error": e}),
        });
        let peak = self
            .plan
            .as_ref()
            .and_then(|p| p.stats.as_ref().ok())
            .map(|(st, _)| st.arena_bytes);
        json!({
            "peak_arena_bytes": peak,
            "cpu_plan": plan,
            "inputs": sig(&self.inputs),
            "outputs": sig(&self.outputs),
            "ops": self.ops,
            "nodes": self.nodes,
            "params": self.params,
            "param_bytes": self.param_bytes,
            "nodes_optimized": self.nodes_optimized,
            "ops_optimized": self.ops_optimized,
            "passes": self.passes.iter().map(|p| json!({
                "name": p.name,
                "time_ms": p.time_ms,
                "changed": p.changed,
                "nodes_before": p.nodes_before,
                "nodes_after": p.nodes_after,
                "counters": p.counters,
            })).collect::<Vec<_>>(),
        })
    }

    fn to_text(&self) -> String {
        let mut s = String::new();
        s.push_str("inputs:\n");
        for (n, t) in &self.inputs {
            s.push_str(&format!("  {n}: {t}\n"));
        }
        s.push_str("outputs:\n");
        for (n, t) in &self.outputs {
            s.push_str(&format!("  {n}: {t}\n"));
        }
        let specialized = match &self.plan {
            Some(p) => format!(" of the specialization for {}", p.signature),
            None => String::new(),
        };
        s.push_str(&format!(
            "nodes: {} ({} after optimization{specialized})\n",
            self.nodes, self.nodes_optimized
        ));
        s.push_str(&format!(
            "params: {} ({})\n",
            self.params,
            human_bytes(self.param_bytes)
        ));
        s.push_str("ops:\n");
        let mut by_count: Vec<_> = self.ops.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in by_count {
            s.push_str(&format!("  {n:>6}  {op}\n"));
        }
        s.push_str("ops after optimization:\n");
        let mut by_count: Vec<_> = self.ops_optimized.iter().collect();
        by_count.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (op, n) in by_count {
            s.push_str(&format!("  {n:>6}  {op}\n"));
        }
        let total: f64 = self.passes.iter().map(|p| p.time_ms).sum();
        s.push_str(&format!(
            "passes: {} runs, {:.1} ms, {} changed the graph\n",
            self.passes.len(),
            total,
            self.passes.iter().filter(|p| p.changed).count()
        ));
        if let Some(p) = &self.plan {
            match &p.stats {
                Ok((st, ms)) => s.push_str(&format!(
                    "cpu plan for {}: {} steps{} ({} gemm, {} window, {} generated, {} epilogues fused, \
                     {} on the interpreter, {} waves of parallel branches), compiled in {ms:.1} ms\n\
                     peak arena: {} (lower bound {}), outputs {}\n",
                    p.signature,
                    st.steps,
                    match st.region_steps {
                        0 => String::new(),
                        n => format!(" and {n} more in loop and branch regions"),
                    },
                    st.gemm_steps,
                    st.window_steps,
                    st.generated_steps,
                    st.epilogues,
                    st.interp_steps,
                    st.parallel_waves,
                    human_bytes(st.arena_bytes),
                    human_bytes(st.arena_lower_bound),
                    human_bytes(st.output_bytes),
                )),
                Err(e) => s.push_str(&format!("cpu plan for {}: {e}\n", p.signature)),
            }
            for (node, op, why) in &p.interpreted {
                s.push_str(&format!("  on the interpreter: `{node}` ({op}): {why}\n"));
            }
        }
        s
    }
}

/// Bytes in B, KB, MB or GB (powers of 1000, one decimal).
fn human_bytes(n: usize) -> String {
    let units = ["B", "KB", "MB", "GB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}
