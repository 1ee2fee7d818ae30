//! Optimization passes over the IR graph.
//!
//! Each pass is one unit struct in its own file, named for what it does, implementing [`Pass`].
//! [`PASSES`] is the one list of every pass with its kebab-case name; pipelines per
//! optimization level live in [`crate::pipeline`]. A pass must leave a graph the verifier
//! accepts, must not change what the graph computes (up to floating-point reassociation it
//! states), and reports whether it changed anything so fixed-point iteration can stop.
//! A pass's `run` rewrites one graph; the pass manager also runs it on the region graphs of
//! `if` and `while` nodes ([`regions::run_everywhere`]), so a pass needs no code of its own to
//! work inside loop bodies and branches.

pub mod cse;
pub mod fold_batchnorm;
pub mod fold_constants;
pub mod fuse;
pub mod hoist_input_projections;
pub mod hoist_loop_invariants;
pub mod layout;
pub mod matmul_views;
pub mod prune;
pub mod regions;
pub mod simplify;

use lathe_ir::{Capabilities, Graph, IrError};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// Whether a pass changed the graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Changed {
    Yes,
    No,
}

impl Changed {
    /// `Yes` when `b`.
    pub fn from_bool(b: bool) -> Changed {
        if b {
            Changed::Yes
        } else {
            Changed::No
        }
    }

    /// True for `Yes`.
    pub fn any(self) -> bool {
        self == Changed::Yes
    }
}

impl std::ops::BitOr for Changed {
    type Output = Changed;
    fn bitor(self, rhs: Changed) -> Changed {
        Changed::from_bool(self.any() || rhs.any())
    }
}

impl std::ops::BitOrAssign for Changed {
    fn bitor_assign(&mut self, rhs: Changed) {
        *self = *self | rhs;
    }
}

/// Options passes read.
#[derive(Clone, Debug)]
pub struct PassOptions {
    /// `fold-constants` does not create a constant with more elements than this (so folding
    /// never blows up a model's size, e.g. by materializing a broadcast).
    pub fold_max_elements: usize,
    /// What the target backend runs natively and may compile into fused bodies; `fuse`
    /// groups only what it says codegen can compile. Defaults to the IR's conservative answer.
    pub capabilities: Arc<dyn Capabilities>,
}

impl Default for PassOptions {
    fn default() -> PassOptions {
        PassOptions {
            fold_max_elements: 1 << 20,
            capabilities: Arc::new(lathe_ir::capability::Conservative),
        }
    }
}

/// What a pass run can see and report besides the graph: options, and counters of what it did
/// (e.g. `nodes_removed`, `groups_fused`), which the pass manager logs and reports.
#[derive(Clone, Debug, Default)]
pub struct PassCx {
    pub options: PassOptions,
    counters: BTreeMap<&'static str, usize>,
}

impl PassCx {
    /// A context with the given options.
    pub fn new(options: PassOptions) -> PassCx {
        PassCx {
            options,
            counters: BTreeMap::new(),
        }
    }

    /// Adds `n` to the counter `what`.
    pub fn count(&mut self, what: &'static str, n: usize) {
        *self.counters.entry(what).or_default() += n;
    }

    /// Takes the counters recorded since the last call.
    pub fn take_counters(&mut self) -> BTreeMap<&'static str, usize> {
        std::mem::take(&mut self.counters)
    }
}

/// Why a pass failed: a bug or an unsupported case it cannot skip.
#[derive(Debug, Clone, PartialEq)]
pub struct PassError {
    pub pass: &'static str,
    pub message: String,
}

impl fmt::Display for PassError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pass `{}`: {}", self.pass, self.message)
    }
}

impl std::error::Error for PassError {}

impl PassError {
    /// An error of pass `pass` from an IR error.
    pub fn ir(pass: &'static str, e: IrError) -> PassError {
        PassError {
            pass,
            message: e.to_string(),
        }
    }
}

/// A graph rewrite.
pub trait Pass: Send + Sync {
    /// The kebab-case name used in pipelines and dumps.
    fn name(&self) -> &'static str;
    /// Rewrites `g` in place.
    fn run(&self, g: &mut Graph, cx: &mut PassCx) -> Result<Changed, PassError>;
}

/// A pass in the registry: its name, a one-line description, and how to make it.
pub struct PassInfo {
    pub name: &'static str,
    pub description: &'static str,
    pub make: fn() -> Box<dyn Pass>,
}

/// Every pass, by name. A pipeline names passes from this list.
pub const PASSES: &[PassInfo] = &[
    PassInfo {
        name: "fold-constants",
        description: "Evaluate nodes whose inputs are all constants (bounded in size) and replace them with constants.",
        make: || Box::new(fold_constants::FoldConstants),
    },
    PassInfo {
        name: "prune",
        description: "Remove nodes no output depends on, and identity-like nodes (identity, identity_n, stop_gradient, noop).",
        make: || Box::new(prune::Prune),
    },
    PassInfo {
        name: "cse",
        description: "Merge nodes that compute the same op on the same inputs.",
        make: || Box::new(cse::Cse),
    },
    PassInfo {
        name: "simplify",
        description: "Algebraic identities (x*1, x+0, double negation, transpose pairs, reshape chains, ...) in one canonical operand order.",
        make: || Box::new(simplify::Simplify),
    },
    PassInfo {
        name: "fold-batchnorm",
        description: "Fold batch-norm scale/shift chains after conv2d, depthwise_conv2d and matmul into their weights and a bias.",
        make: || Box::new(fold_batchnorm::FoldBatchnorm),
    },
    PassInfo {
        name: "layout",
        description: "Put convolutions and pooling in the one internal layout (NHWC) and cancel the transposes that leaves.",
        make: || Box::new(layout::Layout),
    },
    PassInfo {
        name: "matmul-views",
        description: "Read the operands and write the result of a matrix product through reshapes and transposes as strides: one einsum over the untransposed tensors instead of transpose copies.",
        make: || Box::new(matmul_views::MatmulViews),
    },
    PassInfo {
        name: "hoist-loop-invariants",
        description: "Move computations that give the same value in every iteration of a while loop out before it, as pass-through carried values.",
        make: || Box::new(hoist_loop_invariants::HoistLoopInvariants),
    },
    PassInfo {
        name: "hoist-input-projections",
        description: "Compute a recurrent loop's input projection (matmul of step t of an invariant sequence by a constant) for every step before the loop, as one GEMM.",
        make: || Box::new(hoist_input_projections::HoistInputProjections),
    },
    PassInfo {
        name: "fuse",
        description: "Group elementwise chains with their producer (GEMM/conv epilogues) and reductions (softmax, norms) into fused nodes.",
        make: || Box::new(fuse::Fuse),
    },
];

/// Looks up a pass by name.
pub fn lookup(name: &str) -> Option<&'static PassInfo> {
    PASSES.iter().find(|p| p.name == name)
}
