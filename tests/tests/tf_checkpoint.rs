//! The checkpoint reader against a checkpoint TensorFlow wrote (`tests/fixtures/tf_checkpoint`,
//! made by `make_checkpoint.py`): every variable's dtype, shape and values, TensorFlow's own
//! string tensor, and the errors a damaged copy gives.

use lathe_compiler::import::tensorflow::bundle::Bundle;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Deserialize)]
struct Expected {
    key: String,
    dtype: String,
    shape: Vec<usize>,
    values: Option<Vec<serde_json::Value>>,
    sum: Option<f64>,
    first: Option<Vec<f64>>,
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tf_checkpoint")
}

fn as_f64(v: &serde_json::Value) -> f64 {
    v.as_f64()
        .or_else(|| v.as_bool().map(|b| b as u8 as f64))
        .expect("a number or a bool")
}

#[test]
fn every_variable_matches_tensorflow() {
    let expected: Vec<Expected> =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap())
            .unwrap();
    let b = Bundle::open(&fixture().join("ckpt")).unwrap();
    let mut keys: Vec<&str> = expected.iter().map(|e| e.key.as_str()).collect();
    keys.push("_CHECKPOINTABLE_OBJECT_GRAPH");
    keys.sort();
    assert_eq!(b.keys().collect::<Vec<_>>(), keys);
    for e in &expected {
        let t = b.tensor(&e.key).unwrap_or_else(|err| panic!("{err}"));
        let dtype = match e.dtype.as_str() {
            "float32" => "f32",
            "float16" => "f16",
            "bfloat16" => "bf16",
            "float64" => "f64",
            "int8" => "i8",
            "int32" => "i32",
            "int64" => "i64",
            "uint8" => "u8",
            "bool" => "bool",
            other => panic!("unexpected dtype {other}"),
        };
        assert_eq!(t.dtype().name(), dtype, "{}", e.key);
        assert_eq!(t.shape(), e.shape.as_slice(), "{}", e.key);
        let got = t.to_f64_vec();
        // serde_json's float parsing may be off in the last bit of an f64; every stored value
        // is exact in f64 (integers, and floats of at most 53 bits).
        let same = |g: &[f64], w: &[f64]| {
            g.len() == w.len()
                && g.iter()
                    .zip(w)
                    .all(|(g, w)| (g - w).abs() <= 4e-16 * w.abs())
        };
        if let Some(values) = &e.values {
            let want: Vec<f64> = values.iter().map(as_f64).collect();
            assert!(same(&got, &want), "{}: {got:?} vs {want:?}", e.key);
        } else {
            let first = e.first.as_deref().unwrap();
            assert!(
                same(&got[..4], first),
                "{}: {:?} vs {first:?}",
                e.key,
                &got[..4]
            );
            let sum: f64 = got.iter().sum();
            assert!((sum - e.sum.unwrap()).abs() < 1e-9, "{}: sum {sum}", e.key);
        }
    }
    // TensorFlow's object graph: one serialized TrackableObjectGraph.
    let graph = b.strings("_CHECKPOINTABLE_OBJECT_GRAPH").unwrap();
    assert_eq!(graph.len(), 1);
    let text = String::from_utf8_lossy(&graph[0]);
    assert!(
        text.contains("model/kernel/.ATTRIBUTES/VARIABLE_VALUE"),
        "{text}"
    );
}

#[test]
fn a_damaged_copy_is_an_error_naming_the_file() {
    let dir = std::env::temp_dir().join(format!("lathe-ckpt-damaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["ckpt.index", "ckpt.data-00000-of-00001"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    let data = dir.join("ckpt.data-00000-of-00001");
    let len = std::fs::metadata(&data).unwrap().len();
    // Truncated: the entry at the end of the shard runs past it; the others still read.
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() - 1]).unwrap();
    let b = Bundle::open(&dir.join("ckpt")).unwrap();
    let last = b
        .keys()
        .max_by_key(|k| b.entry(k).map(|e| e.offset + e.size))
        .unwrap()
        .to_string();
    let read = |k: &str| match b.tensor(k) {
        Err(e) if e.message.contains("string tensor") => b.strings(k).map(|_| ()),
        r => r.map(|_| ()),
    };
    for k in b.keys() {
        assert_eq!(read(k).is_err(), k == last, "{k}");
    }
    let e = read(&last).unwrap_err().to_string();
    assert!(
        e.contains("ckpt.data-00000-of-00001") && e.contains(&format!("({} bytes)", len - 1)),
        "{e}"
    );
    // A flipped byte in the big variable: its checksum.
    let mut bytes = bytes;
    let entry = b.entry("model/big/.ATTRIBUTES/VARIABLE_VALUE").unwrap();
    bytes[entry.offset as usize + 1000] ^= 0x10;
    std::fs::write(&data, &bytes).unwrap();
    let e = b
        .tensor("model/big/.ATTRIBUTES/VARIABLE_VALUE")
        .unwrap_err()
        .to_string();
    assert!(e.contains("checksum mismatch"), "{e}");
    // A corrupted index.
    let index = dir.join("ckpt.index");
    let mut ib = std::fs::read(&index).unwrap();
    ib[20] ^= 0x01;
    std::fs::write(&index, &ib).unwrap();
    let e = Bundle::open(&dir.join("ckpt")).unwrap_err().to_string();
    assert!(
        e.contains("ckpt.index") && e.contains("checksum mismatch"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
