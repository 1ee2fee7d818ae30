//! Running a kernel on the CPU with MLIR's own tools, to check the lowering without a GPU: the
//! kernel's host function (the same instructions as its `gpu.func`, in a loop), its inputs as
//! constant globals, and a `main` that prints every output element's bits; `mlir-opt` lowers
//! that to the LLVM dialect ([`HOST_PIPELINE`], math functions from libm) and
//! `mlir-cpu-runner` runs it.

use super::kernel::element;
use super::{Arg, Kernel};
use lathe_ir::{DType, NodeId, Tensor, TensorType};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// MLIR's pipeline from a module of host functions to the LLVM dialect.
pub const HOST_PIPELINE: &str = "builtin.module(convert-math-to-libm,convert-scf-to-cf,\
convert-to-llvm,reconcile-unrealized-casts)";

/// Where LLVM 19's tools are installed (Debian's `mlir-19-tools` and `libmlir-19-dev`).
const LLVM: &str = "/usr/lib/llvm-19";

/// MLIR's tools: `mlir-opt`, `mlir-cpu-runner` and the runner's support libraries.
#[derive(Clone, Debug)]
pub struct Tools {
    pub opt: PathBuf,
    pub runner: PathBuf,
    pub libs: Vec<PathBuf>,
}

impl Tools {
    /// LLVM 19's MLIR tools, if all are installed.
    pub fn find() -> Option<Tools> {
        let at = |p: &str| Some(PathBuf::from(LLVM).join(p)).filter(|p| p.is_file());
        Some(Tools {
            opt: at("bin/mlir-opt")?,
            runner: at("bin/mlir-cpu-runner")?,
            libs: vec![
                at("lib/libmlir_runner_utils.so")?,
                at("lib/libmlir_c_runner_utils.so")?,
            ],
        })
    }

    /// The PTX MLIR's pipeline ([`super::ptx_pipeline`]) makes of a lowered module for
    /// `chip`, with libdevice linked when given.
    pub fn ptx(
        &self,
        lowered: &super::Lowered,
        chip: &str,
        libdevice: Option<&Path>,
    ) -> Result<String, String> {
        let binary = tool(
            Command::new(&self.opt).arg(format!(
                "--pass-pipeline={}",
                super::ptx_pipeline(chip, libdevice)
            )),
            &lowered.text,
        )
        .map_err(|e| format!("{e}\n--- module ---\n{}", lowered.text))?;
        super::ptx_of(&binary).ok_or_else(|| format!("no PTX in MLIR's output:\n{binary}"))
    }

    /// Runs `kernel` on `args` (one tensor per [`Kernel::args`], a fault flag as one i32)
    /// on the CPU and returns its outputs, and whether a thread raised the fault flag.
    pub fn run(&self, kernel: &Kernel, args: &[Tensor]) -> Result<(Vec<Tensor>, bool), String> {
        let module = runnable(kernel, args)?;
        let lowered = tool(
            Command::new(&self.opt).arg(format!("--pass-pipeline={HOST_PIPELINE}")),
            &module,
        )?;
        let libs: Vec<String> = self.libs.iter().map(|l| l.display().to_string()).collect();
        let printed = tool(
            Command::new(&self.runner)
                .args(["-e", "main", "-entry-point-result=void"])
                .arg(format!("-shared-libs={}", libs.join(","))),
            &lowered,
        )
        .map_err(|e| format!("{e}\n--- module ---\n{module}"))?;
        read_outputs(kernel, &printed)
    }
}

/// Runs one tool on `input` (standard input), returning its standard output.
fn tool(command: &mut Command, input: &str) -> Result<String, String> {
    let mut child = (command.stdin(Stdio::piped()).stdout(Stdio::piped()))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{:?}: {e}", command.get_program()))?;
    (child.stdin.take().expect("piped"))
        .write_all(input.as_bytes())
        .map_err(|e| e.to_string())?;
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            command.get_program(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    String::from_utf8(out.stdout).map_err(|e| e.to_string())
}

/// The tensors `kernel`'s arguments are bound to, given the values of its graph's nodes (as
/// `lathe_ir::interp::run_all` gives them): a fault flag starts at 0.
pub fn bind(kernel: &Kernel, values: &HashMap<NodeId, Vec<Tensor>>) -> Result<Vec<Tensor>, String> {
    (kernel.args.iter())
        .map(|a| match a {
            Arg::Value(v) => (values.get(&v.node))
                .and_then(|o| o.get(v.output as usize))
                .cloned()
                .ok_or_else(|| format!("kernel {}: no value for {v:?}", kernel.symbol)),
            Arg::Weight(t) => Ok((**t).clone()),
            Arg::Fault => Ok(Tensor::zeros(DType::I32, &[1])),
        })
        .collect()
}

/// What `main` prints, in order: each output's elements, then each fault flag.
fn printed(kernel: &Kernel) -> Vec<(String, TensorType)> {
    let mut out: Vec<(String, TensorType)> = (kernel.outputs.iter().enumerate())
        .map(|(k, t)| (format!("%out{k}"), t.clone()))
        .collect();
    for (k, a) in kernel.args.iter().enumerate() {
        if *a == Arg::Fault {
            out.push((format!("%in{k}"), TensorType::known(DType::I32, &[1])));
        }
    }
    out
}

/// A module with `kernel`'s host function, `args` as globals and a `main` that calls it and
/// prints each output's elements (then the fault flag) as 64-bit integers holding their bits.
pub fn runnable(kernel: &Kernel, args: &[Tensor]) -> Result<String, String> {
    if args.len() != kernel.args.len() {
        return Err(format!(
            "kernel {} takes {} arguments, given {}",
            kernel.symbol,
            kernel.args.len(),
            args.len()
        ));
    }
    let mut m = String::from("module {\n");
    let mut main = String::from("  func.func @main() {\n");
    main.push_str("    %zero = arith.constant 0 : index\n    %one = arith.constant 1 : index\n");
    let mut names = Vec::new();
    let mut types = Vec::new();
    for (k, t) in args.iter().enumerate() {
        let (elem, _) = element(t.dtype())?;
        let values = super::kernel::dense(t)?;
        let ty = format!("memref<{}x{elem}>", t.len());
        let _ = writeln!(
            m,
            "  memref.global \"private\" @in{k} : {ty} = dense<[{}]>",
            values.join(", ")
        );
        let _ = writeln!(main, "    %in{k} = memref.get_global @in{k} : {ty}");
        names.push(format!("%in{k}"));
        types.push(ty);
    }
    for (k, o) in kernel.outputs.iter().enumerate() {
        let (elem, _) = element(o.dtype)?;
        let ty = format!("memref<{}x{elem}>", kernel.elements);
        let _ = writeln!(main, "    %out{k} = memref.alloc() : {ty}");
        names.push(format!("%out{k}"));
        types.push(ty);
    }
    let _ = writeln!(
        main,
        "    call @{}({}) : ({}) -> ()",
        kernel.symbol,
        names.join(", "),
        types.join(", ")
    );
    for (k, (name, ty)) in printed(kernel).iter().enumerate() {
        let (elem, bits) = element(ty.dtype)?;
        let n: usize = ty.shape.dims().iter().filter_map(|d| d.known()).product();
        let _ = write!(
            main,
            "    %n{k} = arith.constant {n} : index\n    %bits{k} = memref.alloc() : memref<{n}xi64>\n    \
             scf.for %i = %zero to %n{k} step %one {{\n      \
             %v = memref.load {name}[%i] : memref<{n}x{elem}>\n"
        );
        let raw = if elem.starts_with('i') {
            "%v"
        } else {
            let _ = writeln!(main, "      %b = arith.bitcast %v : {elem} to i{bits}");
            "%b"
        };
        let wide = if bits == 64 {
            raw
        } else {
            let _ = writeln!(main, "      %w = arith.extui {raw} : i{bits} to i64");
            "%w"
        };
        let _ = write!(
            main,
            "      memref.store {wide}, %bits{k}[%i] : memref<{n}xi64>\n    }}\n    \
             %print{k} = memref.cast %bits{k} : memref<{n}xi64> to memref<*xi64>\n    \
             call @printMemrefI64(%print{k}) : (memref<*xi64>) -> ()\n"
        );
    }
    main.push_str("    return\n  }\n");
    m.push_str(&kernel.host);
    m.push_str(&main);
    m.push_str(
        "  func.func private @printMemrefI64(memref<*xi64>) attributes { llvm.emit_c_interface }\n}\n",
    );
    Ok(m)
}

/// The outputs `main` printed (one bracketed list of bit patterns each), and whether the fault
/// flag was raised.
fn read_outputs(kernel: &Kernel, printed_text: &str) -> Result<(Vec<Tensor>, bool), String> {
    // Each buffer prints `... sizes = [n] strides = [1] data = \n[v, ...]`: three lists.
    let mut lists =
        (printed_text.split('[').skip(1)).filter_map(|s| s.split_once(']').map(|(l, _)| l));
    let mut outputs = Vec::new();
    let mut fault = false;
    for (k, (_, ty)) in printed(kernel).iter().enumerate() {
        let (_, bits) = element(ty.dtype)?;
        let list = (lists.nth(2))
            .ok_or_else(|| format!("the run printed no data for buffer {k}:\n{printed_text}"))?;
        let mut bytes = Vec::new();
        for v in list.split(',').map(str::trim).filter(|v| !v.is_empty()) {
            let v: i64 = v
                .parse()
                .map_err(|_| format!("the run printed `{v}` for buffer {k}"))?;
            bytes.extend_from_slice(&(v as u64).to_le_bytes()[..bits / 8]);
        }
        if k >= kernel.outputs.len() {
            fault |= bytes.iter().any(|&b| b != 0);
            continue;
        }
        let dims: Vec<usize> = (ty.shape.dims().iter())
            .map(|d| d.known().ok_or("an output of unknown shape"))
            .collect::<Result<_, _>>()?;
        outputs.push(Tensor::from_le_bytes(ty.dtype, &dims, &bytes)?);
    }
    Ok((outputs, fault))
}

/// CUDA's PTX assembler and libdevice, from the `nvidia-cuda-nvcc-cu12` pip package: the
/// directory `LATHE_CUDA_NVCC` names (the package's `nvidia/cuda_nvcc`).
#[derive(Clone, Debug)]
pub struct Ptxas {
    pub ptxas: PathBuf,
    pub libdevice: PathBuf,
}

impl Ptxas {
    /// `ptxas` and `libdevice.10.bc` under `$LATHE_CUDA_NVCC`, if both are there.
    pub fn find() -> Option<Ptxas> {
        let dir = PathBuf::from(std::env::var_os("LATHE_CUDA_NVCC")?);
        let ptxas = dir.join("bin/ptxas");
        let libdevice = dir.join("nvvm/libdevice/libdevice.10.bc");
        (ptxas.is_file() && libdevice.is_file()).then_some(Ptxas { ptxas, libdevice })
    }

    /// Assembles `ptx` for `chip`; the error is `ptxas`'s.
    pub fn assemble(&self, ptx: &str, chip: &str) -> Result<(), String> {
        let dir = std::env::temp_dir().join(format!("lathe-ptxas-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let (input, output) = (dir.join(format!("{n}.ptx")), dir.join(format!("{n}.cubin")));
        std::fs::write(&input, ptx).map_err(|e| e.to_string())?;
        let out = Command::new(&self.ptxas)
            .arg(format!("-arch={chip}"))
            .arg(&input)
            .arg("-o")
            .arg(&output)
            .output()
            .map_err(|e| format!("{}: {e}", self.ptxas.display()))?;
        let _ = std::fs::remove_file(&input);
        let _ = std::fs::remove_file(&output);
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "ptxas -arch={chip} refused the PTX: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }
}
