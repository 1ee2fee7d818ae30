//! `dft`: the discrete Fourier transform along one axis (ONNX `DFT`). The last axis of the
//! operand holds a real signal (size 1) or a complex one (size 2, real then imaginary part).
//! Every transform is computed in f64 (a radix-2 FFT when the length is a power of two, the
//! direct sum otherwise, both over one table of twiddle factors) and each result rounded once
//! to the dtype. The CPU kernel runs [`Dft::run`] too, so both backends give the same bits.

use crate::ops::common::{expect_arity, normalize_axis};
use crate::ops::OpResult;
use crate::{Dim, Shape, Tensor, TensorType};
use std::f64::consts::PI;

/// The output type of `dft` on `x`.
pub(super) fn infer_dft(
    x: &[TensorType],
    axis: i64,
    length: usize,
    inverse: bool,
    onesided: bool,
) -> OpResult<TensorType> {
    expect_arity("dft", x, 1)?;
    let x = &x[0];
    let dims = x.shape.dims();
    let (axis, _) = axis_and_parts(dims.len(), axis, dims.last().and_then(Dim::known), x)?;
    let (out_len, c_out) = out_geometry(length, inverse, onesided)?;
    let mut out = dims.to_vec();
    out[axis] = Dim::Known(out_len);
    out[dims.len() - 1] = Dim::Known(c_out);
    Ok(TensorType::new(x.dtype, Shape(out)))
}

pub(super) fn eval_dft(
    x: &Tensor,
    axis: i64,
    length: usize,
    inverse: bool,
    onesided: bool,
) -> OpResult<Tensor> {
    let d = Dft::new(x.shape(), axis, length, inverse, onesided)?;
    let v = x.to_f64_vec();
    let mut out = vec![0.0; d.out_elements()];
    d.run(|i| v[i], |i, y| out[i] = y);
    Ok(Tensor::from_f64(x.dtype(), &d.out_dims(x.shape()), &out))
}

/// The non-negative axis and the size of the last axis (1 or 2), checked.
fn axis_and_parts(
    rank: usize,
    axis: i64,
    last: Option<usize>,
    x: &dyn std::fmt::Display,
) -> OpResult<(usize, usize)> {
    if rank < 2 {
        return Err(format!(
            "dft needs a signal axis and a last axis of 1 or 2 (real or complex), got {x}"
        ));
    }
    let axis = normalize_axis(axis, rank)?;
    if axis == rank - 1 {
        return Err(format!(
            "dft's axis cannot be the last one (it holds the real and imaginary parts), got {x}"
        ));
    }
    match last {
        Some(c @ (1 | 2)) => Ok((axis, c)),
        _ => Err(format!(
            "dft needs a last axis of 1 or 2 (real or complex), got {x}"
        )),
    }
}

/// The output's length along the axis and its last axis, from the attributes.
fn out_geometry(length: usize, inverse: bool, onesided: bool) -> OpResult<(usize, usize)> {
    if length == 0 {
        return Err("dft's length must be at least 1".into());
    }
    Ok(match (inverse, onesided) {
        (false, true) => (length / 2 + 1, 2),
        (true, true) => (length, 1),
        (_, false) => (length, 2),
    })
}

/// One `dft` on a known input shape: the lanes along the axis, how they are read and
/// written, and the transform's twiddle factors (computed once, shared by every run).
#[derive(Clone, Debug, PartialEq)]
pub struct Dft {
    /// Product of the axes before the signal axis.
    pub outer: usize,
    /// The input's length along the axis.
    pub n_in: usize,
    /// Product of the axes between the signal axis and the last one.
    pub inner: usize,
    /// The input's last axis: 1 (real) or 2 (complex).
    pub c_in: usize,
    /// The transform's length: the signal is cut or zero-padded to it.
    pub length: usize,
    /// The output's length along the axis.
    pub out_len: usize,
    /// The output's last axis: 2, or 1 for the real result of a one-sided inverse.
    pub c_out: usize,
    pub inverse: bool,
    pub onesided: bool,
    axis: usize,
    twiddles: Twiddles,
}

impl Dft {
    /// The transform of an input of shape `dims`, or why not.
    pub fn new(
        dims: &[usize],
        axis: i64,
        length: usize,
        inverse: bool,
        onesided: bool,
    ) -> OpResult<Dft> {
        let shape = format!("{dims:?}");
        let (axis, c_in) = axis_and_parts(dims.len(), axis, dims.last().copied(), &shape)?;
        let (out_len, c_out) = out_geometry(length, inverse, onesided)?;
        Ok(Dft {
            outer: dims[..axis].iter().product(),
            n_in: dims[axis],
            inner: dims[axis + 1..dims.len() - 1].iter().product(),
            c_in,
            length,
            out_len,
            c_out,
            inverse,
            onesided,
            axis,
            twiddles: Twiddles::new(length),
        })
    }

    /// The output's shape for an input of shape `dims`.
    pub fn out_dims(&self, dims: &[usize]) -> Vec<usize> {
        let mut out = dims.to_vec();
        out[self.axis] = self.out_len;
        out[dims.len() - 1] = self.c_out;
        out
    }

    /// How many elements the output has.
    pub fn out_elements(&self) -> usize {
        self.outer * self.out_len * self.inner * self.c_out
    }

    /// How many input points a lane uses: the signal cut to the transform's length (to the
    /// `length / 2 + 1` frequencies a one-sided inverse reads).
    fn points(&self) -> usize {
        let want = if self.inverse && self.onesided {
            self.length / 2 + 1
        } else {
            self.length
        };
        self.n_in.min(want)
    }

    /// Transforms every lane: `read(i)` is flat input element `i`, and `write(i, v)` stores
    /// flat output element `i`. Each output element is written once.
    pub fn run(&self, read: impl Fn(usize) -> f64, mut write: impl FnMut(usize, f64)) {
        let n = self.length;
        // One lane's signal, transformed in place, and the direct sum's copy of it: reused by
        // every lane.
        let (mut re, mut im) = (vec![0.0; n], vec![0.0; n]);
        let mut signal = Vec::new();
        let points = self.points();
        for o in 0..self.outer {
            for i in 0..self.inner {
                re.fill(0.0);
                im.fill(0.0);
                for t in 0..points {
                    let at = ((o * self.n_in + t) * self.inner + i) * self.c_in;
                    re[t] = read(at);
                    if self.c_in == 2 {
                        im[t] = read(at + 1);
                    }
                }
                if self.inverse && self.onesided {
                    // The half spectrum of a real signal: the rest is its mirror image,
                    // conjugated. The imaginary parts of the first (and, for an even
                    // length, the middle) frequency only make the result imaginary, which
                    // is dropped.
                    for k in n / 2 + 1..n {
                        re[k] = re[n - k];
                        im[k] = -im[n - k];
                    }
                }
                self.twiddles
                    .transform(&mut re, &mut im, self.inverse, self.out_len, &mut signal);
                let scale = if self.inverse { 1.0 / n as f64 } else { 1.0 };
                for k in 0..self.out_len {
                    let at = ((o * self.out_len + k) * self.inner + i) * self.c_out;
                    write(at, re[k] * scale);
                    if self.c_out == 2 {
                        write(at + 1, im[k] * scale);
                    }
                }
            }
        }
    }
}

/// `cos` and `sin` of `2 pi j / n` for `j` in `0..n`.
#[derive(Clone, Debug, PartialEq)]
struct Twiddles {
    cos: Vec<f64>,
    sin: Vec<f64>,
}

impl Twiddles {
    fn new(n: usize) -> Twiddles {
        let angle = |j: usize| 2.0 * PI * j as f64 / n as f64;
        Twiddles {
            cos: (0..n).map(|j| angle(j).cos()).collect(),
            sin: (0..n).map(|j| angle(j).sin()).collect(),
        }
    }

    /// Replaces the first `m` entries of the signal `re`, `im` (of length `n`) with its first
    /// `m` frequencies `sum_t x[t] e^(-2 pi i k t / n)` (`+` when `inverse`, undivided); the
    /// rest is left undefined. `signal` is scratch for the direct sum (a copy of the input,
    /// its capacity kept for the next call); the FFT needs none.
    fn transform(
        &self,
        re: &mut [f64],
        im: &mut [f64],
        inverse: bool,
        m: usize,
        signal: &mut Vec<f64>,
    ) {
        let n = re.len();
        let sign = if inverse { 1.0 } else { -1.0 };
        if n.is_power_of_two() {
            self.fft(re, im, sign);
            return;
        }
        signal.clear();
        signal.extend_from_slice(re);
        signal.extend_from_slice(im);
        let (x_re, x_im) = signal.split_at(n);
        for k in 0..m {
            let (mut sr, mut si) = (0.0, 0.0);
            for t in 0..n {
                let j = (k * t) % n;
                let (c, s) = (self.cos[j], sign * self.sin[j]);
                sr += x_re[t] * c - x_im[t] * s;
                si += x_re[t] * s + x_im[t] * c;
            }
            re[k] = sr;
            im[k] = si;
        }
    }

    /// In-place iterative radix-2 FFT of a power-of-two length (`sign` -1 forward, +1
    /// inverse).
    fn fft(&self, re: &mut [f64], im: &mut [f64], sign: f64) {
        let n = re.len();
        let bits = n.trailing_zeros();
        if bits == 0 {
            return;
        }
        for i in 0..n {
            let j = i.reverse_bits() >> (usize::BITS - bits);
            if i < j {
                re.swap(i, j);
                im.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let (half, step) = (len / 2, n / len);
            for start in (0..n).step_by(len) {
                for j in 0..half {
                    let (c, s) = (self.cos[j * step], sign * self.sin[j * step]);
                    let (a, b) = (start + j, start + j + half);
                    let vr = re[b] * c - im[b] * s;
                    let vi = re[b] * s + im[b] * c;
                    re[b] = re[a] - vr;
                    im[b] = im[a] - vi;
                    re[a] += vr;
                    im[a] += vi;
                }
            }
            len *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Op};

    fn dft(length: usize, inverse: bool, onesided: bool) -> Op {
        Op::Dft {
            axis: 0,
            length,
            inverse,
            onesided,
        }
    }

    fn eval(op: &Op, dims: &[usize], v: &[f64]) -> (Vec<usize>, Vec<f64>) {
        let x = Tensor::from_f64(DType::F64, dims, v);
        let want = op.infer(&[x.ty()], &[None]).unwrap().remove(0);
        let y = op.eval(&[&x]).unwrap().remove(0);
        assert_eq!(want, y.ty());
        (y.shape().to_vec(), y.to_f64_vec())
    }

    fn assert_close(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "got {got:?}, want {want:?}");
        }
    }

    #[test]
    fn forward_transforms_known_values() {
        // [1, 2, 3, 4]: the FFT path. X = [10, -2+2i, -2, -2-2i].
        let (dims, y) = eval(&dft(4, false, false), &[4, 1], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(dims, [4, 2]);
        assert_close(&y, &[10.0, 0.0, -2.0, 2.0, -2.0, 0.0, -2.0, -2.0]);
        // [1, 2, 3]: the direct path. X_1 = -1.5 + i sqrt(3)/2.
        let h = 3f64.sqrt() / 2.0;
        let (_, y) = eval(&dft(3, false, false), &[3, 1], &[1.0, 2.0, 3.0]);
        assert_close(&y, &[6.0, 0.0, -1.5, h, -1.5, -h]);
        // One-sided keeps the first length / 2 + 1 frequencies.
        let (dims, y) = eval(&dft(3, false, true), &[3, 1], &[1.0, 2.0, 3.0]);
        assert_eq!(dims, [2, 2]);
        assert_close(&y, &[6.0, 0.0, -1.5, h]);
        // A complex impulse at t = 1 is e^(-2 pi i k / 4): [1, -i, -1, i].
        let x = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        let (_, y) = eval(&dft(4, false, false), &[4, 2], &x);
        assert_close(&y, &[1.0, 0.0, 0.0, -1.0, -1.0, 0.0, 0.0, 1.0]);
    }

    #[test]
    fn lengths_cut_and_pad_the_signal() {
        // Cut to 2: [1, 2] -> [3, -1].
        let (dims, y) = eval(&dft(2, false, false), &[4, 1], &[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(dims, [2, 2]);
        assert_close(&y, &[3.0, 0.0, -1.0, 0.0]);
        // Padded to 4: [1, 1, 0, 0] -> [2, 1-i, 0, 1+i].
        let (_, y) = eval(&dft(4, false, false), &[2, 1], &[1.0, 1.0]);
        assert_close(&y, &[2.0, 0.0, 1.0, -1.0, 0.0, 0.0, 1.0, 1.0]);
    }

    #[test]
    fn inverse_transforms_undo_forward_ones() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0];
        for n in [4, 5] {
            let (_, spectrum) = eval(&dft(n, false, false), &[n, 1], &x[..n]);
            let (dims, back) = eval(&dft(n, true, false), &[n, 2], &spectrum);
            assert_eq!(dims, [n, 2]);
            let want: Vec<f64> = x[..n].iter().flat_map(|&v| [v, 0.0]).collect();
            assert_close(&back, &want);
            // The one-sided inverse rebuilds the real signal from the half spectrum.
            let half = &spectrum[..(n / 2 + 1) * 2];
            let (dims, real) = eval(&dft(n, true, true), &[n / 2 + 1, 2], half);
            assert_eq!(dims, [n, 1]);
            assert_close(&real, &x[..n]);
        }
    }

    #[test]
    fn lanes_run_along_the_axis() {
        // [2, 3, 1] along axis 1, two lanes.
        let op = Op::Dft {
            axis: -2,
            length: 3,
            inverse: false,
            onesided: true,
        };
        let (dims, y) = eval(&op, &[2, 3, 1], &[1.0, 2.0, 3.0, 1.0, 1.0, 1.0]);
        assert_eq!(dims, [2, 2, 2]);
        let h = 3f64.sqrt() / 2.0;
        assert_close(&y, &[6.0, 0.0, -1.5, h, 3.0, 0.0, 0.0, 0.0]);
        // Along axis 0 of [2, 2, 1], two lanes interleaved.
        let (_, y) = eval(&dft(2, false, false), &[2, 2, 1], &[1.0, 5.0, 3.0, 7.0]);
        assert_close(&y, &[4.0, 0.0, 12.0, 0.0, -2.0, 0.0, -2.0, 0.0]);
    }

    #[test]
    fn dft_checks_its_operand() {
        let t = |dims: &[usize]| TensorType::known(DType::F32, dims);
        let e = dft(4, false, false)
            .infer(&[t(&[4, 3])], &[None])
            .unwrap_err();
        assert!(e.contains("dft needs a last axis of 1 or 2"), "{e}");
        let e = dft(4, false, false).infer(&[t(&[4])], &[None]).unwrap_err();
        assert!(e.contains("dft needs a signal axis"), "{e}");
        let op = Op::Dft {
            axis: 1,
            length: 4,
            inverse: false,
            onesided: false,
        };
        let e = op.infer(&[t(&[4, 2])], &[None]).unwrap_err();
        assert!(e.contains("axis cannot be the last one"), "{e}");
        let e = dft(0, false, false)
            .infer(&[t(&[4, 2])], &[None])
            .unwrap_err();
        assert!(e.contains("length must be at least 1"), "{e}");
        let x = TensorType::known(DType::I32, &[4, 2]);
        assert!(dft(4, false, false).infer(&[x], &[None]).is_err());
    }
}
