//! Shared helpers for the integration tests: discovering the TensorFlow fixtures under
//! `fixtures/tf/`, reading their `meta.json`, reading and writing `.npy` files independently of
//! `lathe-runtime` (so the oracle does not share code with what it checks), comparing tensors
//! with the fixtures' tolerances, building small `GraphDef`s, per-test temporary directories,
//! and building C programs against Lathe's libraries ([`c_build`]).

pub mod c_build;

use lathe_ir::{DType, Graph, Tensor};
use lathe_proto::tensorflow::{
    attr_value::Value, tensor_shape_proto, AttrValue, DataType, GraphDef, NodeDef, TensorShapeProto,
};
use npyz::WriterBuilder as _;
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The fewest fixture directories there may be; fewer means one went missing.
pub const MIN_FIXTURES: usize = 19;

/// The directory holding one subdirectory per TensorFlow fixture.
pub fn fixtures_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join("tf")
}

/// The names of every fixture directory, sorted. Any directory counts, so that a fixture with a
/// missing file fails loudly rather than being skipped.
pub fn fixture_names() -> Vec<String> {
    let root = fixtures_root();
    let entries =
        std::fs::read_dir(&root).unwrap_or_else(|e| panic!("listing {}: {e}", root.display()));
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("listing {}: {e}", root.display())))
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `meta.json` of a fixture (the fields the tests use).
#[derive(Debug, Clone, Deserialize)]
pub struct Meta {
    pub name: String,
    pub inputs: Vec<InputMeta>,
    pub outputs: Vec<OutputMeta>,
    /// Sorted distinct TensorFlow op types in the GraphDef.
    pub ops: Vec<String>,
    /// Node count of the GraphDef.
    pub nodes: usize,
    pub rtol: f64,
    pub atol: f64,
}

/// One Placeholder of a fixture.
#[derive(Debug, Clone, Deserialize)]
pub struct InputMeta {
    /// The Placeholder node name.
    pub name: String,
    pub file: String,
    /// NumPy dtype name (`float32`, `int32`, ...).
    pub dtype: String,
    /// Shape of the saved array.
    pub shape: Vec<usize>,
    /// The Placeholder's declared shape; `None` for an unknown dimension.
    pub placeholder_shape: Vec<Option<usize>>,
}

/// One graph output of a fixture, with its tolerance.
#[derive(Debug, Clone, Deserialize)]
pub struct OutputMeta {
    /// TensorFlow's tensor name, e.g. `Identity_3:0`.
    pub name: String,
    pub file: String,
    pub dtype: String,
    pub shape: Vec<usize>,
    pub rtol: f64,
    pub atol: f64,
}

impl OutputMeta {
    /// The tolerance to compare this output with.
    pub fn tolerance(&self) -> Tolerance {
        Tolerance {
            rtol: self.rtol,
            atol: self.atol,
        }
    }
}

/// One fixture directory and its parsed `meta.json`.
#[derive(Debug, Clone)]
pub struct Fixture {
    pub name: String,
    pub dir: PathBuf,
    pub meta: Meta,
}

impl Fixture {
    /// Opens fixture `name`; panics naming the file when `meta.json` is missing or malformed.
    pub fn open(name: &str) -> Fixture {
        let dir = fixtures_root().join(name);
        let path = dir.join("meta.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let meta: Meta =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(
            meta.name,
            name,
            "{}: `name` differs from the directory",
            path.display()
        );
        Fixture {
            name: name.to_string(),
            dir,
            meta,
        }
    }

    /// Every fixture, sorted by name.
    pub fn all() -> Vec<Fixture> {
        fixture_names().iter().map(|n| Fixture::open(n)).collect()
    }

    /// The frozen GraphDef.
    pub fn model_path(&self) -> PathBuf {
        self.dir.join("model.pb")
    }

    /// The model imported with [`lathe_compiler::load`] (which also verifies it); panics with
    /// the import error.
    pub fn graph(&self) -> Graph {
        lathe_compiler::load(&self.model_path())
            .unwrap_or_else(|e| panic!("fixture `{}`: import failed: {e}", self.name))
    }

    /// The inputs by Placeholder name, in `meta.json` order, each checked against the dtype and
    /// shape `meta.json` records for it.
    pub fn inputs(&self) -> Vec<(String, Tensor)> {
        self.meta
            .inputs
            .iter()
            .map(|i| {
                let path = self.dir.join(&i.file);
                let t = read_npy(&path);
                check_recorded(&path, &t, &i.dtype, &i.shape);
                (i.name.clone(), t)
            })
            .collect()
    }

    /// TensorFlow's outputs with their metadata, in `meta.json` order, each checked against the
    /// dtype and shape `meta.json` records for it.
    pub fn expected_outputs(&self) -> Vec<(OutputMeta, Tensor)> {
        self.meta
            .outputs
            .iter()
            .map(|o| {
                let path = self.dir.join(&o.file);
                let t = read_npy(&path);
                check_recorded(&path, &t, &o.dtype, &o.shape);
                (o.clone(), t)
            })
            .collect()
    }
}

fn check_recorded(path: &Path, t: &Tensor, dtype: &str, shape: &[usize]) {
    assert_eq!(
        t.dtype().numpy_name(),
        dtype,
        "{}: dtype differs from meta.json",
        path.display()
    );
    assert_eq!(
        t.shape(),
        shape,
        "{}: shape differs from meta.json",
        path.display()
    );
}

/// Reads a `.npy` file of the dtypes the fixtures use (`<f4`, `<f8`, `<i4`, `<i8`, `|b1`, C
/// order) with `npyz` directly, not through `lathe-runtime`. Panics naming the file.
pub fn read_npy(path: &Path) -> Tensor {
    let fail = |e: &dyn std::fmt::Display| -> ! { panic!("{}: {e}", path.display()) };
    let bytes = std::fs::read(path).unwrap_or_else(|e| fail(&e));
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap_or_else(|e| fail(&e));
    if npy.order() != npyz::Order::C {
        fail(&"Fortran-order arrays are not used by the fixtures");
    }
    let shape: Vec<usize> = npy.shape().iter().map(|&d| d as usize).collect();
    let npyz::DType::Plain(ts) = npy.dtype() else {
        fail(&"structured arrays are not used by the fixtures");
    };
    let descr = ts.to_string();
    match descr.as_str() {
        "<f4" => Tensor::from_vec(&shape, npy.into_vec::<f32>().unwrap_or_else(|e| fail(&e))),
        "<f8" => Tensor::from_vec(&shape, npy.into_vec::<f64>().unwrap_or_else(|e| fail(&e))),
        "<i4" => Tensor::from_vec(&shape, npy.into_vec::<i32>().unwrap_or_else(|e| fail(&e))),
        "<i8" => Tensor::from_vec(&shape, npy.into_vec::<i64>().unwrap_or_else(|e| fail(&e))),
        "|b1" => Tensor::from_vec(&shape, npy.into_vec::<bool>().unwrap_or_else(|e| fail(&e))),
        other => fail(&format!("unexpected .npy dtype `{other}`")),
    }
}

/// Writes `t` as a C-order little-endian `.npy` file with `npyz` (f32, f64, i32, i64, bool).
pub fn write_npy(path: &Path, t: &Tensor) {
    let shape: Vec<u64> = t.shape().iter().map(|&d| d as u64).collect();
    let mut out = Vec::new();
    macro_rules! emit {
        ($ty:ty) => {{
            let a = t.as_array::<$ty>().expect("dtype checked");
            let mut w = npyz::WriteOptions::new()
                .default_dtype()
                .shape(&shape)
                .writer(&mut out)
                .begin_nd()
                .expect("writing to memory");
            w.extend(a.iter().copied()).expect("writing to memory");
            w.finish().expect("writing to memory");
        }};
    }
    match t.dtype() {
        DType::F32 => emit!(f32),
        DType::F64 => emit!(f64),
        DType::I32 => emit!(i32),
        DType::I64 => emit!(i64),
        DType::Bool => emit!(bool),
        other => panic!("write_npy: {other} is not supported by the test helper"),
    }
    std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// Allowed error for float outputs: `|got - want| <= atol + rtol * |want|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Tolerance {
    /// No error allowed.
    pub const EXACT: Tolerance = Tolerance {
        rtol: 0.0,
        atol: 0.0,
    };
}

/// The row-major multi-index of flat position `flat` in `shape`.
pub fn unravel(mut flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = flat % d;
            flat /= d;
        }
    }
    idx
}

/// Compares `got` against `want`: same dtype and shape; float elements within `tol` (a NaN
/// only matches a NaN, an infinity only itself); integer and bool elements exactly, whatever
/// `tol` says. The error says how many elements differ and shows the worst one (the one that
/// exceeds its allowance most) with its index.
pub fn compare(got: &Tensor, want: &Tensor, tol: Tolerance) -> Result<(), String> {
    if got.dtype() != want.dtype() {
        return Err(format!("dtype: got {}, want {}", got.dtype(), want.dtype()));
    }
    if got.shape() != want.shape() {
        return Err(format!(
            "shape: got {:?}, want {:?}",
            got.shape(),
            want.shape()
        ));
    }
    // (flat index, how far past its allowance; infinite for a NaN/inf mismatch or ints)
    let mut bad: Vec<(usize, f64)> = Vec::new();
    if want.dtype().is_float() {
        let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
        for (i, (&g, &w)) in g.iter().zip(&w).enumerate() {
            let excess = if w.is_nan() || g.is_nan() || w.is_infinite() || g.is_infinite() {
                let same = (w.is_nan() && g.is_nan()) || g == w;
                if same {
                    continue;
                }
                f64::INFINITY
            } else {
                (g - w).abs() - (tol.atol + tol.rtol * w.abs())
            };
            if excess > 0.0 {
                bad.push((i, excess));
            }
        }
    } else if want.dtype().is_int() {
        let g = got.to_i64_vec().expect("integer dtype");
        let w = want.to_i64_vec().expect("integer dtype");
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            if a != b {
                bad.push((i, (*a as f64 - *b as f64).abs()));
            }
        }
    } else {
        let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
        for (i, (a, b)) in g.iter().zip(&w).enumerate() {
            if a != b {
                bad.push((i, 1.0));
            }
        }
    }
    let Some(&(worst, _)) = bad.iter().max_by(|a, b| a.1.total_cmp(&b.1)) else {
        return Ok(());
    };
    let (g, w) = (got.to_f64_vec()[worst], want.to_f64_vec()[worst]);
    let mut msg = format!(
        "{} of {} elements differ; worst at {:?}: got {g:e}, want {w:e}",
        bad.len(),
        want.len(),
        unravel(worst, want.shape()),
    );
    if want.dtype().is_float() {
        let _ = write!(
            msg,
            " (|diff| {:e} > allowed {:e} = atol {:e} + rtol {:e} * |want|)",
            (g - w).abs(),
            tol.atol + tol.rtol * w.abs(),
            tol.atol,
            tol.rtol
        );
    }
    Err(msg)
}

/// Checks that two tensors are bit for bit the same: dtype, shape and every byte (so NaNs with
/// the same payload match, and -0.0 does not match 0.0).
pub fn bit_identical(got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.dtype() != want.dtype() || got.shape() != want.shape() {
        return Err(format!(
            "type: got {}{:?}, want {}{:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        ));
    }
    let (g, w) = (got.to_le_bytes(), want.to_le_bytes());
    if g == w {
        return Ok(());
    }
    let size = want.dtype().size_bytes();
    let first = g
        .iter()
        .zip(&w)
        .position(|(a, b)| a != b)
        .expect("byte vectors differ")
        / size;
    Err(format!(
        "not bit-identical; first difference at {:?}: got {:e}, want {:e}",
        unravel(first, want.shape()),
        got.to_f64_vec()[first],
        want.to_f64_vec()[first]
    ))
}

/// Runs `graph` on the reference interpreter through [`lathe_runtime::Model`], specialized to
/// the inputs' shapes but not optimized (`opt_level: 0`), so callers see `graph` as given;
/// returns the outputs by name. Errors are returned as text.
pub fn run_interp(
    graph: Graph,
    inputs: &[(String, Tensor)],
) -> Result<Vec<(String, Tensor)>, String> {
    let options = lathe_runtime::ModelOptions {
        backend: lathe_runtime::Backend::Interp,
        opt_level: 0,
        ..lathe_runtime::ModelOptions::default()
    };
    let model = lathe_runtime::Model::with_options(graph, options)
        .map_err(|e| format!("loading the model: {e}"))?;
    let named: Vec<(&str, Tensor)> = inputs
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    model
        .run(&named)
        .map_err(|e| format!("running the model: {e}"))
}

/// Outputs as a map from name to tensor; panics on a duplicate name.
pub fn by_name(outputs: Vec<(String, Tensor)>) -> HashMap<String, Tensor> {
    let mut map = HashMap::new();
    for (n, t) in outputs {
        assert!(
            map.insert(n.clone(), t).is_none(),
            "output `{n}` appears twice"
        );
    }
    map
}

/// A `GraphDef` node.
pub fn node_def(name: &str, op: &str, inputs: &[&str], attrs: &[(&str, Value)]) -> NodeDef {
    NodeDef {
        name: name.to_string(),
        op: op.to_string(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        attr: attrs
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    AttrValue {
                        value: Some(v.clone()),
                    },
                )
            })
            .collect(),
        ..NodeDef::default()
    }
}

/// A float32 `Placeholder` node; `shape: None` leaves out the `shape` attribute.
pub fn placeholder(name: &str, shape: Option<&[i64]>) -> NodeDef {
    let mut attrs = vec![("dtype", Value::Type(DataType::DtFloat as i32))];
    if let Some(dims) = shape {
        attrs.push((
            "shape",
            Value::Shape(TensorShapeProto {
                dim: dims
                    .iter()
                    .map(|&size| tensor_shape_proto::Dim {
                        size,
                        name: String::new(),
                    })
                    .collect(),
                unknown_rank: false,
            }),
        ));
    }
    node_def(name, "Placeholder", &[], &attrs)
}

/// A `GraphDef` of the given nodes.
pub fn graph_def(nodes: Vec<NodeDef>) -> GraphDef {
    GraphDef {
        node: nodes,
        ..GraphDef::default()
    }
}

/// `x` (a float32 [2,3] Placeholder), `frob` = `FrobnicateV9(x)` (an op nobody supports) and
/// `out` = `Relu(frob)`.
pub fn unknown_op_graph_def() -> GraphDef {
    graph_def(vec![
        placeholder("x", Some(&[2, 3])),
        node_def("frob", "FrobnicateV9", &["x"], &[]),
        node_def("out", "Relu", &["frob"], &[]),
    ])
}

/// Writes `gd` as a binary `.pb` file.
pub fn write_graph_def(path: &Path, gd: &GraphDef) {
    use lathe_proto::Message;
    std::fs::write(path, gd.encode_to_vec()).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// `t` repeated `times` times along axis 0 (rank >= 1).
pub fn tile_rows(t: &Tensor, times: usize) -> Tensor {
    assert!(!t.shape().is_empty(), "tile_rows needs rank >= 1");
    let mut shape = t.shape().to_vec();
    shape[0] *= times;
    let one = t.to_le_bytes();
    Tensor::from_le_bytes(t.dtype(), &shape, &one.repeat(times)).expect("sizes match")
}

/// The first `n` rows (along axis 0) of `t`.
pub fn first_rows(t: &Tensor, n: usize) -> Tensor {
    let mut shape = t.shape().to_vec();
    assert!(n <= shape[0], "first_rows: {n} > {}", shape[0]);
    let row_bytes = t.size_bytes() / shape[0].max(1);
    shape[0] = n;
    Tensor::from_le_bytes(t.dtype(), &shape, &t.to_le_bytes()[..n * row_bytes])
        .expect("sizes match")
}

/// The small fixtures of the six benchmark models (`benches/make_models.py` makes the full
/// ones), in the order the benchmarks list them.
pub const BENCHMARK_FIXTURES: [&str; 6] = [
    "mlp_tiny",
    "cnn_tiny",
    "mobilenet_tiny",
    "resnet_tiny",
    "encoder_tiny",
    "gelu_chain_tiny",
];

/// A fresh directory under the system temp dir, unique per process and test name, removed
/// (with its contents) when dropped.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates (emptying first, if a previous run left it) `lathe-tests-<pid>-<name>`.
    pub fn new(name: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("lathe-tests-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        TempDir { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A path inside the directory.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    //! The comparison is the oracle of every fixture test; these check that it can fail.
    use super::*;

    fn f32s(shape: &[usize], v: &[f32]) -> Tensor {
        Tensor::from_vec(shape, v.to_vec())
    }

    const TOL: Tolerance = Tolerance {
        rtol: 1e-4,
        atol: 1e-5,
    };

    #[test]
    fn compare_accepts_within_tolerance_and_rejects_beyond() {
        let want = f32s(&[2, 2], &[1.0, -2.0, 100.0, 0.0]);
        // 100 * 1e-4 + 1e-5 = 0.01001 allowed at [1,0].
        let ok = f32s(&[2, 2], &[1.0, -2.0, 100.01, 5e-6]);
        compare(&ok, &want, TOL).unwrap();
        let bad = f32s(&[2, 2], &[1.0, -2.0, 100.0, 3e-5]);
        let e = compare(&bad, &want, TOL).unwrap_err();
        assert!(
            e.starts_with("1 of 4 elements differ; worst at [1, 1]"),
            "{e}"
        );
        // The worst is the one furthest past its allowance, not the first.
        let bad = f32s(&[2, 2], &[1.001, -2.0, 101.0, 0.0]);
        let e = compare(&bad, &want, TOL).unwrap_err();
        assert!(
            e.starts_with("2 of 4 elements differ; worst at [1, 0]"),
            "{e}"
        );
    }

    #[test]
    fn compare_handles_nan_inf_dtype_shape_and_ints() {
        let want = f32s(&[3], &[f32::NAN, f32::INFINITY, 1.0]);
        compare(&want.clone(), &want, TOL).unwrap();
        let e = compare(&f32s(&[3], &[0.0, f32::INFINITY, 1.0]), &want, TOL).unwrap_err();
        assert!(e.contains("worst at [0]"), "{e}");
        let e = compare(&f32s(&[3], &[f32::NAN, 1e30, 1.0]), &want, TOL).unwrap_err();
        assert!(e.contains("worst at [1]"), "{e}");
        let e = compare(
            &f32s(&[3], &[f32::NAN, f32::INFINITY, f32::NAN]),
            &want,
            TOL,
        )
        .unwrap_err();
        assert!(e.contains("worst at [2]"), "{e}");
        let e = compare(&f32s(&[1, 3], &[0.0; 3]), &f32s(&[3], &[0.0; 3]), TOL).unwrap_err();
        assert_eq!(e, "shape: got [1, 3], want [3]");
        let ints = Tensor::from_vec(&[2], vec![1i32, 2]);
        let e = compare(&f32s(&[2], &[1.0, 2.0]), &ints, TOL).unwrap_err();
        assert_eq!(e, "dtype: got f32, want i32");
        // Integers are exact even with a tolerance.
        let loose = Tolerance {
            rtol: 1.0,
            atol: 10.0,
        };
        let e = compare(&Tensor::from_vec(&[2], vec![1i32, 3]), &ints, loose).unwrap_err();
        assert!(e.starts_with("1 of 2 elements differ; worst at [1]"), "{e}");
        let e = compare(
            &Tensor::from_vec(&[2], vec![true, true]),
            &Tensor::from_vec(&[2], vec![true, false]),
            loose,
        )
        .unwrap_err();
        assert!(e.contains("worst at [1]"), "{e}");
        let big = Tensor::from_vec(&[1], vec![i64::MAX]);
        compare(&big, &big.clone(), Tolerance::EXACT).unwrap();
        assert!(compare(&Tensor::from_vec(&[1], vec![i64::MAX - 1]), &big, loose).is_err());
    }

    #[test]
    fn bit_identical_distinguishes_signed_zero() {
        let a = f32s(&[2], &[0.0, f32::NAN]);
        bit_identical(&a, &a.clone()).unwrap();
        let e = bit_identical(&f32s(&[2], &[-0.0, f32::NAN]), &a).unwrap_err();
        assert!(e.contains("first difference at [0]"), "{e}");
    }

    #[test]
    fn unravel_is_row_major() {
        assert_eq!(unravel(0, &[]), Vec::<usize>::new());
        assert_eq!(unravel(7, &[2, 3, 4]), vec![0, 1, 3]);
        assert_eq!(unravel(23, &[2, 3, 4]), vec![1, 2, 3]);
    }

    #[test]
    fn npy_helpers_round_trip() {
        let dir = TempDir::new("npy_helpers_round_trip");
        for t in [
            f32s(&[2, 3], &[1.0, -2.5, 3.0, 0.0, 1e-30, 7.0]),
            Tensor::from_vec(&[], vec![3.5f64]),
            Tensor::from_vec(&[3], vec![1i32, -2, 3]),
            Tensor::from_vec(&[1, 2], vec![i64::MIN, i64::MAX]),
            Tensor::from_vec(&[2], vec![true, false]),
        ] {
            let p = dir.join("t.npy");
            write_npy(&p, &t);
            bit_identical(&read_npy(&p), &t).unwrap();
        }
    }
}
