//! ONNX test data values: the `input_K.pb` / `output_K.pb` files of a backend node test,
//! each a `TensorProto`, a `SequenceProto` or an `OptionalProto`. Nothing in the bytes says
//! which, so the model's declared type of that input or output decides ([`interface`]).
//! A value that is not a tensor is given to a model flattened, as the importer flattens
//! graph inputs and outputs (`items.rs`): [`DataValue::flatten`], [`DataValue::container`].

use super::items::{declared, element_name, Declared};
use super::tensor::tensor_in;
use super::{read_model, ImportError, Weights};
use crate::import::Container;
use lathe_ir::Tensor;
use lathe_proto::onnx::{
    optional_proto, sequence_proto, OptionalProto, SequenceProto, TensorProto, TypeProto,
    ValueInfoProto,
};
use prost::Message;
use std::collections::HashSet;
use std::path::Path;

/// What kind of value a graph input or output is declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Tensor,
    /// A sequence of tensors.
    Sequence,
    /// An optional holding a value of this kind.
    Optional(Box<ValueKind>),
    /// A map, a sparse tensor, a sequence of sequences, or no type at all.
    Other,
}

/// A value of test data.
#[derive(Clone, Debug, PartialEq)]
pub enum DataValue {
    Tensor(Tensor),
    Sequence(Vec<Tensor>),
    /// An optional: what it holds, or `None` when empty.
    Optional(Option<Box<DataValue>>),
}

/// The name and declared kind of each input (initializers left out) and each output of the
/// model at `path`, in order.
pub type Interface = (Vec<(String, ValueKind)>, Vec<(String, ValueKind)>);

/// The declared kinds of a model's graph inputs and outputs.
pub fn interface(path: &Path) -> Result<Interface, ImportError> {
    let (m, _) = read_model(path, Weights::Skip)?;
    let gp = m.graph.unwrap_or_default();
    let inits: HashSet<&str> = gp
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let list = |vs: &[ValueInfoProto], skip: &HashSet<&str>| {
        vs.iter()
            .filter(|v| !skip.contains(v.name.as_deref().unwrap_or("")))
            .map(|v| {
                let name = v.name.clone().unwrap_or_default();
                (name, kind(v.r#type.as_ref()))
            })
            .collect()
    };
    Ok((list(&gp.input, &inits), list(&gp.output, &HashSet::new())))
}

/// The kind of value `t` declares (as the importer reads it: `items.rs`).
fn kind(t: Option<&TypeProto>) -> ValueKind {
    match declared(t) {
        Declared::Tensor(_) => ValueKind::Tensor,
        Declared::Sequence(e) => match kind(Some(e)) {
            ValueKind::Tensor => ValueKind::Sequence,
            _ => ValueKind::Other,
        },
        Declared::Optional(e) => match kind(Some(e)) {
            ValueKind::Other => ValueKind::Other,
            k => ValueKind::Optional(Box::new(k)),
        },
        Declared::Other => ValueKind::Other,
    }
}

/// Reads a test data file holding a value of `kind`; returns the name it carries, if any.
pub fn read_value_file(
    path: &Path,
    kind: &ValueKind,
) -> Result<(Option<String>, DataValue), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let at = |e: String| format!("{}: {e}", path.display());
    let name = |n: &Option<String>| n.clone().filter(|n| !n.is_empty());
    match kind {
        ValueKind::Tensor => {
            let p = TensorProto::decode(bytes.as_slice())
                .map_err(|e| at(format!("not a TensorProto: {e}")))?;
            Ok((name(&p.name), DataValue::Tensor(tensor(&p, path)?)))
        }
        ValueKind::Sequence => {
            let p = SequenceProto::decode(bytes.as_slice())
                .map_err(|e| at(format!("not a SequenceProto: {e}")))?;
            Ok((name(&p.name), sequence(&p, path)?))
        }
        ValueKind::Optional(inner) => {
            // Test data written by `gen_node_tests.py` before it wrote `OptionalProto`s holds
            // an optional's tensor bare, which does not decode as one.
            let p = OptionalProto::decode(bytes.as_slice()).map_err(|e| {
                at(format!(
                    "not an OptionalProto ({e}): test data that gives an optional value as a bare \
                     TensorProto is not supported (regenerate it with tests/onnx/gen_node_tests.py)"
                ))
            })?;
            Ok((name(&p.name), optional(&p, inner, path)?))
        }
        ValueKind::Other => Err(at(
            "values other than tensors, sequences of tensors and optionals are not supported"
                .into(),
        )),
    }
}

fn tensor(p: &TensorProto, path: &Path) -> Result<Tensor, String> {
    tensor_in(p, path.parent()).map_err(|e| format!("{}: {e}", path.display()))
}

fn sequence(p: &SequenceProto, path: &Path) -> Result<DataValue, String> {
    let tensor_kind = sequence_proto::DataType::Tensor as i32;
    let other = !(p.sparse_tensor_values.is_empty()
        && p.sequence_values.is_empty()
        && p.map_values.is_empty()
        && p.optional_values.is_empty());
    if p.elem_type.unwrap_or(tensor_kind) != tensor_kind || other {
        return Err(format!(
            "{}: sequences of anything but tensors are not supported",
            path.display()
        ));
    }
    let elems = (p.tensor_values.iter())
        .map(|t| tensor(t, path))
        .collect::<Result<_, _>>()?;
    Ok(DataValue::Sequence(elems))
}

fn optional(p: &OptionalProto, inner: &ValueKind, path: &Path) -> Result<DataValue, String> {
    use optional_proto::DataType as D;
    let held = match (p.elem_type.unwrap_or(0), inner) {
        (e, _) if e == D::Undefined as i32 => None,
        (e, ValueKind::Tensor) if e == D::Tensor as i32 => {
            let t = p.tensor_value.as_ref().ok_or_else(|| {
                format!("{}: an optional tensor without its tensor", path.display())
            })?;
            Some(DataValue::Tensor(tensor(t, path)?))
        }
        (e, ValueKind::Sequence) if e == D::Sequence as i32 => {
            let s = p.sequence_value.as_ref().ok_or_else(|| {
                format!(
                    "{}: an optional sequence without its sequence",
                    path.display()
                )
            })?;
            Some(sequence(s, path)?)
        }
        (e, _) => {
            return Err(format!(
                "{}: an optional of element type {e}, which its model does not declare or Lathe \
                 does not support",
                path.display()
            ))
        }
    };
    Ok(DataValue::Optional(held.map(Box::new)))
}

impl DataValue {
    /// The tensors the value is given as, named as the importer names the graph's inputs and
    /// outputs: `name` for a tensor, `name[k]` for a sequence's elements, nothing for an
    /// empty optional.
    pub fn flatten(&self, name: &str) -> Vec<(String, Tensor)> {
        match self {
            DataValue::Tensor(t) => vec![(name.to_string(), t.clone())],
            DataValue::Sequence(ts) => (ts.iter().enumerate())
                .map(|(k, t)| (element_name(name, k), t.clone()))
                .collect(),
            DataValue::Optional(None) => Vec::new(),
            DataValue::Optional(Some(v)) => v.flatten(name),
        }
    }

    /// What the importer must be told of an input holding this value: a sequence's length
    /// (and its elements' rank, when they share one), whether an optional holds anything.
    pub fn container(&self) -> Container {
        match self {
            DataValue::Tensor(_) => Container::Tensor,
            DataValue::Sequence(ts) => {
                let ranks: HashSet<usize> = ts.iter().map(|t| t.shape().len()).collect();
                let rank = (ranks.len() == 1).then(|| *ranks.iter().next().expect("one rank"));
                Container::Sequence {
                    len: ts.len(),
                    rank,
                }
            }
            DataValue::Optional(v) => {
                Container::Optional(v.as_ref().map(|v| Box::new(v.container())))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::import::onnx::tensor::to_proto;

    fn write(dir: &Path, name: &str, bytes: Vec<u8>) -> std::path::PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    #[test]
    fn reads_sequences_and_optionals_by_their_declared_kind() {
        let dir = std::env::temp_dir().join(format!("lathe-data-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let a = Tensor::from_vec(&[2], vec![1.0f32, 2.0]);
        let b = Tensor::from_vec(&[1], vec![3.0f32]);
        let seq = SequenceProto {
            name: Some("s".into()),
            elem_type: Some(sequence_proto::DataType::Tensor as i32),
            tensor_values: vec![to_proto(&a, ""), to_proto(&b, "")],
            ..Default::default()
        };
        let p = write(&dir, "seq.pb", seq.encode_to_vec());
        let (name, v) = read_value_file(&p, &ValueKind::Sequence).unwrap();
        assert_eq!(name.as_deref(), Some("s"));
        assert_eq!(v, DataValue::Sequence(vec![a.clone(), b.clone()]));
        assert_eq!(
            v.flatten("s")
                .iter()
                .map(|(n, _)| n.as_str())
                .collect::<Vec<_>>(),
            ["s[0]", "s[1]"]
        );
        assert_eq!(
            v.container(),
            Container::Sequence {
                len: 2,
                rank: Some(1)
            }
        );

        let empty = OptionalProto {
            name: Some("o".into()),
            elem_type: Some(0),
            ..Default::default()
        };
        let p = write(&dir, "none.pb", empty.encode_to_vec());
        let opt = ValueKind::Optional(Box::new(ValueKind::Tensor));
        let (_, v) = read_value_file(&p, &opt).unwrap();
        assert_eq!(v, DataValue::Optional(None));
        assert!(v.flatten("o").is_empty());
        assert_eq!(v.container(), Container::Optional(None));

        let held = OptionalProto {
            elem_type: Some(optional_proto::DataType::Tensor as i32),
            tensor_value: Some(to_proto(&a, "")),
            ..Default::default()
        };
        let p = write(&dir, "some.pb", held.encode_to_vec());
        let (_, v) = read_value_file(&p, &opt).unwrap();
        assert_eq!(v.flatten("o"), [("o".to_string(), a.clone())]);
        assert_eq!(
            v.container(),
            Container::Optional(Some(Box::new(Container::Tensor)))
        );
        // The same bytes read as a sequence: its declared kind is what the file is read as (an
        // `OptionalProto` holding a tensor decodes as a `SequenceProto` of it); a kind Lathe
        // does not read is an error whatever the bytes.
        let (_, v) = read_value_file(&p, &ValueKind::Sequence).unwrap();
        assert_eq!(v, DataValue::Sequence(vec![a.clone()]));
        let e = read_value_file(&p, &ValueKind::Other).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
