//! Lathe's typed IR: dtypes, shapes (with symbolic dimensions), tensors, the op set, the
//! [`Graph`], its verifier, the text format, and the reference interpreter.
//!
//! This crate depends on nothing else of Lathe's; importers, passes, codegen and the runtime
//! all build on it.

// `deny`, not `forbid`: ndarray's `s!` macro expands to an `unsafe` block it allows itself.
#![deny(unsafe_code)]

pub mod capability;
pub mod dot;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod interp;
pub mod ops;
pub mod shape;
pub mod tensor;
pub mod text;
pub mod verify;

pub use capability::{Capabilities, Native};
pub use dtype::DType;
pub use error::{IrError, Result};
pub use graph::{Graph, GraphInput, GraphOutput, Node, NodeId, ValueId};
pub use ops::Op;
pub use shape::{Dim, Shape, TensorType};
pub use tensor::{Elem, Tensor};
pub use verify::verify;
