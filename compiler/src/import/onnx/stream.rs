//! Streaming decode of a serialized `ModelProto`, one initializer at a time.
//!
//! A model file is nearly all weights, in its graph's initializers. Decoding the whole message
//! at once holds every weight three times (the file's bytes, the message, the IR tensors);
//! here the model's fields are walked by hand (`wire.rs`), the walk descends into the `graph`
//! field without reading it whole, and each initializer is decoded from its own bytes and
//! converted to an IR tensor before the next is read, so at most one initializer is held in
//! protobuf form. Every other field, of the model and of its graph, is kept as bytes and
//! decoded at the end: the result is what `ModelProto::decode` gives for the same bytes, with
//! the graph's initializers moved out into a list of tensors.

use super::super::wire::{self, put_length_delimited, Fault, Walker};
use super::super::ImportError;
use super::tensor;
use lathe_ir::Tensor;
use lathe_proto::onnx::{ModelProto, TensorProto};
use lathe_proto::Message;
use std::io::Read;
use std::path::Path;

/// What errors say the file should have been.
const KIND: &str = "ONNX model";
/// `ModelProto.graph`'s field number.
const GRAPH_FIELD: u64 = 7;
/// `GraphProto.initializer`'s field number.
const INITIALIZER_FIELD: u64 = 5;

/// One initializer of the model's graph: its name, and its tensor or why it did not convert
/// (reported when the graph is imported, as for an initializer left in the graph).
pub type Initializer = (String, Result<Tensor, String>);

/// What to do with the initializers of the model's graph.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Weights {
    /// Convert each to an IR tensor (external data is read from `path`'s directory).
    Convert,
    /// Read past them, holding nothing (for what needs only the model's other fields).
    Skip,
}

/// Decodes the `len`-byte serialized model that `reader` yields; `path` names it in errors.
///
/// Returns the model with no initializers in its graph, and the graph's initializers in file
/// order: converted (`Weights::Convert`), or none (`Weights::Skip`).
pub fn decode_model<R: Read>(
    reader: R,
    len: u64,
    path: &Path,
    weights: Weights,
) -> Result<(ModelProto, Vec<Initializer>), ImportError> {
    let fault = |f: Fault| f.error(path, KIND);
    let mut walker = Walker::new(reader, len);
    let mut initializers = Vec::new();
    let mut count = 0usize;
    // The other fields, each re-encoded as key + payload in file order (so that repeated
    // occurrences of a field merge as they would in one decode); a `graph` field is kept as
    // the graph's other fields.
    let mut rest = Vec::new();
    while let Some(key) = walker.key().map_err(fault)? {
        if key.field != GRAPH_FIELD {
            walker.keep(key, &mut rest).map_err(fault)?;
            continue;
        }
        key.expect_length_delimited("graph").map_err(fault)?;
        let outer = walker.enter(key.at, "the graph (field 7)").map_err(fault)?;
        let mut graph = Vec::new();
        while let Some(key) = walker.key().map_err(fault)? {
            if key.field != INITIALIZER_FIELD {
                walker.keep(key, &mut graph).map_err(fault)?;
                continue;
            }
            key.expect_length_delimited("initializer").map_err(fault)?;
            let what = format!("initializer #{count} (field 5 of the graph)");
            if weights == Weights::Skip {
                walker.skip(key.at, &what).map_err(fault)?;
            } else {
                let bytes = walker.length_delimited(key.at, &what).map_err(fault)?;
                let t = TensorProto::decode(bytes.as_slice()).map_err(|e| {
                    wire::invalid(
                        path,
                        KIND,
                        format!(
                            "initializer #{count} at byte {} is not a valid TensorProto: {e}",
                            key.at
                        ),
                    )
                })?;
                drop(bytes);
                let name = t.name.clone().unwrap_or_default();
                let tensor = tensor::tensor_in(&t, path.parent());
                initializers.push((name, tensor));
            }
            count += 1;
        }
        walker.leave(outer);
        put_length_delimited(GRAPH_FIELD, &graph, &mut rest);
    }
    let model = ModelProto::decode(rest.as_slice()).map_err(|e| wire::invalid(path, KIND, e))?;
    Ok((model, initializers))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_proto::onnx::{
        tensor_proto::DataType, GraphProto, NodeProto, OperatorSetIdProto, ValueInfoProto,
    };
    use std::io;

    fn init(name: &str, values: &[f32]) -> TensorProto {
        TensorProto {
            name: Some(name.into()),
            data_type: Some(DataType::Float as i32),
            dims: vec![values.len() as i64],
            raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
            ..TensorProto::default()
        }
    }

    /// A model with every kind of field around its graph, and a graph with several
    /// initializers (one in `float_data`) between its other fields.
    fn sample() -> ModelProto {
        let mut typed = init("c", &[]);
        typed.raw_data = None;
        typed.dims = vec![2];
        typed.float_data = vec![0.5, -2.0];
        ModelProto {
            ir_version: Some(8),
            producer_name: Some("test".into()),
            opset_import: vec![OperatorSetIdProto {
                domain: Some(String::new()),
                version: Some(17),
            }],
            doc_string: Some("d".into()),
            graph: Some(GraphProto {
                name: Some("g".into()),
                node: vec![NodeProto {
                    op_type: Some("Add".into()),
                    input: vec!["x".into(), "a".into()],
                    output: vec!["y".into()],
                    ..NodeProto::default()
                }],
                initializer: vec![init("a", &[1.0, 2.0, 3.0]), init("b", &[4.0]), typed],
                input: vec![ValueInfoProto {
                    name: Some("x".into()),
                    ..ValueInfoProto::default()
                }],
                output: vec![ValueInfoProto {
                    name: Some("y".into()),
                    ..ValueInfoProto::default()
                }],
                ..GraphProto::default()
            }),
            ..ModelProto::default()
        }
    }

    fn stream(
        bytes: &[u8],
        weights: Weights,
    ) -> Result<(ModelProto, Vec<Initializer>), ImportError> {
        decode_model(bytes, bytes.len() as u64, Path::new("m.onnx"), weights)
    }

    /// The message of the error the streaming decode gives for `bytes`.
    fn error(bytes: &[u8]) -> String {
        stream(bytes, Weights::Convert)
            .expect_err("should not decode")
            .to_string()
    }

    /// `m` with its graph's initializers taken out, and them converted.
    fn split(mut m: ModelProto) -> (ModelProto, Vec<Initializer>) {
        let protos = m.graph.as_mut().map(|g| std::mem::take(&mut g.initializer));
        let inits = (protos.unwrap_or_default().iter())
            .map(|t| {
                (
                    t.name.clone().unwrap_or_default(),
                    tensor::tensor_in(t, None),
                )
            })
            .collect();
        (m, inits)
    }

    #[test]
    fn decodes_what_prost_decodes_less_the_initializers() {
        let m = sample();
        let bytes = m.encode_to_vec();
        let (model, inits) = stream(&bytes, Weights::Convert).unwrap();
        assert_eq!((model.clone(), inits.clone()), split(m.clone()));
        let names: Vec<_> = inits.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(
            inits[0].1.as_ref().unwrap(),
            &Tensor::from_vec(&[3], vec![1.0f32, 2.0, 3.0])
        );
        assert_eq!(
            inits[2].1.as_ref().unwrap(),
            &Tensor::from_vec(&[2], vec![0.5f32, -2.0])
        );
        // Skipping the weights leaves the same model.
        let (skipped, none) = stream(&bytes, Weights::Skip).unwrap();
        assert_eq!(skipped, model);
        assert!(none.is_empty());
        // A graph given twice (the second with more initializers and a name) merges as prost
        // merges it, the initializers in file order; so do fields after the graph.
        let mut twice = bytes.clone();
        let more = ModelProto {
            graph: Some(GraphProto {
                name: Some("h".into()),
                initializer: vec![init("d", &[7.0])],
                ..GraphProto::default()
            }),
            producer_version: Some("2".into()),
            ..ModelProto::default()
        };
        twice.extend(more.encode_to_vec());
        let (model, inits) = stream(&twice, Weights::Convert).unwrap();
        assert_eq!(
            (model, inits),
            split(ModelProto::decode(twice.as_slice()).unwrap())
        );
        // An empty graph, and an empty file.
        let empty = ModelProto {
            graph: Some(GraphProto::default()),
            ..ModelProto::default()
        };
        let (model, inits) = stream(&empty.encode_to_vec(), Weights::Convert).unwrap();
        assert_eq!(model, empty);
        assert!(inits.is_empty());
        assert_eq!(
            stream(&[], Weights::Convert).unwrap(),
            (ModelProto::default(), vec![])
        );
    }

    #[test]
    fn an_initializer_that_does_not_convert_is_kept_as_its_error() {
        let mut m = sample();
        let wrong = &mut m.graph.as_mut().unwrap().initializer[1];
        wrong.dims = vec![2];
        let expected = tensor::tensor_in(wrong, None).unwrap_err();
        let (_, inits) = stream(&m.encode_to_vec(), Weights::Convert).unwrap();
        assert_eq!(inits[1].0, "b");
        assert_eq!(inits[1].1.as_ref().unwrap_err(), &expected);
        assert_eq!(expected, "f32[2] needs 8 bytes of data, got 4");
        assert!(inits[2].1.is_ok());
    }

    #[test]
    fn the_importer_names_an_initializer_that_does_not_convert() {
        let mut m = sample();
        m.graph.as_mut().unwrap().initializer[1].dims = vec![2];
        let e = super::super::import_bytes(&m.encode_to_vec(), Path::new("m.onnx")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "m.onnx: initializer `b`: f32[2] needs 8 bytes of data, got 4"
        );
    }

    /// The offset of the second initializer's key in `sample()`'s encoding.
    fn second_initializer(bytes: &[u8]) -> usize {
        let a = init("a", &[1.0, 2.0, 3.0]).encode_to_vec();
        let at = bytes.windows(a.len()).position(|w| w == a).unwrap();
        // The first initializer's payload, then the second's key.
        at + a.len()
    }

    #[test]
    fn a_truncated_initializer_is_an_error_naming_it() {
        let bytes = sample().encode_to_vec();
        let at = second_initializer(&bytes);
        assert_eq!(bytes[at], 0x2a, "field 5, length-delimited");
        let cut = &bytes[..at + 6];
        assert_eq!(
            error(cut),
            format!(
                "m.onnx: not a valid ONNX model (initializer #1 (field 5 of the graph) at byte \
                 {at} is {} bytes long, but only 4 bytes of the file remain)",
                bytes[at + 1]
            )
        );
        // The same bytes, skipped.
        let e = stream(cut, Weights::Skip).unwrap_err().to_string();
        assert!(
            e.contains("initializer #1 (field 5 of the graph) at byte"),
            "{e}"
        );
        // Cut inside the initializer's length.
        let mut cut = bytes[..at + 1].to_vec();
        cut.push(0x80);
        let e = error(&cut);
        assert!(
            e.ends_with(&format!(
                "ends inside the length of initializer #1 (field 5 of the graph), which starts \
                 at byte {})",
                at + 1
            )),
            "{e}"
        );
    }

    #[test]
    fn a_length_past_the_end_is_an_error_not_an_allocation() {
        // A graph longer than the file, whose fields end with the file.
        assert_eq!(
            error(&[0x3a, 0x05]),
            "m.onnx: not a valid ONNX model (the file ends inside the graph (field 7) at byte 0)"
        );
        let mut bytes = vec![0x3a];
        bytes.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]);
        bytes.extend([0x12, 0x01, b'g']);
        assert_eq!(
            error(&bytes),
            "m.onnx: not a valid ONNX model (the file ends inside the graph (field 7) at byte 0)"
        );
        // An initializer longer than its graph, though not than the file.
        assert_eq!(
            error(&[0x3a, 0x02, 0x2a, 0x03, 0x00, 0x00, 0x00]),
            "m.onnx: not a valid ONNX model (initializer #0 (field 5 of the graph) at byte 2 is \
             3 bytes long, but only 0 bytes of the graph (field 7) at byte 0 remain)"
        );
        // The largest length a varint can say, for an initializer and for another field.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        for key in [0x2a, 0x0a] {
            let mut bytes = vec![0x3a, 11, key];
            bytes.extend(huge);
            let e = error(&bytes);
            assert!(
                e.contains("is 18446744073709551615 bytes long, but only 0 bytes of the graph"),
                "{e}"
            );
        }
        // A key that runs past the end of the graph.
        let e = error(&[0x3a, 0x01, 0x80, 0x01]);
        assert_eq!(
            e,
            "m.onnx: not a valid ONNX model (the graph (field 7) at byte 0 ends inside a field \
             key, which starts at byte 2)"
        );
    }

    #[test]
    fn a_bad_wire_type_or_message_is_an_error() {
        assert_eq!(
            error(&[0x38, 0x01]),
            "m.onnx: not a valid ONNX model (at byte 0: field 7 (graph) has wire type 0, not 2 \
             (length-delimited))"
        );
        assert_eq!(
            error(&[0x3a, 0x02, 0x28, 0x01]),
            "m.onnx: not a valid ONNX model (at byte 2: field 5 (initializer) has wire type 0, \
             not 2 (length-delimited))"
        );
        assert_eq!(
            error(&[0x3a, 0x01, 0x13]),
            "m.onnx: not a valid ONNX model (at byte 2: field 2 has wire type 3, which is none \
             of 0 (varint), 1 (fixed64), 2 (length-delimited) and 5 (fixed32))"
        );
        let e = error(&[0x3a, 0x04, 0x2a, 0x02, 0xff, 0xff]);
        assert!(
            e.starts_with(
                "m.onnx: not a valid ONNX model (initializer #0 at byte 2 is not a valid \
                 TensorProto: "
            ),
            "{e}"
        );
        // A graph node that is not a NodeProto fails when the other fields are decoded.
        let e = error(&[0x3a, 0x04, 0x0a, 0x02, 0xff, 0xff]);
        assert!(
            e.starts_with("m.onnx: not a valid ONNX model (failed to decode"),
            "{e}"
        );
    }

    #[test]
    fn a_read_failure_names_the_file() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk on fire"))
            }
        }
        let e = decode_model(Failing, 10, Path::new("m.onnx"), Weights::Convert).unwrap_err();
        assert_eq!(e.to_string(), "m.onnx: disk on fire");
    }
}
