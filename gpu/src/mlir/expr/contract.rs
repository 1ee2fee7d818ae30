//! Contractions and windows as loops: matmul, batched matmul and einsum sum products over
//! their contracted axes; convolutions and pools fold over the window's taps (and input
//! channels), skipping taps in the padding.

use super::Ctx;
use crate::mlir::emit::Regions;
use crate::mlir::kernel::dims;
use crate::mlir::scalar::{self, Compute, Scalar};
use lathe_ir::ops::conv::WindowGeometry;
use lathe_ir::ops::{BinaryOp, ConvAttrs, DataFormat, PoolAttrs};
use lathe_ir::{DType, Op, TensorType, ValueId};

/// Where an operand's axis takes its coordinate: an output axis or a summed one.
#[derive(Clone, Copy, Debug)]
enum Ax {
    Out(usize),
    Sum(usize),
}

impl Ctx<'_> {
    pub(super) fn contraction(
        &mut self,
        op: &Op,
        inputs: &[ValueId],
        ty: &TensorType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        let r = coords.len();
        match op {
            Op::MatMul {
                transpose_a,
                transpose_b,
            } => {
                let ad = dims(self.g.value_type(inputs[0]))?;
                let a = if *transpose_a {
                    vec![Ax::Sum(0), Ax::Out(0)]
                } else {
                    vec![Ax::Out(0), Ax::Sum(0)]
                };
                let b = if *transpose_b {
                    vec![Ax::Out(1), Ax::Sum(0)]
                } else {
                    vec![Ax::Sum(0), Ax::Out(1)]
                };
                let k = ad[if *transpose_a { 0 } else { 1 }];
                self.sum_of_products(&[(inputs[0], a), (inputs[1], b)], &[k], ty.dtype, coords)
            }
            Op::BatchMatMul { adj_x, adj_y } => {
                let xd = dims(self.g.value_type(inputs[0]))?;
                let yd = dims(self.g.value_type(inputs[1]))?;
                let batch = |n: usize| (0..n - 2).map(|k| Ax::Out(k + r - n)).collect::<Vec<_>>();
                let mut x = batch(xd.len());
                x.extend(if *adj_x {
                    [Ax::Sum(0), Ax::Out(r - 2)]
                } else {
                    [Ax::Out(r - 2), Ax::Sum(0)]
                });
                let mut y = batch(yd.len());
                y.extend(if *adj_y {
                    [Ax::Out(r - 1), Ax::Sum(0)]
                } else {
                    [Ax::Sum(0), Ax::Out(r - 1)]
                });
                let k = xd[xd.len() - if *adj_x { 2 } else { 1 }];
                self.sum_of_products(&[(inputs[0], x), (inputs[1], y)], &[k], ty.dtype, coords)
            }
            Op::Einsum { equation } => {
                let eq = lathe_ir::ops::linalg::parse_equation(equation)?;
                let mut summed: Vec<char> = Vec::new();
                let mut sizes = Vec::new();
                for (term, v) in eq.inputs.iter().zip(inputs) {
                    let d = dims(self.g.value_type(*v))?;
                    for (l, n) in term.iter().zip(d) {
                        if !eq.output.contains(l) && !summed.contains(l) {
                            summed.push(*l);
                            sizes.push(n);
                        }
                    }
                }
                let operands: Vec<(ValueId, Vec<Ax>)> = (eq.inputs.iter().zip(inputs))
                    .map(|(term, v)| {
                        let axes = (term.iter())
                            .map(|l| match eq.output.iter().position(|o| o == l) {
                                Some(k) => Ax::Out(k),
                                None => Ax::Sum(summed.iter().position(|s| s == l).unwrap()),
                            })
                            .collect();
                        (*v, axes)
                    })
                    .collect();
                self.sum_of_products(&operands, &sizes, ty.dtype, coords)
            }
            Op::Conv2D(a) => self.conv(a, inputs, ty.dtype, coords, false),
            Op::DepthwiseConv2D(a) => self.conv(a, inputs, ty.dtype, coords, true),
            Op::MaxPool(p) => self.pool(p, inputs[0], ty.dtype, coords, true),
            Op::AvgPool(p) => self.pool(p, inputs[0], ty.dtype, coords, false),
            op => Err(format!("op {} is not lowered to MLIR yet", op.mnemonic())),
        }
    }

    /// The sum over a grid of `sizes` of the product of the operands, each read at the
    /// output's coordinates and the grid point as its axes say.
    fn sum_of_products(
        &mut self,
        operands: &[(ValueId, Vec<Ax>)],
        sizes: &[usize],
        d: DType,
        coords: &[String],
    ) -> Result<Scalar, String> {
        let compute = Compute::of(d)?;
        let zero = scalar::zero(&mut self.e, compute);
        let (mul, add) = (Op::Binary(BinaryOp::Mul), Op::Binary(BinaryOp::Add));
        let acc = self.fold(
            sizes,
            &[(zero.name, compute.name())],
            &mut |c, point, acc| {
                let mut product: Option<Scalar> = None;
                for (v, axes) in operands {
                    let at: Vec<String> = (axes.iter())
                        .map(|a| match a {
                            Ax::Out(k) => coords[*k].clone(),
                            Ax::Sum(k) => point[*k].clone(),
                        })
                        .collect();
                    let x = c.at(*v, &at)?;
                    product = Some(match product {
                        None => x,
                        Some(p) => scalar::op(&mut c.e, &mul, &[p, x], &[d, d], d)?,
                    });
                }
                let a = Scalar {
                    name: acc[0].clone(),
                    ty: compute,
                };
                let p = product.ok_or("a contraction without operands")?;
                Ok(vec![scalar::op(&mut c.e, &add, &[a, p], &[d, d], d)?.name])
            },
        )?;
        Ok(Scalar {
            name: acc[0].clone(),
            ty: compute,
        })
    }

    /// `conv2d` (HWIO filter, grouped when the filter has fewer input channels) or
    /// `depthwise_conv2d` (`[kh, kw, in, multiplier]`) at `coords`.
    fn conv(
        &mut self,
        a: &ConvAttrs,
        inputs: &[ValueId],
        d: DType,
        coords: &[String],
        depthwise: bool,
    ) -> Result<Scalar, String> {
        let (x, f) = (inputs[0], inputs[1]);
        let xd = dims(self.g.value_type(x))?;
        let fd = dims(self.g.value_type(f))?;
        let (axes, nhwc) = layout(a.format, &xd)?;
        let win = WindowGeometry::new(&nhwc, [fd[0], fd[1]], a.strides, a.dilations, &a.padding)?;
        let [n, oy, ox, co] = axes.map(|k| coords[k].clone());
        let compute = Compute::of(d)?;
        let t = compute.name();
        let (mul, add) = (Op::Binary(BinaryOp::Mul), Op::Binary(BinaryOp::Add));
        // The input channels a tap reads, and the filter's coordinates for input channel `ci`.
        let (channels, first) = if depthwise {
            let m = self.e.index(fd[3] as i64);
            let ci = self.e.assign(format!("arith.divui {co}, {m} : index"));
            (
                1,
                Some((ci, self.e.assign(format!("arith.remui {co}, {m} : index")))),
            )
        } else {
            let groups = win.c / fd[2].max(1);
            if groups == 0 || win.c % fd[2].max(1) != 0 || fd[3] % groups.max(1) != 0 {
                return Err(format!(
                    "a filter of {:?} does not fit an input of {} channels",
                    fd, win.c
                ));
            }
            let per = self.e.index((fd[3] / groups) as i64);
            let g = self.e.assign(format!("arith.divui {co}, {per} : index"));
            let width = self.e.index(fd[2] as i64);
            let base = self.e.assign(format!("arith.muli {g}, {width} : index"));
            (fd[2], Some((base, co.clone())))
        };
        let (base, fcol) = first.expect("set");
        let zero = scalar::zero(&mut self.e, compute);
        let acc = self.fold(
            &[win.kh, win.kw],
            &[(zero.name, t.clone())],
            &mut |c, tap, acc| {
                let (iy, ix, inside) = c.tap(&win, &oy, &ox, &tap[0], &tap[1]);
                let carried = acc[0].clone();
                let r = c.if_else(
                    &inside,
                    std::slice::from_ref(&t),
                    |c| {
                        let r = c.fold(
                            &[channels],
                            &[(carried.clone(), t.clone())],
                            &mut |c, ch, acc| {
                                let (ci, fi) = if depthwise {
                                    (base.clone(), base.clone())
                                } else {
                                    let ci =
                                        c.e.assign(format!("arith.addi {base}, {} : index", ch[0]));
                                    (ci, ch[0].clone())
                                };
                                let mut at = vec![String::new(); 4];
                                for (k, v) in axes.iter().zip([&n, &iy, &ix, &ci]) {
                                    at[*k] = v.clone();
                                }
                                let xv = c.at(x, &at)?;
                                let fv =
                                    c.at(f, &[tap[0].clone(), tap[1].clone(), fi, fcol.clone()])?;
                                let p = scalar::op(&mut c.e, &mul, &[xv, fv], &[d, d], d)?;
                                let a = Scalar {
                                    name: acc[0].clone(),
                                    ty: compute,
                                };
                                Ok(vec![scalar::op(&mut c.e, &add, &[a, p], &[d, d], d)?.name])
                            },
                        )?;
                        Ok(r)
                    },
                    |_| Ok(vec![carried.clone()]),
                )?;
                Ok(r)
            },
        )?;
        Ok(Scalar {
            name: acc[0].clone(),
            ty: compute,
        })
    }

    /// The input row and column of tap `(ky, kx)` of output `(oy, ox)`, and whether it is
    /// inside the input (not padding).
    fn tap(
        &mut self,
        win: &WindowGeometry,
        oy: &str,
        ox: &str,
        ky: &str,
        kx: &str,
    ) -> (String, String, String) {
        let axis = |c: &mut Ctx, o: &str, k: &str, s: usize, dl: usize, pad: usize, n: usize| {
            let s = c.e.index(s as i64);
            let dl = c.e.index(dl as i64);
            let a = c.e.assign(format!("arith.muli {o}, {s} : index"));
            let b = c.e.assign(format!("arith.muli {k}, {dl} : index"));
            let sum = c.e.assign(format!("arith.addi {a}, {b} : index"));
            let i = c.offset(&sum, -(pad as i64));
            let n = c.e.index(n as i64);
            let ok = c.e.assign(format!("arith.cmpi ult, {i}, {n} : index"));
            (i, ok)
        };
        let (iy, oky) = axis(self, oy, ky, win.sh, win.dh, win.pt, win.h);
        let (ix, okx) = axis(self, ox, kx, win.sw, win.dw, win.pl, win.w);
        let inside = self.e.assign(format!("arith.andi {oky}, {okx} : i1"));
        (iy, ix, inside)
    }

    /// Max or average pooling at `coords`: padding takes no part (the average divides by the
    /// taps inside the input); the max keeps the first tap unless a later one is greater, as
    /// the interpreter does.
    fn pool(
        &mut self,
        p: &PoolAttrs,
        x: ValueId,
        d: DType,
        coords: &[String],
        max: bool,
    ) -> Result<Scalar, String> {
        let xd = dims(self.g.value_type(x))?;
        let (axes, nhwc) = layout(p.format, &xd)?;
        let win = WindowGeometry::new(&nhwc, p.ksize, p.strides, [1, 1], &p.padding)?;
        let [n, oy, ox, ch] = axes.map(|k| coords[k].clone());
        let compute = Compute::of(d)?;
        let t = compute.name();
        let zero = scalar::zero(&mut self.e, compute);
        let first = self.e.assign("arith.constant true");
        let add = Op::Binary(BinaryOp::Add);
        let r = self.fold(
            &[win.kh, win.kw],
            &[(zero.name, t.clone()), (first, "i1".into())],
            &mut |c, tap, acc| {
                let (iy, ix, inside) = c.tap(&win, &oy, &ox, &tap[0], &tap[1]);
                let carried = acc.to_vec();
                c.if_else(
                    &inside,
                    &[t.clone(), "i1".into()],
                    |c| {
                        let mut at = vec![String::new(); 4];
                        for (k, v) in axes.iter().zip([&n, &iy, &ix, &ch]) {
                            at[*k] = v.clone();
                        }
                        let v = c.at(x, &at)?;
                        let a = Scalar {
                            name: carried[0].clone(),
                            ty: compute,
                        };
                        let next = if max {
                            let gt = match compute {
                                Compute::Int { signed: true, .. } => "arith.cmpi sgt",
                                Compute::Int { .. } => "arith.cmpi ugt",
                                _ => "arith.cmpf ogt",
                            };
                            let greater = c.e.assign(format!("{gt}, {}, {} : {t}", v.name, a.name));
                            let take =
                                c.e.assign(format!("arith.ori {greater}, {} : i1", carried[1]));
                            c.e.assign(format!("arith.select {take}, {}, {} : {t}", v.name, a.name))
                        } else {
                            scalar::op(&mut c.e, &add, &[a, v], &[d, d], d)?.name
                        };
                        let no = c.e.assign("arith.constant false");
                        Ok(vec![next, no])
                    },
                    |_| Ok(carried.clone()),
                )
            },
        )?;
        if max {
            return Ok(Scalar {
                name: r[0].clone(),
                ty: compute,
            });
        }
        // The taps inside the input, counted as the interpreter counts them.
        let count = self.taps_inside(&win, &oy, &ox, compute)?;
        let name = self.e.assign(format!("arith.divf {}, {count} : {t}", r[0]));
        Ok(Scalar { name, ty: compute })
    }

    /// How many taps of the window at `(oy, ox)` are inside the input, as a float of `ty`:
    /// the product of the rows and columns inside.
    fn taps_inside(
        &mut self,
        win: &WindowGeometry,
        oy: &str,
        ox: &str,
        ty: Compute,
    ) -> Result<String, String> {
        let t = ty.name();
        let count = |c: &mut Ctx, o: &str, k: usize, s: usize, pad: usize, n: usize| {
            // Taps ky with 0 <= o*s + ky - pad < n: from max(0, pad - o*s) to
            // min(k, n + pad - o*s).
            let s = c.e.index(s as i64);
            let start = c.e.assign(format!("arith.muli {o}, {s} : index"));
            let lo = c.offset(&start, -(pad as i64));
            let zero = c.e.index(0);
            let first = c.e.assign(format!("arith.subi {zero}, {lo} : index"));
            let first = c.e.assign(format!("arith.maxsi {first}, {zero} : index"));
            let n = c.e.index(n as i64);
            let last = c.e.assign(format!("arith.subi {n}, {lo} : index"));
            let k = c.e.index(k as i64);
            let last = c.e.assign(format!("arith.minsi {last}, {k} : index"));
            let len = c.e.assign(format!("arith.subi {last}, {first} : index"));
            let i = c.e.assign(format!("arith.index_cast {len} : index to i64"));
            c.e.assign(format!("arith.sitofp {i} : i64 to {t}"))
        };
        let rows = count(self, oy, win.kh, win.sh, win.pt, win.h);
        let cols = count(self, ox, win.kw, win.sw, win.pl, win.w);
        Ok(self.e.assign(format!("arith.mulf {rows}, {cols} : {t}")))
    }
}

/// The positions of the batch, row, column and channel axes for `format`, and the input's
/// dims in NHWC order.
fn layout(format: DataFormat, xd: &[usize]) -> Result<([usize; 4], Vec<usize>), String> {
    if xd.len() != 4 {
        return Err(format!("a 2-D window needs a 4-D input, got {xd:?}"));
    }
    let axes = match format {
        DataFormat::Nhwc => [0, 1, 2, 3],
        DataFormat::Nchw => [0, 2, 3, 1],
    };
    Ok((axes, axes.iter().map(|&k| xd[k]).collect()))
}
