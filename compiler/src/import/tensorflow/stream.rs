//! Streaming decode of a serialized `GraphDef`, one node at a time.
//!
//! A frozen graph is nearly all weights, in its `Const` nodes. Decoding the whole message at
//! once holds every weight twice (the bytes and the message); here the top-level fields are
//! walked by hand, each node is decoded from its own bytes and handed to the caller (who takes
//! its tensor) before the next is read, so at most one node's weights are held in protobuf form.
//! The walk is `wire.rs`'s, which checks every length read from the input against what remains
//! of it before anything is allocated.

use super::super::wire::{self, Fault, Walker};
use super::super::ImportError;
use lathe_proto::tensorflow::{GraphDef, NodeDef};
use lathe_proto::Message;
use std::io::Read;
use std::path::Path;

/// What errors say the file should have been.
const KIND: &str = "TensorFlow GraphDef";
/// `GraphDef.node`'s field number.
const NODE_FIELD: u64 = 1;

/// Decodes the `len`-byte serialized GraphDef that `reader` yields; `path` names it in errors.
///
/// Each node is decoded as soon as its bytes are read and passed to `on_node`, which may take
/// what it wants from it (a constant's tensor), before it is kept. Every other top-level field
/// is kept as raw bytes and decoded at the end, so the result is what `GraphDef::decode` gives
/// for the same bytes, less what `on_node` took.
pub fn decode_graph_def<R: Read>(
    reader: R,
    len: u64,
    path: &Path,
    mut on_node: impl FnMut(&mut NodeDef),
) -> Result<GraphDef, ImportError> {
    let invalid = |m: String| wire::invalid(path, KIND, m);
    let fault = |f: Fault| f.error(path, KIND);
    let mut walker = Walker::new(reader, len);
    let mut nodes = Vec::new();
    // The other fields, each re-encoded as key + payload, in file order (so that repeated
    // occurrences of a field merge as they would in one decode).
    let mut rest = Vec::new();
    while let Some(key) = walker.key().map_err(fault)? {
        if key.field != NODE_FIELD {
            walker.keep(key, &mut rest).map_err(fault)?;
            continue;
        }
        key.expect_length_delimited("node").map_err(fault)?;
        let at = key.at;
        let what = format!("node #{} (field 1)", nodes.len());
        let bytes = walker.length_delimited(at, &what).map_err(fault)?;
        let mut node = NodeDef::decode(bytes.as_slice()).map_err(|e| {
            invalid(format!(
                "node #{} at byte {at} is not a valid NodeDef: {e}",
                nodes.len()
            ))
        })?;
        drop(bytes);
        on_node(&mut node);
        nodes.push(node);
    }
    let mut gd = GraphDef::decode(rest.as_slice()).map_err(|e| invalid(e.to_string()))?;
    gd.node = nodes;
    Ok(gd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lathe_proto::tensorflow::{
        attr_value::Value, AttrValue, FunctionDef, FunctionDefLibrary, OpDef, TensorProto,
        VersionDef,
    };
    use std::io;

    fn node(name: &str, op: &str, inputs: &[&str]) -> NodeDef {
        NodeDef {
            name: name.into(),
            op: op.into(),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            ..NodeDef::default()
        }
    }

    /// A GraphDef with every kind of top-level field: nodes (one holding a tensor), a library,
    /// versions and the deprecated varint `version`.
    #[allow(deprecated)]
    fn sample() -> GraphDef {
        let mut c = node("w", "Const", &[]);
        c.attr.insert(
            "value".into(),
            AttrValue {
                value: Some(Value::Tensor(TensorProto {
                    dtype: 1,
                    tensor_content: (0..64u8).collect(),
                    ..TensorProto::default()
                })),
            },
        );
        GraphDef {
            node: vec![
                node("x", "Placeholder", &[]),
                c,
                node("y", "MatMul", &["x", "w:0", "^x"]),
            ],
            versions: Some(VersionDef {
                producer: 1994,
                min_consumer: 12,
                bad_consumers: vec![3, 5],
            }),
            version: 7,
            library: Some(FunctionDefLibrary {
                function: vec![FunctionDef {
                    signature: Some(OpDef {
                        name: "f".into(),
                        ..OpDef::default()
                    }),
                    node_def: vec![node("inner", "Relu", &["a"])],
                    ..FunctionDef::default()
                }],
                ..FunctionDefLibrary::default()
            }),
            ..GraphDef::default()
        }
    }

    fn stream(bytes: &[u8]) -> Result<GraphDef, ImportError> {
        decode_graph_def(bytes, bytes.len() as u64, Path::new("m.pb"), |_| {})
    }

    /// The message of the error the streaming decode gives for `bytes`.
    fn error(bytes: &[u8]) -> String {
        stream(bytes).expect_err("should not decode").to_string()
    }

    #[test]
    fn decodes_what_prost_decodes() {
        let gd = sample();
        let bytes = gd.encode_to_vec();
        let streamed = stream(&bytes).unwrap();
        assert_eq!(streamed, gd);
        assert_eq!(streamed, GraphDef::decode(bytes.as_slice()).unwrap());
        // Fields in any order, and a message field given twice, merge as prost merges them.
        let mut shuffled = GraphDef {
            node: gd.node[2..].to_vec(),
            ..gd.clone()
        }
        .encode_to_vec();
        shuffled.extend(
            GraphDef {
                node: gd.node[..2].to_vec(),
                versions: Some(VersionDef {
                    producer: 2001,
                    ..VersionDef::default()
                }),
                ..GraphDef::default()
            }
            .encode_to_vec(),
        );
        assert_eq!(
            stream(&shuffled).unwrap(),
            GraphDef::decode(shuffled.as_slice()).unwrap()
        );
        assert_eq!(stream(&[]).unwrap(), GraphDef::default());
    }

    #[test]
    fn each_node_is_handed_on_as_it_is_read() {
        let bytes = sample().encode_to_vec();
        let mut seen = Vec::new();
        let gd = decode_graph_def(
            bytes.as_slice(),
            bytes.len() as u64,
            Path::new("m.pb"),
            |n| {
                seen.push(n.name.clone());
                n.attr.clear();
            },
        )
        .unwrap();
        assert_eq!(seen, ["x", "w", "y"]);
        assert!(gd.node.iter().all(|n| n.attr.is_empty()));
    }

    #[test]
    fn truncated_input_is_an_error() {
        let bytes = sample().encode_to_vec();
        // Cut inside the Const node, the second field.
        let cut = &bytes[..bytes.len() / 2];
        let e = error(cut);
        assert!(
            e.starts_with("m.pb: not a valid TensorFlow GraphDef (node #1 (field 1) at byte "),
            "{e}"
        );
        assert!(e.contains("bytes of the file remain)"), "{e}");
        // Cut inside a length varint, and inside a key varint.
        assert_eq!(
            error(&[0x0a, 0x80]),
            "m.pb: not a valid TensorFlow GraphDef (the file ends inside the length of node #0 \
             (field 1), which starts at byte 1)"
        );
        assert_eq!(
            error(&[0x80]),
            "m.pb: not a valid TensorFlow GraphDef (the file ends inside a field key, which \
             starts at byte 0)"
        );
        // A fixed-size field cut short.
        assert_eq!(
            error(&[0x19, 1, 2]),
            "m.pb: not a valid TensorFlow GraphDef (the file ends inside field 3, which starts \
             at byte 0)"
        );
    }

    #[test]
    fn a_length_past_the_end_is_an_error_not_an_allocation() {
        assert_eq!(
            error(&[0x0a, 0x05, 0x00]),
            "m.pb: not a valid TensorFlow GraphDef (node #0 (field 1) at byte 0 is 5 bytes long, \
             but only 1 bytes of the file remain)"
        );
        // The largest length a varint can say, for a node and for another field.
        let huge = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        for key in [0x0a, 0x12] {
            let mut bytes = vec![key];
            bytes.extend(huge);
            let e = error(&bytes);
            assert!(
                e.contains("is 18446744073709551615 bytes long, but only 0"),
                "{e}"
            );
        }
        // A length varint longer than 64 bits.
        let mut bytes = vec![0x0a];
        bytes.extend([0xff; 10]);
        assert!(error(&bytes).contains("does not fit in 64 bits"));
    }

    #[test]
    fn a_bad_wire_type_is_an_error() {
        // Field 2 (library), wire type 3 (start group).
        assert_eq!(
            error(&[0x13]),
            "m.pb: not a valid TensorFlow GraphDef (at byte 0: field 2 has wire type 3, which \
             is none of 0 (varint), 1 (fixed64), 2 (length-delimited) and 5 (fixed32))"
        );
        // A node that is not length-delimited.
        let mut bytes = sample().encode_to_vec();
        bytes.extend([0x08, 0x01]);
        let e = error(&bytes);
        assert!(
            e.ends_with(": field 1 (node) has wire type 0, not 2 (length-delimited))"),
            "{e}"
        );
        // Field number 0.
        assert_eq!(
            error(&[0x02, 0x00]),
            "m.pb: not a valid TensorFlow GraphDef (at byte 0: 2 is not a valid field key)"
        );
    }

    #[test]
    fn a_bad_node_or_other_field_is_an_error() {
        let e = error(&[0x0a, 0x02, 0xff, 0xff]);
        assert!(
            e.starts_with(
                "m.pb: not a valid TensorFlow GraphDef (node #0 at byte 0 is not a valid NodeDef: "
            ),
            "{e}"
        );
        // A library that is not a FunctionDefLibrary fails when the other fields are decoded.
        let e = error(&[0x12, 0x02, 0xff, 0xff]);
        assert!(
            e.starts_with("m.pb: not a valid TensorFlow GraphDef (failed to decode"),
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
        let e = decode_graph_def(Failing, 10, Path::new("m.pb"), |_| {}).unwrap_err();
        assert_eq!(e.to_string(), "m.pb: disk on fire");
    }
}
