//! Pipelines: which passes run, in what order, at each optimization level, and the pass
//! manager that runs them with the verifier after each pass, a `tracing` span per pass, and
//! hooks for printing or dumping the IR before and after any pass. Every pass also runs inside
//! the regions of `if` and `while` nodes, innermost first (see [`passes::regions`]); the
//! verifier checks regions as part of checking the nodes that hold them.

use crate::passes::{self, Changed, Pass, PassCx, PassError, PassOptions};
use lathe_ir::Graph;
use std::collections::BTreeMap;
use std::time::Instant;

/// One step of a pipeline: a pass, or a group of passes repeated until none changes the graph
/// (at most `max_rounds` times).
pub enum Step {
    Pass(Box<dyn Pass>),
    FixedPoint {
        passes: Vec<Box<dyn Pass>>,
        max_rounds: usize,
    },
}

/// An ordered list of steps.
pub struct Pipeline {
    pub steps: Vec<Step>,
    pub options: PassOptions,
}

/// The bound on fixed-point rounds: enough for every rewrite chain seen in real models, small
/// enough that a pair of passes undoing each other cannot loop for long.
pub const MAX_ROUNDS: usize = 8;

fn make(name: &str) -> Result<Box<dyn Pass>, String> {
    passes::lookup(name).map(|p| (p.make)()).ok_or_else(|| {
        let names: Vec<&str> = passes::PASSES.iter().map(|p| p.name).collect();
        format!(
            "unknown pass `{name}` (passes: {})",
            if names.is_empty() {
                "none yet".to_string()
            } else {
                names.join(", ")
            }
        )
    })
}

/// The passes each level runs, as pipeline text (see [`Pipeline::parse`]).
pub fn level_text(level: u8) -> &'static str {
    match level {
        0 => "",
        1 => "fixed-point(fold-constants,prune,cse)",
        2 => "fixed-point(fold-constants,prune,cse,simplify,fold-batchnorm),layout,matmul-views,hoist-loop-invariants,fixed-point(fold-constants,simplify,cse,prune),hoist-input-projections,fuse,prune",
        _ => "fixed-point(fold-constants,prune,cse,simplify,fold-batchnorm),layout,matmul-views,hoist-loop-invariants,fixed-point(fold-constants,simplify,cse,prune),hoist-input-projections,fuse,prune",
    }
}

impl Pipeline {
    /// The pipeline of optimization level `level` (0–3; above 3 is 3).
    pub fn for_level(level: u8) -> Result<Pipeline, String> {
        Pipeline::parse(level_text(level))
    }

    /// Parses pipeline text: pass names separated by commas, and `fixed-point(a,b,...)` for a
    /// group repeated until nothing changes. Example: `fold-constants,prune,cse`.
    pub fn parse(text: &str) -> Result<Pipeline, String> {
        let mut steps = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            if let Some(inner) = rest.strip_prefix("fixed-point(") {
                let end = inner
                    .find(')')
                    .ok_or_else(|| format!("unclosed `fixed-point(` in `{text}`"))?;
                let passes = inner[..end]
                    .split(',')
                    .map(|n| make(n.trim()))
                    .collect::<Result<Vec<_>, _>>()?;
                steps.push(Step::FixedPoint {
                    passes,
                    max_rounds: MAX_ROUNDS,
                });
                rest = inner[end + 1..].trim_start();
            } else {
                let end = rest.find(',').unwrap_or(rest.len());
                let name = rest[..end].trim();
                if name.is_empty() {
                    return Err(format!("empty pass name in `{text}`"));
                }
                steps.push(Step::Pass(make(name)?));
                rest = &rest[end..];
            }
            rest = rest.trim_start();
            if let Some(r) = rest.strip_prefix(',') {
                rest = r.trim_start();
                if rest.is_empty() {
                    return Err(format!("trailing comma in `{text}`"));
                }
            } else if !rest.is_empty() {
                return Err(format!("expected `,` before `{rest}` in `{text}`"));
            }
        }
        Ok(Pipeline {
            steps,
            options: PassOptions::default(),
        })
    }

    /// Runs the pipeline on `g`, verifying after every pass and calling `hooks` around each.
    pub fn run(
        &self,
        g: &mut Graph,
        hooks: &mut dyn PassHooks,
    ) -> Result<Vec<PassRecord>, PassError> {
        let mut cx = PassCx::new(self.options.clone());
        let mut records = Vec::new();
        for step in &self.steps {
            match step {
                Step::Pass(p) => {
                    run_one(p.as_ref(), g, &mut cx, hooks, &mut records)?;
                }
                Step::FixedPoint { passes, max_rounds } => {
                    for _ in 0..*max_rounds {
                        let mut changed = Changed::No;
                        for p in passes {
                            changed |= run_one(p.as_ref(), g, &mut cx, hooks, &mut records)?;
                        }
                        if !changed.any() {
                            break;
                        }
                    }
                }
            }
        }
        Ok(records)
    }
}

/// What one pass run did.
#[derive(Clone, Debug, PartialEq)]
pub struct PassRecord {
    pub name: &'static str,
    pub time_ms: f64,
    pub changed: bool,
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// The pass's own counters (`nodes_removed`, `groups_fused`, ...).
    pub counters: BTreeMap<&'static str, usize>,
}

/// Called around every pass run: for `--print-ir-after`, `--dump-dir` and the like.
/// `index` counts pass runs from 1 across the whole pipeline.
pub trait PassHooks {
    /// Before pass `name` runs.
    fn before(&mut self, _index: usize, _name: &str, _g: &Graph) {}
    /// After pass `name` ran.
    fn after(&mut self, _index: usize, _name: &str, _g: &Graph, _record: &PassRecord) {}
}

/// Hooks that do nothing.
pub struct NoHooks;
impl PassHooks for NoHooks {}

fn run_one(
    p: &dyn Pass,
    g: &mut Graph,
    cx: &mut PassCx,
    hooks: &mut dyn PassHooks,
    records: &mut Vec<PassRecord>,
) -> Result<Changed, PassError> {
    let index = records.len() + 1;
    let span = tracing::info_span!("pass", name = p.name(), index);
    let _enter = span.enter();
    hooks.before(index, p.name(), g);
    let nodes_before = g.len();
    let start = Instant::now();
    let changed = passes::regions::run_everywhere(p, g, cx)?;
    let time_ms = start.elapsed().as_secs_f64() * 1e3;
    lathe_ir::verify(g).map_err(|e| PassError {
        pass: p.name(),
        message: format!("left an invalid graph: {e}"),
    })?;
    let record = PassRecord {
        name: p.name(),
        time_ms,
        changed: changed.any(),
        nodes_before,
        nodes_after: g.len(),
        counters: cx.take_counters(),
    };
    tracing::info!(
        time_ms,
        changed = record.changed,
        nodes_before,
        nodes_after = record.nodes_after,
        counters = ?record.counters,
        "pass done"
    );
    hooks.after(index, p.name(), g, &record);
    records.push(record);
    Ok(changed)
}

/// Runs the pipeline of `level` on `g` without hooks.
pub fn optimize(g: &mut Graph, level: u8) -> Result<Vec<PassRecord>, PassError> {
    let p = Pipeline::for_level(level).map_err(|m| PassError {
        pass: "pipeline",
        message: m,
    })?;
    p.run(g, &mut NoHooks)
}
