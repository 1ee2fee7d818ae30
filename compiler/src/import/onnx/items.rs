//! ONNX values that are not tensors: sequences and optionals.
//!
//! The IR and the runtime hold tensors only, so a sequence is the importer's: a list of IR
//! values of a length known while importing (as `tf.function` specializes on a Python list's
//! length), and an optional is a value or nothing, known while importing too. The builder
//! binds ONNX names to them beside its tensors ([`Item`]); the sequence ops (`ops/sequence.rs`)
//! read and write them, and a graph's inputs and outputs that are sequences or optionals are
//! flattened into tensors at its boundary: a sequence `s` of length `n` is the tensors
//! `s[0]` ... `s[n-1]`, an optional `o` the tensor `o` when it holds one and nothing when
//! empty. How long an input sequence is, and whether an optional input holds a value, the
//! caller says ([`Container`], in `LoadOptions`).

use super::{tensor, Builder, NodeCx};
use crate::import::{Container, ImportError};
use lathe_ir::{DType, Dim, Shape, TensorType, ValueId};
use lathe_proto::onnx::{type_proto, TypeProto, ValueInfoProto};

/// An ONNX value: a tensor, a sequence of tensors or an optional.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Item {
    Tensor(ValueId),
    Sequence(Sequence),
    /// An optional: what it holds, or `None` when empty.
    Optional(Option<Box<Item>>),
}

impl Item {
    /// Whether the item is, or holds, the value `v`.
    pub fn holds(&self, v: ValueId) -> bool {
        match self {
            Item::Tensor(w) => *w == v,
            Item::Sequence(s) => s.elems.contains(&v),
            Item::Optional(o) => o.as_ref().is_some_and(|i| i.holds(v)),
        }
    }
}

/// A sequence of tensors of one element type, of a length known while importing.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sequence {
    pub elems: Vec<ValueId>,
    /// The elements' dtype (an empty sequence has one too).
    pub dtype: DType,
}

impl Item {
    /// What kind of value it is, for messages ("a sequence").
    pub fn kind(&self) -> &'static str {
        match self {
            Item::Tensor(_) => "a tensor",
            Item::Sequence(_) => "a sequence",
            Item::Optional(_) => "an optional",
        }
    }
}

/// The flattened names of sequence element `k` of `name`.
pub(crate) fn element_name(name: &str, k: usize) -> String {
    format!("{name}[{k}]")
}

/// How a value's declared type says it is held.
pub(super) enum Declared<'a> {
    Tensor(&'a type_proto::Tensor),
    Sequence(&'a TypeProto),
    Optional(&'a TypeProto),
    Other,
}

/// How `ty` says its value is held (a sequence or an optional of no element type is
/// [`Declared::Other`]).
pub(super) fn declared(ty: Option<&TypeProto>) -> Declared<'_> {
    match ty.and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => Declared::Tensor(t),
        Some(type_proto::Value::SequenceType(s)) => match s.elem_type.as_deref() {
            Some(e) => Declared::Sequence(e),
            None => Declared::Other,
        },
        Some(type_proto::Value::OptionalType(o)) => match o.elem_type.as_deref() {
            Some(e) => Declared::Optional(e),
            None => Declared::Other,
        },
        _ => Declared::Other,
    }
}

/// The element type `ty` declares, when it is a tensor type that declares a known one.
pub(super) fn elem_dtype(ty: Option<&TypeProto>) -> Option<DType> {
    match declared(ty) {
        Declared::Tensor(t) => tensor::dtype(t.elem_type?).ok(),
        _ => None,
    }
}

/// True when graph input or output `vi` is declared a sequence or an optional.
pub(crate) fn is_container(vi: &ValueInfoProto) -> bool {
    matches!(
        declared(vi.r#type.as_ref()),
        Declared::Sequence(_) | Declared::Optional(_)
    )
}

impl Builder<'_> {
    /// Input `i` of the node, whatever it is (a tensor, a sequence or an optional).
    pub fn item_input(&self, cx: &NodeCx, i: usize) -> Result<Item, String> {
        let name = cx
            .node
            .input
            .get(i)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("input {i} is required"))?;
        self.item(name).ok_or_else(|| {
            format!("input `{name}` is not an earlier node's output or a graph input")
        })
    }

    /// Input `i` of the node, which must be a sequence.
    pub fn sequence_input(&self, cx: &NodeCx, i: usize) -> Result<Sequence, String> {
        match self.item_input(cx, i)? {
            Item::Sequence(s) => Ok(s),
            other => Err(format!("input {i} is {}, not a sequence", other.kind())),
        }
    }

    /// Graph input `name`, declared a sequence or an optional by `vi`, as the tensor inputs
    /// `container` says it holds.
    pub(super) fn container_input(
        &mut self,
        vi: &ValueInfoProto,
        name: &str,
    ) -> Result<Item, ImportError> {
        let Some((_, c)) = self.model.containers.iter().find(|(n, _)| n == name) else {
            let what = match declared(vi.r#type.as_ref()) {
                Declared::Sequence(_) => "a sequence; its length",
                _ => "an optional; whether it holds a value",
            };
            return Err(self.err(format!(
                "input `{name}` is {what} must be known while importing (give it with \
                 `LoadOptions::containers`; `lathe conformance` reads it from the test data)"
            )));
        };
        let c = c.clone();
        self.held_input(vi.r#type.as_ref(), &c, name)
            .map_err(|m| self.err(format!("input `{name}`: {m}")))
    }

    /// The input `name` of declared type `ty` holding `c`: its tensors become IR inputs.
    fn held_input(
        &mut self,
        ty: Option<&TypeProto>,
        c: &Container,
        name: &str,
    ) -> Result<Item, String> {
        let item = match (declared(ty), c) {
            (Declared::Tensor(t), Container::Tensor) => {
                let ty = tensor_type(t, None, name)?;
                Item::Tensor(self.tensor_input(name, ty).map_err(|e| e.message)?)
            }
            (Declared::Sequence(elem), Container::Sequence { len, rank }) => {
                let Declared::Tensor(t) = declared(Some(elem)) else {
                    return Err(
                        "sequences of sequences, maps or optionals are not supported".into(),
                    );
                };
                let ty = tensor_type(t, *rank, name).map_err(|e| {
                    if e == NO_SHAPE {
                        format!("{e} or its elements' rank")
                    } else {
                        e
                    }
                })?;
                let mut elems = Vec::with_capacity(*len);
                for k in 0..*len {
                    let ty = TensorType::new(ty.dtype, per_element(&ty.shape, k));
                    let en = element_name(name, k);
                    elems.push(self.tensor_input(&en, ty).map_err(|e| e.message)?);
                }
                Item::Sequence(Sequence {
                    elems,
                    dtype: ty.dtype,
                })
            }
            (Declared::Optional(_), Container::Optional(None)) => Item::Optional(None),
            (Declared::Optional(inner), Container::Optional(Some(c))) => {
                Item::Optional(Some(Box::new(self.held_input(Some(inner), c, name)?)))
            }
            (Declared::Other, _) => {
                return Err("only tensors, sequences of tensors and optionals are supported".into())
            }
            (_, c) => return Err(format!("is not of the kind `{c:?}` describes")),
        };
        Ok(item)
    }

    /// Declares graph output `name`, bound to `item`, as the tensors it holds.
    pub(super) fn container_output(
        &mut self,
        vi: &ValueInfoProto,
        name: &str,
        item: &Item,
    ) -> Result<(), ImportError> {
        let elem_ty = match declared(vi.r#type.as_ref()) {
            Declared::Sequence(e) | Declared::Optional(e) => match declared(Some(e)) {
                Declared::Sequence(e) => elem_dtype(Some(e)),
                _ => elem_dtype(Some(e)),
            },
            _ => None,
        };
        let outs: Vec<(String, ValueId)> = match item {
            Item::Tensor(v) => vec![(name.to_string(), *v)],
            Item::Sequence(s) => (s.elems.iter().enumerate())
                .map(|(k, &v)| (element_name(name, k), v))
                .collect(),
            Item::Optional(None) => Vec::new(),
            Item::Optional(Some(inner)) => return self.container_output(vi, name, inner),
        };
        for (n, v) in outs {
            let got = self.dtype(v);
            if let Some(want) = elem_ty.filter(|&w| w != got) {
                return Err(self.err(format!(
                    "output `{name}` is declared of {want} elements but computes {got}"
                )));
            }
            self.g
                .add_output(n, v)
                .map_err(|e| self.err(e.to_string()))?;
        }
        Ok(())
    }
}

/// What a value of unknown rank is told.
const NO_SHAPE: &str = "has no shape (unknown rank); give the input a ranked shape";

/// The IR type of a declared tensor type of the input `name` (an unnamed unknown dim
/// becomes the symbol `<name>_d<axis>`); `rank`, when given, is its rank where it declares
/// no shape (its dims then all unknown).
pub(super) fn tensor_type(
    t: &type_proto::Tensor,
    rank: Option<usize>,
    name: &str,
) -> Result<TensorType, String> {
    let unnamed = |axis: usize| Dim::sym(&format!("{name}_d{axis}"));
    let dt = tensor::dtype(t.elem_type.unwrap_or(0))?;
    let shape = match (&t.shape, rank) {
        (Some(s), Some(r)) if s.dim.len() != r => {
            return Err(format!(
                "its elements are declared of rank {}, not {r}",
                s.dim.len()
            ))
        }
        (Some(s), _) => tensor::shape(s, unnamed)?,
        (None, Some(r)) => Shape((0..r).map(unnamed).collect()),
        (None, None) => return Err(NO_SHAPE.into()),
    };
    Ok(TensorType::new(dt, shape))
}

/// `shape` for sequence element `k`: a symbol `N` is `N[k]`, the same for element `k` of
/// every sequence (`SequenceMap` pairs elements of equal size) but free to differ between
/// elements, as ONNX's sequences' elements do.
fn per_element(shape: &Shape, k: usize) -> Shape {
    Shape(
        shape
            .dims()
            .iter()
            .map(|d| match d {
                Dim::Sym(s) => Dim::sym(&element_name(s, k)),
                d => d.clone(),
            })
            .collect(),
    )
}
