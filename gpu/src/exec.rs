//! Running a lowered graph on a device: the kernels in graph order, each output buffer
//! allocated when its kernel runs and released after its last reader, views sharing their
//! source's buffer, constants uploaded once ([`Loaded::new`]), host copies only of the graph's
//! inputs and outputs. The device is the CUDA one (`cuda::CudaDevice`) or the host running the
//! kernels' host functions (`host_device::HostDevice`, which checks the lowering without a GPU).

use crate::mlir::{element, lower_graph, Arg, Kernel, LowerError, Lowered};
use lathe_ir::{Graph, Op, Tensor, TensorType, ValueId};
use std::collections::HashMap;
use std::sync::Arc;

/// What runs kernels: buffers of bytes in its memory, and launches.
pub trait Device {
    /// A buffer in the device's memory.
    type Buf;
    /// Prepares the kernels of `lowered` to be launched (compiles them for the device).
    fn load(&mut self, lowered: &Lowered) -> Result<(), String>;
    /// A buffer holding `bytes`.
    fn upload(&mut self, bytes: &[u8]) -> Result<Self::Buf, String>;
    /// A buffer of `len` bytes, zeroed.
    fn alloc_zeroed(&mut self, len: usize) -> Result<Self::Buf, String>;
    /// A buffer of `len` bytes for a kernel's output, which the kernel writes whole: its
    /// contents before need not be zero.
    fn alloc_output(&mut self, len: usize) -> Result<Self::Buf, String> {
        self.alloc_zeroed(len)
    }
    /// The first `len` bytes of `buf`.
    fn download(&mut self, buf: &Self::Buf, len: usize) -> Result<Vec<u8>, String>;
    /// Runs `kernel` (one thread per element) on `args`: its arguments, then its outputs.
    fn launch(&mut self, kernel: &Kernel, args: &[&Self::Buf]) -> Result<(), String>;
    /// Gives back a buffer no longer used (a caching allocator keeps it for reuse).
    fn release(&mut self, buf: Self::Buf);
}

/// Why running a lowered graph failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    Lower(#[from] LowerError),
    #[error("{0}")]
    Device(String),
    #[error("input {index} (`{name}`): {message}")]
    Input {
        index: usize,
        name: String,
        message: String,
    },
    #[error("node `{node}` (op {op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
}

/// A graph lowered for a device, its constants there.
pub struct Loaded<D: Device> {
    graph: Graph,
    lowered: Lowered,
    /// Buffers of the graph's constants and of the kernels' weights, uploaded once.
    constants: HashMap<ValueId, Arc<D::Buf>>,
    weights: Vec<Vec<Option<Arc<D::Buf>>>>,
    /// Per value, how many kernels (and graph outputs) read it: when to release its buffer.
    readers: HashMap<ValueId, usize>,
    /// Each view's source, resolved through chains of views.
    source: HashMap<ValueId, ValueId>,
}

/// Bytes of a tensor of type `ty` as the kernels store it (bool as one byte).
fn byte_len(ty: &TensorType) -> Result<usize, String> {
    let dims = ty
        .shape
        .as_known()
        .ok_or_else(|| format!("the shape {ty} is not known: run a specialized graph"))?;
    let (_, bits) = element(ty.dtype)?;
    let elem = bits / 8;
    Ok(dims.iter().product::<usize>() * elem)
}

impl<D: Device> Loaded<D> {
    /// Lowers `graph` (specialized: every shape known) and uploads its constants to `device`.
    pub fn new(device: &mut D, graph: Graph) -> Result<Loaded<D>, ExecError> {
        let lowered = {
            let _span = tracing::info_span!("lower to MLIR", nodes = graph.len()).entered();
            lower_graph(&graph)?
        };
        {
            let _span =
                tracing::info_span!("compile kernels", kernels = lowered.kernels.len()).entered();
            device.load(&lowered).map_err(ExecError::Device)?;
        }
        let mut source = HashMap::new();
        for (v, of) in &lowered.views {
            let root = *source.get(of).unwrap_or(of);
            source.insert(*v, root);
        }
        let resolve = |v: ValueId| *source.get(&v).unwrap_or(&v);
        let mut readers: HashMap<ValueId, usize> = HashMap::new();
        let mut constants = HashMap::new();
        // A value read by a kernel or as an output: counted, and uploaded once if a constant.
        let mut read = |device: &mut D, v: ValueId| -> Result<(), ExecError> {
            let v = resolve(v);
            *readers.entry(v).or_default() += 1;
            if let (Op::Const(t), false) = (&graph.node(v.node).op, constants.contains_key(&v)) {
                let buf = device.upload(&t.to_le_bytes()).map_err(ExecError::Device)?;
                constants.insert(v, Arc::new(buf));
            }
            Ok(())
        };
        let mut weights = Vec::new();
        for k in &lowered.kernels {
            let mut w = Vec::new();
            for a in &k.args {
                w.push(match a {
                    Arg::Value(v) => {
                        read(device, *v)?;
                        None
                    }
                    Arg::Weight(t) => {
                        let buf = device.upload(&t.to_le_bytes()).map_err(ExecError::Device)?;
                        Some(Arc::new(buf))
                    }
                    Arg::Fault => None,
                });
            }
            weights.push(w);
        }
        for o in graph.outputs() {
            read(device, o.value)?;
        }
        Ok(Loaded {
            graph,
            lowered,
            constants,
            weights,
            readers,
            source,
        })
    }

    /// The buffer `v` lives in: its own, or a view's source's.
    fn resolve(&self, v: ValueId) -> ValueId {
        *self.source.get(&v).unwrap_or(&v)
    }

    /// The lowered module (what `--format mlir` prints).
    pub fn lowered(&self) -> &Lowered {
        &self.lowered
    }

    /// Runs the graph on `inputs` (in signature order): inputs copied to the device, the
    /// kernels launched in order, the outputs copied back.
    pub fn run(&self, device: &mut D, inputs: &[Tensor]) -> Result<Vec<Tensor>, ExecError> {
        let g = &self.graph;
        if inputs.len() != g.inputs().len() {
            return Err(ExecError::Device(format!(
                "the graph takes {} inputs, given {}",
                g.inputs().len(),
                inputs.len()
            )));
        }
        // This call's buffers (constants are looked up in `self.constants`, not copied here).
        let mut live: HashMap<ValueId, Arc<D::Buf>> = HashMap::new();
        let mut left = self.readers.clone();
        for (index, (i, t)) in g.inputs().iter().zip(inputs).enumerate() {
            let bad = |message: String| ExecError::Input {
                index,
                name: i.name.clone(),
                message,
            };
            if t.dtype() != i.ty.dtype || i.ty.shape.as_known().as_deref() != Some(t.shape()) {
                return Err(bad(format!(
                    "expected {}, given {}{:?}",
                    i.ty,
                    t.dtype(),
                    t.shape()
                )));
            }
            let buf = device.upload(&t.to_le_bytes()).map_err(bad)?;
            live.insert(ValueId::first(i.node), Arc::new(buf));
        }
        for (k, w) in self.lowered.kernels.iter().zip(&self.weights) {
            let node_err = |message: String| ExecError::Node {
                node: g.display_name(k.node),
                op: g.node(k.node).op.mnemonic().to_string(),
                message,
            };
            let mut held: Vec<Arc<D::Buf>> = Vec::new();
            let mut fault = None;
            for (a, w) in k.args.iter().zip(w) {
                match (a, w) {
                    (Arg::Value(v), _) => {
                        let v = self.resolve(*v);
                        let buf =
                            (live.get(&v).or_else(|| self.constants.get(&v))).ok_or_else(|| {
                                node_err(format!("no buffer for its input {v:?} (not computed)"))
                            })?;
                        held.push(buf.clone());
                    }
                    (Arg::Weight(_), Some(buf)) => held.push(buf.clone()),
                    (Arg::Fault, _) => {
                        let buf = Arc::new(device.alloc_zeroed(4).map_err(node_err)?);
                        fault = Some(buf.clone());
                        held.push(buf);
                    }
                    (Arg::Weight(_), None) => unreachable!("weights are uploaded at load"),
                }
            }
            let mut outs = Vec::new();
            for (j, ty) in k.outputs.iter().enumerate() {
                let len = byte_len(ty).map_err(node_err)?;
                let buf = Arc::new(device.alloc_output(len.max(1)).map_err(node_err)?);
                outs.push((
                    ValueId {
                        node: k.node,
                        output: j as u32,
                    },
                    buf.clone(),
                ));
                held.push(buf);
            }
            let refs: Vec<&D::Buf> = held.iter().map(|b| b.as_ref()).collect();
            // A launch (on a GPU it returns before the kernel ends; on the host it runs it).
            let _span = tracing::debug_span!(
                "launch",
                symbol = %k.symbol,
                node = %g.display_name(k.node),
                elements = k.elements
            )
            .entered();
            device.launch(k, &refs).map_err(node_err)?;
            if let Some(f) = fault {
                let flag = device.download(&f, 4).map_err(node_err)?;
                if flag.iter().any(|&b| b != 0) {
                    return Err(node_err(
                        "an index read from the data is out of range".into(),
                    ));
                }
            }
            drop(held);
            for (v, buf) in outs {
                live.insert(v, buf);
            }
            // Release what no later kernel (or output) reads.
            for a in &k.args {
                if let Arg::Value(v) = a {
                    let v = self.resolve(*v);
                    if let Some(n) = left.get_mut(&v) {
                        *n -= 1;
                        if *n == 0 {
                            if let Some(buf) = live.remove(&v).and_then(|b| Arc::try_unwrap(b).ok())
                            {
                                device.release(buf);
                            }
                        }
                    }
                }
            }
        }
        let mut results = Vec::new();
        for o in g.outputs() {
            let v = self.resolve(o.value);
            let ty = g.value_type(o.value);
            let buf = (live.get(&v).or_else(|| self.constants.get(&v))).ok_or_else(|| {
                ExecError::Device(format!("output `{}` was not computed", o.name))
            })?;
            let len = byte_len(ty).map_err(ExecError::Device)?;
            let bytes = device.download(buf, len).map_err(ExecError::Device)?;
            let dims = ty.shape.as_known().expect("checked by byte_len");
            let t = Tensor::from_le_bytes(ty.dtype, &dims, &bytes).map_err(ExecError::Device)?;
            results.push(t);
        }
        for buf in live.into_values() {
            if let Ok(buf) = Arc::try_unwrap(buf) {
                device.release(buf);
            }
        }
        Ok(results)
    }
}
