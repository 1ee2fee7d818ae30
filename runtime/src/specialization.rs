//! A specialization: a model's graph specialized to one input [`Signature`] (every shape
//! known) and optimized, ready to run. Immutable once built, so it is shared as
//! `Arc<Specialization>` by every call with that signature.

use crate::cpu::{CpuPlan, PlanStats, ThreadPool};
use crate::weights::WeightPool;
use crate::{Backend, RunError};
use lathe_compiler::pipeline::{PassHooks, PassRecord, Pipeline};
use lathe_compiler::SpecializedGraph;
use lathe_ir::{Graph, Tensor, TensorType};
use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The concrete types of a call's inputs, in the model's input order, and the values of its
/// shape inputs: what specializations are cached by. Two signatures are equal when their
/// types and shape-input values are (the names are the model's).
///
/// A *shape input* is an integer input of at most one axis that the graph's shapes depend on
/// (a reshape target or reduction axes fed at run time); the model learns which inputs are
/// ([`crate::Model::run`]) and compiles one specialization per value, as XLA does for its
/// compile-time-constant arguments.
#[derive(Clone, Debug)]
pub struct Signature {
    names: Arc<[String]>,
    types: Vec<TensorType>,
    /// One per input: its value when it is a shape input (empty when none is).
    values: Vec<Option<Arc<Tensor>>>,
}

impl Signature {
    /// A signature of `types` for inputs called `names` (same order).
    pub(crate) fn new(names: Arc<[String]>, types: Vec<TensorType>) -> Signature {
        Signature {
            names,
            types,
            values: Vec::new(),
        }
    }

    /// The signature of `inputs`, binding the value of each input `shape_inputs` marks.
    pub(crate) fn of(names: Arc<[String]>, inputs: &[Tensor], shape_inputs: &[bool]) -> Signature {
        let values = if shape_inputs.iter().any(|&s| s) {
            inputs
                .iter()
                .zip(shape_inputs)
                .map(|(t, &s)| s.then(|| Arc::new(t.clone().into_standard_layout())))
                .collect()
        } else {
            Vec::new()
        };
        Signature {
            names,
            types: inputs.iter().map(Tensor::ty).collect(),
            values,
        }
    }

    /// The input types, in the model's input order.
    pub fn types(&self) -> &[TensorType] {
        &self.types
    }

    /// The input names, in the model's input order.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The values of the shape inputs (`None` for the other inputs; empty when none is).
    pub fn values(&self) -> &[Option<Arc<Tensor>>] {
        &self.values
    }

    /// The shape inputs' values as comparable bytes.
    fn value_key(&self) -> Vec<Option<Vec<u8>>> {
        self.values
            .iter()
            .map(|v| v.as_ref().map(|t| t.to_le_bytes()))
            .collect()
    }
}

impl PartialEq for Signature {
    fn eq(&self, other: &Signature) -> bool {
        self.types == other.types && self.value_key() == other.value_key()
    }
}

impl Eq for Signature {}

impl Hash for Signature {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.types.hash(state);
        self.value_key().hash(state);
    }
}

impl fmt::Display for Signature {
    /// `(x: f32[3,6], y: i64[3])`; a shape input shows its value (`axes: i64[1] = [1]`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(")?;
        for (i, ty) in self.types.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            match self.names.get(i) {
                Some(name) => write!(f, "{name}: {ty}")?,
                None => write!(f, "{ty}")?,
            }
            if let Some(Some(t)) = self.values.get(i) {
                write!(f, " = {:?}", t.to_f64_vec())?;
            }
        }
        f.write_str(")")
    }
}

/// `graph` specialized to `signature` and optimized by `pipeline`, with `hooks` called around
/// every pass: what a specialization compiles, and what `lathe dump` prints.
///
/// A graph given owned is dropped as soon as it is specialized, so that each weight a pass
/// replaces (a filter a batch norm is folded into) is let go of at once.
pub(crate) fn optimize_for(
    graph: Cow<'_, Graph>,
    signature: &Signature,
    pipeline: &Pipeline,
    hooks: &mut dyn PassHooks,
) -> Result<(SpecializedGraph, Vec<PassRecord>), RunError> {
    let mut g =
        SpecializedGraph::specialize_with_values(&graph, signature.types(), signature.values())?;
    drop(graph);
    let records = g
        .optimize(pipeline, hooks)
        .map_err(|source| RunError::Optimize {
            signature: signature.to_string(),
            source,
        })?;
    Ok((g, records))
}

/// A model's graph specialized to one signature and optimized: every value's shape is known.
#[derive(Debug)]
pub struct Specialization {
    signature: Signature,
    /// What runs it, and the graph where it is kept.
    exec: Exec,
    /// What each pass run of the optimization did.
    passes: Vec<PassRecord>,
    compile_time: Duration,
    backend: Backend,
    /// The names of its outputs, in order: a model imported per value may have other outputs
    /// for other values (an ONNX sequence output of a length an input's value decides).
    outputs: Vec<String>,
}

/// How a specialization runs.
#[derive(Debug)]
pub(crate) enum Exec {
    /// A compiled plan; the optimized graph is kept only when asked for ([`Keep::Graph`]):
    /// the plan holds each weight once (packed, or shared with the model's graph), and a kept
    /// graph would hold the packed ones a second time.
    Cpu {
        plan: Box<CpuPlan>,
        graph: Option<SpecializedGraph>,
    },
    /// The reference interpreter on the optimized graph.
    Interp(SpecializedGraph),
    /// The graph's kernels on a CUDA device (one caller at a time), and the graph.
    #[cfg(feature = "cuda")]
    Cuda {
        runner: Box<std::sync::Mutex<crate::gpu::CudaRunner>>,
        graph: SpecializedGraph,
    },
}

/// Whether a compiled specialization keeps its optimized graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Keep it, for tools that show it ([`Specialization::graph`]).
    Graph,
    /// Keep only what running needs.
    PlanOnly,
}

impl Specialization {
    /// Specializes `graph` to `signature`, runs `pipeline` on the result (calling `hooks`
    /// around every pass) and compiles it for `backend`, keeping the optimized graph or not.
    ///
    /// Given the graph owned, and keeping only the plan, each weight is let go of as soon as
    /// nothing needs it: the weights that passes replace, and those the kernels pack.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn compile(
        graph: Cow<'_, Graph>,
        signature: Signature,
        pipeline: &Pipeline,
        hooks: &mut dyn PassHooks,
        backend: Backend,
        pool: Option<&Arc<ThreadPool>>,
        weights: &WeightPool,
        keep: Keep,
    ) -> Result<Specialization, RunError> {
        let name = graph.name.clone();
        let span = tracing::info_span!("specialize", model = %name, %signature);
        let _enter = span.enter();
        let start = Instant::now();
        let (g, passes) = optimize_for(graph, &signature, pipeline, hooks)?;
        Specialization::finish(g, signature, passes, start, backend, pool, weights, keep)
    }

    /// Compiles `graph`, already specialized to `signature` and optimized (a compiled
    /// artifact's), for `backend`: no passes run. Its inputs' types must be the signature's.
    pub(crate) fn from_optimized(
        graph: Graph,
        signature: Signature,
        backend: Backend,
        pool: Option<&Arc<ThreadPool>>,
        weights: &WeightPool,
    ) -> Result<Specialization, RunError> {
        let span = tracing::info_span!("load_specialization", model = %graph.name, %signature);
        let _enter = span.enter();
        let start = Instant::now();
        let g = SpecializedGraph::new(graph)?;
        Specialization::finish(
            g,
            signature,
            Vec::new(),
            start,
            backend,
            pool,
            weights,
            Keep::PlanOnly,
        )
    }

    /// A specialization whose CPU plan was loaded as it is (an artifact's stored plan).
    pub(crate) fn from_plan(
        plan: CpuPlan,
        signature: Signature,
        outputs: Vec<String>,
    ) -> Specialization {
        Specialization {
            signature,
            exec: Exec::Cpu {
                plan: Box::new(plan),
                graph: None,
            },
            passes: Vec::new(),
            compile_time: Duration::ZERO,
            backend: Backend::Cpu,
            outputs,
        }
    }

    /// Compiles the optimized graph `g` for `backend`; `passes` made it, from `start` on.
    #[allow(clippy::too_many_arguments)]
    fn finish(
        g: SpecializedGraph,
        signature: Signature,
        passes: Vec<PassRecord>,
        start: Instant,
        backend: Backend,
        pool: Option<&Arc<ThreadPool>>,
        weights: &WeightPool,
        keep: Keep,
    ) -> Result<Specialization, RunError> {
        // Weights the passes derived (a folded batch norm's filter) that an earlier
        // specialization already holds are shared, not kept twice. Swapping a constant for an
        // equal one keeps every shape known; `SpecializedGraph::new` checks it again.
        let mut shared_graph = g.into_graph();
        let shared = weights.share(&mut shared_graph);
        if shared > 0 {
            tracing::debug!(shared, "weights shared with other specializations");
        }
        let g = SpecializedGraph::new(shared_graph)?;
        let nodes = g.graph().len();
        let outputs = (g.graph().outputs().iter())
            .map(|o| o.name.clone())
            .collect();
        let exec = match backend {
            Backend::Cpu => {
                let pool = pool
                    .cloned()
                    .unwrap_or_else(|| Arc::new(ThreadPool::new(1)));
                // A kept graph shares its constants with the plan's; otherwise the plan takes
                // the only copy and lets go of each weight once it is packed.
                let (kept, compiled) = match keep {
                    Keep::Graph => (Some(g.clone()), g),
                    Keep::PlanOnly => (None, g),
                };
                let plan =
                    CpuPlan::compile(compiled, pool).map_err(|source| RunError::Compile {
                        signature: signature.to_string(),
                        backend,
                        source,
                    })?;
                Exec::Cpu {
                    plan: Box::new(plan),
                    graph: kept,
                }
            }
            Backend::Interp => Exec::Interp(g),
            Backend::Cuda => crate::gpu::exec(g, &signature)?,
        };
        let compile_time = start.elapsed();
        tracing::info!(
            time_ms = compile_time.as_secs_f64() * 1e3,
            nodes,
            "compiled specialization"
        );
        Ok(Specialization {
            signature,
            exec,
            passes,
            compile_time,
            backend,
            outputs,
        })
    }

    /// The names of its outputs, in order.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// The specialized, optimized graph, where it is kept: always for the interpreter
    /// backend, and for the CPU backend when compiled by [`Model::compile_uncached`] (the
    /// plan of a cached CPU specialization holds what it runs, and no second copy of it).
    ///
    /// [`Model::compile_uncached`]: crate::Model::compile_uncached
    pub fn graph(&self) -> Option<&Graph> {
        match &self.exec {
            Exec::Cpu { graph, .. } => graph.as_ref().map(SpecializedGraph::graph),
            Exec::Interp(graph) => Some(graph.graph()),
            #[cfg(feature = "cuda")]
            Exec::Cuda { graph, .. } => Some(graph.graph()),
        }
    }

    /// What each pass run of its optimization did, in order.
    pub fn passes(&self) -> &[PassRecord] {
        &self.passes
    }

    /// How long specializing and optimizing took.
    pub fn compile_time(&self) -> Duration {
        self.compile_time
    }

    /// The input signature this specialization is for.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// The backend it was compiled for.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The CPU plan's statistics (steps, kernels, arena bytes), for [`Backend::Cpu`].
    pub fn plan_stats(&self) -> Option<PlanStats> {
        self.cpu_plan().map(CpuPlan::stats)
    }

    /// The CPU plan, for [`Backend::Cpu`].
    pub fn cpu_plan(&self) -> Option<&CpuPlan> {
        match &self.exec {
            Exec::Cpu { plan, .. } => Some(plan),
            _ => None,
        }
    }

    /// Runs on `inputs` (in signature order), returning the outputs in output order.
    pub(crate) fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RunError> {
        match &self.exec {
            Exec::Cpu { plan, .. } => Ok(plan.run(inputs)?),
            Exec::Interp(g) => Ok(lathe_ir::interp::run(g.graph(), inputs)?),
            #[cfg(feature = "cuda")]
            Exec::Cuda { runner, .. } => crate::gpu::run(runner, inputs),
        }
    }
}
