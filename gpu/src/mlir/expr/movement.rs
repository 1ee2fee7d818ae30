//! Data movement as index expressions: the output element's coordinates moved to the input's
//! (transpose, slices, pad, concat, pack, gather, tile) or a value made from them (fill,
//! range). A gather's index out of range sets the kernel's fault flag and reads element 0.

use super::{Arg, Ctx};
use crate::mlir::emit::Regions;
use crate::mlir::kernel::dims;
use crate::mlir::scalar::{Compute, Scalar};
use lathe_ir::ops::PadMode;
use lathe_ir::{Op, TensorType, ValueId};

impl Ctx<'_> {
    pub(super) fn movement(
        &mut self,
        op: &Op,
        inputs: &[ValueId],
        ty: &TensorType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        let out = dims(ty)?;
        match op {
            Op::Transpose => {
                let perm = self.ints(inputs[1], "permutation")?;
                let mut at = vec![String::new(); coords.len()];
                for (j, &p) in perm.iter().enumerate() {
                    let p = usize::try_from(p).map_err(|_| "a negative permutation entry")?;
                    *at.get_mut(p).ok_or("a permutation entry out of range")? = coords[j].clone();
                }
                self.at(inputs[0], &at)
            }
            Op::Slice => {
                let begin = self.ints(inputs[1], "begin")?;
                let at = (coords.iter().zip(begin))
                    .map(|(c, b)| self.offset(c, b))
                    .collect::<Vec<_>>();
                self.at(inputs[0], &at)
            }
            Op::StridedSlice(attrs) => {
                let x = self.g.value_type(inputs[0]).clone();
                let bounds: Vec<_> = (inputs[1..4].iter())
                    .map(|v| self.konst(*v).cloned())
                    .collect::<Option<Vec<_>>>()
                    .ok_or("its begin, end and strides are not constants: only constant bounds are lowered to MLIR")?;
                let sel = lathe_ir::ops::shape::strided_slice_selection(
                    attrs,
                    &x,
                    [&bounds[0], &bounds[1], &bounds[2]],
                )?;
                let dense: Vec<usize> = sel.iter().map(|s| s.2).collect();
                let dc = self.relinear(coords, &out, &dense);
                let mut at = Vec::new();
                for (c, (start, step, _)) in dc.iter().zip(sel) {
                    let scaled = if step == 1 {
                        c.clone()
                    } else {
                        let s = self.e.index(step);
                        self.e.assign(format!("arith.muli {c}, {s} : index"))
                    };
                    at.push(self.offset(&scaled, start));
                }
                self.at(inputs[0], &at)
            }
            Op::Pad { mode } => self.pad(*mode, inputs, ty, coords),
            Op::Concat => {
                let (axis_v, values) = inputs.split_last().ok_or("concat without inputs")?;
                let axis = self.axis(*axis_v, out.len())?;
                let mut pieces = Vec::new();
                let mut offset = 0;
                for v in values {
                    let n = dims(self.g.value_type(*v))?[axis];
                    pieces.push((*v, offset, n));
                    offset += n;
                }
                let pieces: Vec<_> = pieces.into_iter().filter(|p| p.2 > 0).collect();
                self.concat(&pieces, axis, ty, coords)
            }
            Op::Pack { axis } => {
                let rank = out.len() as i64;
                let axis = if *axis < 0 { axis + rank } else { *axis };
                let axis = usize::try_from(axis).map_err(|_| "pack's axis is out of range")?;
                let mut rest = coords.to_vec();
                rest.remove(axis);
                let pieces: Vec<_> = inputs.iter().enumerate().map(|(k, v)| (*v, k, 1)).collect();
                self.choose(&pieces, &coords[axis], ty, &mut |c, v, _| c.at(v, &rest))
            }
            Op::Gather { batch_dims } => self.gather(*batch_dims, inputs, coords),
            Op::Fill => self.at(inputs[1], &[]),
            Op::Tile => {
                let x = dims(self.g.value_type(inputs[0]))?;
                let at = (coords.iter().zip(&x).zip(&out))
                    .map(|((c, &n), &m)| {
                        if n == m {
                            c.clone()
                        } else {
                            let n = self.e.index(n as i64);
                            self.e.assign(format!("arith.remui {c}, {n} : index"))
                        }
                    })
                    .collect::<Vec<_>>();
                self.at(inputs[0], &at)
            }
            Op::Range => {
                let start = self.at(inputs[0], &[])?;
                let delta = self.at(inputs[2], &[])?;
                let i = self.of_index(&coords[0], start.ty);
                let t = start.ty.name();
                let (mul, add) = match start.ty {
                    Compute::Int { .. } => ("arith.muli", "arith.addi"),
                    _ => ("arith.mulf", "arith.addf"),
                };
                let step = self.e.assign(format!("{mul} {i}, {} : {t}", delta.name));
                let name = self.e.assign(format!("{add} {}, {step} : {t}", start.name));
                Ok(Scalar { name, ty: start.ty })
            }
            op => Err(format!("op {} is not lowered to MLIR yet", op.mnemonic())),
        }
    }

    /// `c + by` as an index (`by` may be negative: index arithmetic wraps).
    pub(super) fn offset(&mut self, c: &str, by: i64) -> String {
        if by == 0 {
            return c.to_string();
        }
        let b = self.e.index(by);
        self.e.assign(format!("arith.addi {c}, {b} : index"))
    }

    /// The axis constant operand `v` names, in a rank-`rank` tensor (negative counts from the
    /// end).
    fn axis(&self, v: ValueId, rank: usize) -> Result<usize, String> {
        let a = *self.ints(v, "axis")?.first().ok_or("an empty axis")?;
        let r = if a < 0 { a + rank as i64 } else { a };
        usize::try_from(r)
            .ok()
            .filter(|&r| r < rank.max(1))
            .ok_or_else(|| format!("axis {a} is out of range for rank {rank}"))
    }

    /// Concat: the piece `(value, offset, size)` holding coordinate `coords[axis]`, read there.
    fn concat(
        &mut self,
        pieces: &[(ValueId, usize, usize)],
        axis: usize,
        ty: &TensorType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        let c = coords[axis].clone();
        self.choose(pieces, &c, ty, &mut |ctx, v, offset| {
            let mut at = coords.to_vec();
            at[axis] = ctx.offset(&c, -(offset as i64));
            ctx.at(v, &at)
        })
    }

    /// The value of the piece `(value, offset, size)` that index `c` falls in, read by `read`
    /// (given the value and its offset): a chain of `scf.if` on `c < offset + size`.
    fn choose(
        &mut self,
        pieces: &[(ValueId, usize, usize)],
        c: &str,
        ty: &TensorType,
        read: &mut dyn FnMut(&mut Ctx, ValueId, usize) -> Result<Scalar, String>,
    ) -> Result<Scalar, String> {
        let compute = Compute::of(ty.dtype)?;
        let ((v, offset, size), rest) = pieces.split_first().ok_or("nothing to choose from")?;
        if rest.is_empty() {
            return read(self, *v, *offset);
        }
        let end = self.e.index((offset + size) as i64);
        let inside = self.e.assign(format!("arith.cmpi ult, {c}, {end} : index"));
        // Both branches read through `read`, one after the other.
        let read = std::cell::RefCell::new(read);
        let names = self.if_else(
            &inside,
            &[compute.name()],
            |ctx| Ok(vec![(read.borrow_mut())(ctx, *v, *offset)?.name]),
            |ctx| Ok(vec![ctx.choose(rest, c, ty, *read.borrow_mut())?.name]),
        )?;
        Ok(Scalar {
            name: names[0].clone(),
            ty: compute,
        })
    }

    fn pad(
        &mut self,
        mode: PadMode,
        inputs: &[ValueId],
        ty: &TensorType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        let x = dims(self.g.value_type(inputs[0]))?;
        let pads = self.ints(inputs[1], "paddings")?;
        let mut at = Vec::new();
        let mut inside: Option<String> = None;
        for (k, c) in coords.iter().enumerate() {
            let lo = *pads.get(2 * k).ok_or("paddings shorter than the rank")?;
            let s = self.offset(c, -lo);
            let n = x[k] as i64;
            let ni = self.e.index(n);
            let zero = self.e.index(0);
            let moved = match mode {
                PadMode::Constant => {
                    let ok = self.e.assign(format!("arith.cmpi ult, {s}, {ni} : index"));
                    inside = Some(match inside {
                        None => ok,
                        Some(i) => self.e.assign(format!("arith.andi {i}, {ok} : i1")),
                    });
                    s
                }
                PadMode::Edge => {
                    let last = self.e.index(n - 1);
                    let up = self.e.assign(format!("arith.maxsi {s}, {zero} : index"));
                    self.e.assign(format!("arith.minsi {up}, {last} : index"))
                }
                PadMode::Reflect | PadMode::Symmetric => {
                    // Below 0: -s (reflect) or -s - 1; from n on: 2n - 2 - s or 2n - 1 - s.
                    let shift = i64::from(mode == PadMode::Symmetric);
                    let neg = self.e.assign(format!("arith.subi {zero}, {s} : index"));
                    let low = self.offset(&neg, -shift);
                    let top = self.e.index(2 * n - 2 + shift);
                    let high = self.e.assign(format!("arith.subi {top}, {s} : index"));
                    let below = self
                        .e
                        .assign(format!("arith.cmpi slt, {s}, {zero} : index"));
                    let above = self.e.assign(format!("arith.cmpi sge, {s}, {ni} : index"));
                    let a = self
                        .e
                        .assign(format!("arith.select {above}, {high}, {s} : index"));
                    self.e
                        .assign(format!("arith.select {below}, {low}, {a} : index"))
                }
                PadMode::Wrap => {
                    let r = self.e.assign(format!("arith.remsi {s}, {ni} : index"));
                    let up = self.e.assign(format!("arith.addi {r}, {ni} : index"));
                    self.e.assign(format!("arith.remsi {up}, {ni} : index"))
                }
            };
            at.push(moved);
        }
        let Some(inside) = inside else {
            return self.at(inputs[0], &at);
        };
        let compute = Compute::of(ty.dtype)?;
        let names = self.if_else(
            &inside,
            &[compute.name()],
            |c| Ok(vec![c.at(inputs[0], &at)?.name]),
            |c| {
                let fill = match inputs.get(2) {
                    Some(v) => c.at(*v, &[])?,
                    None => crate::mlir::scalar::zero(&mut c.e, compute),
                };
                Ok(vec![fill.name])
            },
        )?;
        Ok(Scalar {
            name: names[0].clone(),
            ty: compute,
        })
    }

    fn gather(
        &mut self,
        batch_dims: i64,
        inputs: &[ValueId],
        coords: &[String],
    ) -> Result<Scalar, String> {
        let params = dims(self.g.value_type(inputs[0]))?;
        let indices = dims(self.g.value_type(inputs[1]))?;
        let axis = self.axis(inputs[2], params.len())?;
        let ri = indices.len() as i64;
        let b = usize::try_from(if batch_dims < 0 {
            batch_dims + ri
        } else {
            batch_dims
        })
        .map_err(|_| format!("batch_dims {batch_dims} is out of range"))?;
        let width = indices.len() - b;
        let mut ic: Vec<String> = coords[..b].to_vec();
        ic.extend_from_slice(&coords[axis..axis + width]);
        let raw = self.at(inputs[1], &ic)?;
        let n = params[axis] as i64;
        let idx = self.index_of(&raw, n)?;
        let mut pc: Vec<String> = coords[..axis].to_vec();
        pc.push(idx);
        pc.extend_from_slice(&coords[axis + width..]);
        self.at(inputs[0], &pc)
    }

    /// An index read from the data (`raw`, an integer) into an axis of `n`: negative counts
    /// from the end; out of range sets the fault flag and gives 0.
    fn index_of(&mut self, raw: &Scalar, n: i64) -> Result<String, String> {
        let t = raw.ty.name();
        let i = self
            .e
            .assign(format!("arith.index_cast {} : {t} to index", raw.name));
        let zero = self.e.index(0);
        let ni = self.e.index(n);
        let neg = self
            .e
            .assign(format!("arith.cmpi slt, {i}, {zero} : index"));
        let wrapped = self.e.assign(format!("arith.addi {i}, {ni} : index"));
        let r = self
            .e
            .assign(format!("arith.select {neg}, {wrapped}, {i} : index"));
        let bad = self.e.assign(format!("arith.cmpi uge, {r}, {ni} : index"));
        let fault = self.fault_arg()?;
        self.when(&bad, |c| {
            let one = c.e.assign("arith.constant 1 : i32");
            let zero = c.e.index(0);
            c.e.line(format!(
                "memref.store {one}, %a{fault}[{zero}] : memref<1xi32>"
            ));
            Ok(())
        })?;
        Ok(self
            .e
            .assign(format!("arith.select {bad}, {zero}, {r} : index")))
    }

    /// The fault flag's argument.
    fn fault_arg(&mut self) -> Result<usize, String> {
        if let Some(k) = self.args.iter().position(|a| *a == Arg::Fault) {
            return Ok(k);
        }
        let k = self.args.len();
        self.params.push(format!("%a{k}: memref<1xi32>"));
        self.args.push(Arg::Fault);
        Ok(k)
    }

    /// Index `c` as a value of type `ty`.
    pub(super) fn of_index(&mut self, c: &str, ty: Compute) -> String {
        match ty {
            Compute::Int { bits, .. } => self
                .e
                .assign(format!("arith.index_cast {c} : index to i{bits}")),
            Compute::I1 => self.e.assign(format!("arith.index_cast {c} : index to i1")),
            f => {
                let i = self
                    .e
                    .assign(format!("arith.index_cast {c} : index to i64"));
                self.e
                    .assign(format!("arith.sitofp {i} : i64 to {}", f.name()))
            }
        }
    }
}
