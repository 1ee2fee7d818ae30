//! Reductions as loops: each output element folds its input over the reduced axes
//! (`scf.for` carrying the accumulator); softmax folds its row twice (the max, then the sum of
//! exponentials), once per row in the scope the row's coordinates allow.

use super::Ctx;
use crate::mlir::kernel::dims;
use crate::mlir::scalar::{self, Compute, Scalar};
use lathe_ir::ops::{BinaryOp, ReduceKind};
use lathe_ir::{DType, Op, TensorType, ValueId};

impl Ctx<'_> {
    pub(super) fn reduction(
        &mut self,
        op: &Op,
        inputs: &[ValueId],
        ty: &TensorType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        match op {
            Op::Reduce { kind, keep_dims } => self.reduce(*kind, *keep_dims, inputs, ty, coords),
            Op::Softmax | Op::LogSoftmax => {
                self.softmax(*op == Op::LogSoftmax, inputs[0], ty.dtype, coords)
            }
            op => Err(format!("op {} is not lowered to MLIR yet", op.mnemonic())),
        }
    }

    fn reduce(
        &mut self,
        kind: ReduceKind,
        keep_dims: bool,
        inputs: &[ValueId],
        ty: &TensorType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        let x = inputs[0];
        let xd = dims(self.g.value_type(x))?;
        let rank = xd.len() as i64;
        let mut axes = Vec::new();
        for a in self.ints(inputs[1], "axes")? {
            let r = if a < 0 { a + rank } else { a };
            let r = usize::try_from(r)
                .ok()
                .filter(|&r| r < xd.len())
                .ok_or_else(|| format!("axis {a} is out of range for rank {rank}"))?;
            if !axes.contains(&r) {
                axes.push(r);
            }
        }
        axes.sort_unstable();
        let d = ty.dtype;
        let compute = Compute::of(d)?;
        let count: usize = axes.iter().map(|&a| xd[a]).product();
        if count == 0 && matches!(compute, Compute::Int { .. }) && kind != ReduceKind::Sum {
            return Err("an integer reduction over an empty axis is not lowered to MLIR".into());
        }
        // The output's coordinates of the kept axes.
        let mut kept = coords.iter();
        let mut template = Vec::new();
        for k in 0..xd.len() {
            if axes.contains(&k) {
                if keep_dims {
                    kept.next();
                }
                template.push(None);
            } else {
                template.push(Some(kept.next().ok_or("the output's rank")?.clone()));
            }
        }
        let init = match kind {
            ReduceKind::Sum | ReduceKind::Mean => scalar::zero(&mut self.e, compute),
            ReduceKind::Prod => scalar::literal(&mut self.e, 1.0, compute),
            ReduceKind::Max => scalar::extreme(&mut self.e, compute, false),
            ReduceKind::Min => scalar::extreme(&mut self.e, compute, true),
        };
        let combine = Op::Binary(match kind {
            ReduceKind::Sum | ReduceKind::Mean => BinaryOp::Add,
            ReduceKind::Prod => BinaryOp::Mul,
            ReduceKind::Max => BinaryOp::Maximum,
            ReduceKind::Min => BinaryOp::Minimum,
        });
        let sizes: Vec<usize> = axes.iter().map(|&a| xd[a]).collect();
        let acc = self.fold(
            &sizes,
            &[(init.name, compute.name())],
            &mut |c, point, acc| {
                let mut at = Vec::new();
                let mut p = point.iter();
                for t in &template {
                    at.push(match t {
                        Some(c) => c.clone(),
                        None => p.next().expect("a loop per reduced axis").clone(),
                    });
                }
                let v = c.at(x, &at)?;
                let a = Scalar {
                    name: acc[0].clone(),
                    ty: compute,
                };
                Ok(vec![
                    scalar::op(&mut c.e, &combine, &[a, v], &[d, d], d)?.name,
                ])
            },
        )?;
        let sum = Scalar {
            name: acc[0].clone(),
            ty: compute,
        };
        if kind != ReduceKind::Mean {
            return Ok(sum);
        }
        let n = scalar::literal(&mut self.e, count as f64, compute);
        let t = compute.name();
        let name = match compute {
            Compute::Int { signed: true, .. } => "arith.divsi",
            Compute::Int { .. } => "arith.divui",
            _ => "arith.divf",
        };
        let name = self
            .e
            .assign(format!("{name} {}, {} : {t}", sum.name, n.name));
        Ok(Scalar { name, ty: compute })
    }

    /// Softmax (or log-softmax) over the last axis of `x` at `coords`: the row's max and sum
    /// of exponentials are computed once per row.
    fn softmax(
        &mut self,
        log: bool,
        x: ValueId,
        d: DType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        let compute = Compute::of(d)?;
        let t = compute.name();
        let xd = dims(self.g.value_type(x))?;
        let last = *xd.last().ok_or("softmax of a scalar")?;
        let row = coords[..coords.len() - 1].to_vec();
        let key = format!("softmax.{}.{}@{}", x.node.index(), x.output, row.join(","));
        let stats = self.memo(key, &row, |c| {
            let lowest = scalar::extreme(&mut c.e, compute, false);
            let max = Op::Binary(BinaryOp::Maximum);
            let m = c.fold(&[last], &[(lowest.name, t.clone())], &mut |c, j, acc| {
                let mut at = row.clone();
                at.push(j[0].clone());
                let v = c.at(x, &at)?;
                let a = Scalar {
                    name: acc[0].clone(),
                    ty: compute,
                };
                Ok(vec![scalar::op(&mut c.e, &max, &[a, v], &[d, d], d)?.name])
            })?;
            let m = m[0].clone();
            let zero = scalar::zero(&mut c.e, compute);
            let s = c.fold(&[last], &[(zero.name, t.clone())], &mut |c, j, acc| {
                let mut at = row.clone();
                at.push(j[0].clone());
                let v = c.at(x, &at)?;
                let diff = c.e.assign(format!("arith.subf {}, {m} : {t}", v.name));
                let exp = c.e.assign(format!("math.exp {diff} : {t}"));
                Ok(vec![c
                    .e
                    .assign(format!("arith.addf {}, {exp} : {t}", acc[0]))])
            })?;
            Ok(vec![m, s[0].clone()])
        })?;
        let (m, s) = (&stats[0], &stats[1]);
        let v = self.at(x, coords)?;
        let diff = self.e.assign(format!("arith.subf {}, {m} : {t}", v.name));
        let name = if log {
            let ls = self.e.assign(format!("math.log {s} : {t}"));
            self.e.assign(format!("arith.subf {diff}, {ls} : {t}"))
        } else {
            let exp = self.e.assign(format!("math.exp {diff} : {t}"));
            self.e.assign(format!("arith.divf {exp}, {s} : {t}"))
        };
        Ok(Scalar { name, ty: compute })
    }
}
