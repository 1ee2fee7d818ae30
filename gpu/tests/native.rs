//! MLIR in-process (`mlir::native`, the `cuda` feature): host functions compiled by MLIR's JIT
//! and run on Rust buffers, and lowered graphs taken on to PTX.

#![cfg(feature = "cuda")]

use lathe_gpu::mlir::host::Ptxas;
use lathe_gpu::mlir::native::Native;

/// `2 * erf(x)` over 4 floats: a libm function, resolved in the JIT from this process.
const ERF: &str = r#"module {
  func.func @k0(%in0: memref<4xf32>, %out0: memref<4xf32>) {
    %zero = arith.constant 0 : index
    %one = arith.constant 1 : index
    %n = arith.constant 4 : index
    %two = arith.constant 2.0 : f32
    scf.for %i = %zero to %n step %one {
      %x = memref.load %in0[%i] : memref<4xf32>
      %e = math.erf %x : f32
      %y = arith.mulf %e, %two : f32
      memref.store %y, %out0[%i] : memref<4xf32>
    }
    return
  }
}
"#;

#[test]
fn a_host_function_runs_on_rust_buffers_with_libm() {
    let native = Native::new();
    let module = native.host(ERF).expect("compiles");
    let mut input = vec![-1.5f32, 0.0, 0.5, 3.0];
    let mut output = vec![0f32; 4];
    // SAFETY: both buffers hold the 4 f32 of the memrefs and do not overlap.
    unsafe {
        module.call(
            "k0",
            &[input.as_mut_ptr().cast(), output.as_mut_ptr().cast()],
        )
    }
    .expect("runs");
    for (x, y) in input.iter().zip(&output) {
        let want = 2.0 * libm::erff(*x);
        assert!((y - want).abs() <= 1e-6, "2 erf({x}) = {y}, want {want}");
    }
}

/// Integers and a constant global: `x * c[i] + 1` over i64 and a comparison stored as i8.
const INTEGERS: &str = r#"
  memref.global "private" constant @c0 : memref<3xi64> = dense<[3, -2, 1000000000000]>
  func.func @k1(%in0: memref<3xi64>, %out0: memref<3xi64>, %out1: memref<3xi8>) {
    %zero = arith.constant 0 : index
    %one = arith.constant 1 : index
    %n = arith.constant 3 : index
    %c = memref.get_global @c0 : memref<3xi64>
    %k1 = arith.constant 1 : i64
    %k0 = arith.constant 0 : i64
    scf.for %i = %zero to %n step %one {
      %x = memref.load %in0[%i] : memref<3xi64>
      %m = memref.load %c[%i] : memref<3xi64>
      %p = arith.muli %x, %m : i64
      %y = arith.addi %p, %k1 : i64
      memref.store %y, %out0[%i] : memref<3xi64>
      %b = arith.cmpi slt, %y, %k0 : i64
      %e = arith.extui %b : i1 to i8
      memref.store %e, %out1[%i] : memref<3xi8>
    }
    return
  }
"#;

#[test]
fn integer_kernels_and_globals_run() {
    let native = Native::new();
    let module = native.host(INTEGERS).expect("compiles");
    let mut input = vec![5i64, 7, -3];
    let mut product = vec![0i64; 3];
    let mut negative = vec![9u8; 3];
    let buffers = [
        input.as_mut_ptr().cast(),
        product.as_mut_ptr().cast(),
        negative.as_mut_ptr(),
    ];
    // SAFETY: each buffer holds its memref's 3 elements; none overlap.
    unsafe { module.call("k1", &buffers) }.expect("runs");
    assert_eq!(product, [16, -13, -2_999_999_999_999]);
    assert_eq!(negative, [0, 1, 1]);
}

#[test]
fn calls_are_checked_against_the_module() {
    let native = Native::new();
    let module = native.host(ERF).expect("compiles");
    let mut x = [0f32; 4];
    // SAFETY: refused before anything is called.
    let e = unsafe { module.call("k0", &[x.as_mut_ptr().cast()]) }.unwrap_err();
    assert_eq!(e, "function `k0` takes 2 memrefs, called with 1 buffers");
    // SAFETY: as above.
    let e = unsafe { module.call("k9", &[]) }.unwrap_err();
    assert_eq!(e, "no function `k9` in the module");
}

#[test]
fn errors_say_which_step_failed_with_mlir_diagnostics() {
    let native = Native::new();
    let e = native
        .host("func.func @k0(%a: memref<4xf32>) { nonsense }")
        .err()
        .unwrap();
    assert!(e.starts_with("MLIR did not parse the module:\n"), "{e}");
    let e = native
        .ptx("module {}", "sm_90", None)
        .expect_err("no gpu.module, no PTX");
    assert!(e.starts_with("no PTX in MLIR's output"), "{e}");
    let missing = std::path::Path::new("/nonexistent/libdevice.10.bc");
    let e = native
        .ptx(&exp_module(), "sm_90", Some(missing))
        .unwrap_err();
    assert!(e.starts_with("MLIR's pipeline to PTX failed:\n"), "{e}");
    assert!(
        e.contains("/nonexistent/libdevice.10.bc does not exist"),
        "{e}"
    );
}

#[test]
fn a_symbol_that_does_not_resolve_is_an_error_when_called() {
    let native = Native::new();
    let module = native
        .host(
            "func.func private @not_in_this_process(f32) -> f32
  func.func @k0(%a: memref<1xf32>) {
    %c0 = arith.constant 0 : index
    %x = memref.load %a[%c0] : memref<1xf32>
    %y = func.call @not_in_this_process(%x) : (f32) -> f32
    memref.store %y, %a[%c0] : memref<1xf32>
    return
  }",
        )
        .expect("compiles: symbols resolve when called");
    let mut x = [1f32];
    // SAFETY: refused before anything runs (the JIT cannot link `k0`).
    let e = unsafe { module.call("k0", &[x.as_mut_ptr().cast()]) }.unwrap_err();
    assert!(e.contains("could not link function `k0`"), "{e}");
}

/// A real module: one kernel, `exp`, lowered from the IR.
fn exp_module() -> String {
    let g = lathe_ir::text::parse(
        "graph @t(%x: f32[4]) -> (\"y\": f32[4]) {\n  %0 = exp(%x) : f32[4]\n  return %0\n}\n",
    )
    .expect("parses");
    lathe_gpu::mlir::lower_graph(&g).expect("lowers").text
}

#[test]
fn a_lowered_graph_becomes_ptx_for_sm_80_and_sm_90() {
    let native = Native::new();
    let module = exp_module();
    let ptxas = Ptxas::find();
    for chip in ["sm_80", "sm_90"] {
        let ptx = native.ptx(&module, chip, None).expect("lowers to PTX");
        assert!(ptx.contains(".entry k0"), "{ptx}");
        assert!(ptx.contains(&format!(".target {chip}")), "{ptx}");
        // With libdevice linked, ptxas assembles the module alone.
        if let Some(ptxas) = &ptxas {
            let ptx = native
                .ptx(&module, chip, Some(&ptxas.libdevice))
                .expect("lowers to PTX with libdevice");
            ptxas.assemble(&ptx, chip).expect("assembles");
        }
    }
}
