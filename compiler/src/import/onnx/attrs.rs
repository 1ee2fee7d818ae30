//! Typed access to a `NodeProto`'s attributes, with errors that name the attribute.

use super::tensor;
use lathe_ir::{DType, Tensor};
use lathe_proto::onnx::{AttributeProto, GraphProto, NodeProto};

/// Attribute accessors for one node.
#[derive(Clone, Copy)]
pub struct Attrs<'a>(pub &'a NodeProto);

fn wrong(name: &str, want: &str) -> String {
    format!("attribute `{name}` is not {want}")
}

impl<'a> Attrs<'a> {
    /// The attribute named `name`, if the node has it.
    pub fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0
            .attribute
            .iter()
            .find(|a| a.name.as_deref() == Some(name))
    }

    /// True when the node has the attribute.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// The names of every attribute the node has.
    pub fn names(&self) -> impl Iterator<Item = &'a str> {
        self.0.attribute.iter().filter_map(|a| a.name.as_deref())
    }

    /// An int attribute, or `default` when absent.
    pub fn int_or(&self, name: &str, default: i64) -> Result<i64, String> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => a.i.ok_or_else(|| wrong(name, "an integer")),
        }
    }

    /// A required int attribute.
    pub fn int(&self, name: &str) -> Result<i64, String> {
        self.get(name)
            .ok_or_else(|| format!("missing attribute `{name}`"))?
            .i
            .ok_or_else(|| wrong(name, "an integer"))
    }

    /// A float attribute, or `default` when absent.
    pub fn float_or(&self, name: &str, default: f32) -> Result<f32, String> {
        match self.get(name) {
            None => Ok(default),
            Some(a) => a.f.ok_or_else(|| wrong(name, "a float")),
        }
    }

    /// A list-of-ints attribute, `None` when absent.
    pub fn ints(&self, name: &str) -> Option<&'a [i64]> {
        self.get(name).map(|a| a.ints.as_slice())
    }

    /// A list-of-ints attribute, or `default` when absent.
    pub fn ints_or(&self, name: &str, default: &[i64]) -> Vec<i64> {
        self.ints(name).unwrap_or(default).to_vec()
    }

    /// A list-of-floats attribute, `None` when absent.
    pub fn floats(&self, name: &str) -> Option<&'a [f32]> {
        self.get(name).map(|a| a.floats.as_slice())
    }

    /// A string attribute, or `default` when absent (not valid UTF-8 is an error).
    pub fn str_or(&self, name: &str, default: &str) -> Result<String, String> {
        match self.get(name) {
            None => Ok(default.to_string()),
            Some(a) => {
                let s = a.s.as_deref().ok_or_else(|| wrong(name, "a string"))?;
                String::from_utf8(s.to_vec()).map_err(|_| wrong(name, "UTF-8 text"))
            }
        }
    }

    /// A tensor attribute, decoded (its data must be in the model file itself).
    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>, String> {
        match self.get(name) {
            None => Ok(None),
            Some(a) => {
                let t = a.t.as_ref().ok_or_else(|| wrong(name, "a tensor"))?;
                tensor::tensor(t)
                    .map(Some)
                    .map_err(|e| format!("attribute `{name}`: {e}"))
            }
        }
    }

    /// A graph attribute (the body of `If`, `Loop`, `Scan`).
    pub fn graph(&self, name: &str) -> Result<&'a GraphProto, String> {
        self.get(name)
            .ok_or_else(|| format!("missing attribute `{name}`"))?
            .g
            .as_ref()
            .ok_or_else(|| wrong(name, "a graph"))
    }

    /// An element-type attribute (`Cast`'s `to`).
    pub fn dtype(&self, name: &str) -> Result<DType, String> {
        let raw = self.int(name)?;
        let raw = i32::try_from(raw).map_err(|_| wrong(name, "an element type"))?;
        tensor::dtype(raw).map_err(|e| format!("attribute `{name}`: {e}"))
    }
}
