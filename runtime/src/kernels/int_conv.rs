//! `conv2d_integer`: im2col of `x - x_zero_point` into the integer GEMM's widened rows
//! ([`super::int_gemm`]), times the HWIO filter minus its zero points packed once per group.
//!
//! Output pixels (rows of the `[N·OH·OW, C]` view) go in blocks of [`MC`]: each block's patches
//! (`kh · kw · ci` values, in the filter's HWI order, padding as 0, which is the input's zero
//! point after the subtraction) are gathered once per group, then every panel of that group's
//! filter passes over them. Both data formats read and write through strides, so NCHW costs
//! no transpose; groups are `conv2d`'s (input channels `[g·ci, (g+1)·ci)` feed output channels
//! `[g·cog, (g+1)·cog)`).

use super::int_gemm::{self, block, ByteMat, COut, IntIsa, PackedB, Widened, MC, ROWS};
use lathe_ir::ops::conv::WindowGeometry;
use lathe_ir::ops::{DataFormat, Op};
use lathe_ir::TensorType;
use std::ops::Range;
use std::sync::Arc;

/// A `conv2d_integer` ready to run on ranges of output pixels.
#[derive(Clone, Debug)]
pub struct IntConv {
    pub format: DataFormat,
    win: WindowGeometry,
    groups: usize,
    /// Input channels per group.
    ci: usize,
    /// Output channels in all.
    co: usize,
    x_signed: bool,
    f_signed: bool,
    /// Element strides of the batch, row, column and channel axes of the input and output.
    x_strides: [usize; 4],
    out_strides: [usize; 4],
    /// The filter minus its zero points, one panel set per group, when both are constants.
    pub packed: Option<Arc<Vec<PackedB>>>,
}

/// Element strides `[n, h, w, c]` of a dense tensor of NHWC sizes `nhwc` stored in `format`.
fn strides(format: DataFormat, [_, h, w, c]: [usize; 4]) -> [usize; 4] {
    match format {
        DataFormat::Nhwc => [h * w * c, w * c, c, 1],
        DataFormat::Nchw => [c * h * w, w, 1, h * w],
    }
}

impl IntConv {
    /// Prepares `op` (a `conv2d_integer`) on operands of types `x` and `filter`, packing the
    /// filter when its value and its zero points' (`filter_zp`) are given.
    pub fn new(
        op: &Op,
        types: &[&TensorType],
        filter: Option<(&[u8], &[i32])>,
    ) -> Result<IntConv, String> {
        let Op::Conv2DInteger(a) = op else {
            return Err(format!("{} is not conv2d_integer", op.mnemonic()));
        };
        let tys: Vec<TensorType> = types.iter().map(|&t| t.clone()).collect();
        op.infer(&tys, &vec![None; tys.len()])?;
        let known = |t: &TensorType| {
            t.shape
                .as_known()
                .ok_or_else(|| format!("conv2d_integer needs known shapes, got {t}"))
        };
        let (d, f) = (known(types[0])?, known(types[1])?);
        let (ha, wa, ca) = a.format.hwc_axes();
        let nhwc = [d[0], d[ha], d[wa], d[ca]];
        let win = WindowGeometry::new(&nhwc, [f[0], f[1]], a.strides, a.dilations, &a.padding)?;
        let signed = |t: &TensorType| {
            int_gemm::byte_signedness(t.dtype).ok_or_else(|| format!("{t} is not i8 or u8"))
        };
        let mut conv = IntConv {
            format: a.format,
            groups: nhwc[3] / f[2],
            ci: f[2],
            co: f[3],
            x_signed: signed(types[0])?,
            f_signed: signed(types[1])?,
            x_strides: strides(a.format, nhwc),
            out_strides: strides(a.format, [win.n, win.oh, win.ow, f[3]]),
            win,
            packed: None,
        };
        if let Some((bytes, zp)) = filter {
            if bytes.len() != f.iter().product::<usize>() {
                return Err("the filter does not have its type's size".into());
            }
            // SAFETY: `bytes` is the whole dense HWIO filter.
            conv.packed = Some(Arc::new(unsafe { conv.pack(bytes.as_ptr(), zp) }));
        }
        Ok(conv)
    }

    /// Output pixels: `N * OH * OW`.
    pub fn rows(&self) -> usize {
        self.win.rows()
    }

    /// Multiply-adds per output pixel, to decide how many threads a step is worth.
    pub fn flops_per_row(&self) -> usize {
        2 * self.win.kh * self.win.kw * self.ci * self.co
    }

    /// Output channels per group.
    fn cog(&self) -> usize {
        self.co / self.groups.max(1)
    }

    /// The dense HWIO filter at `filter` minus its zero points (`zp[o]` or `zp[0]`), packed
    /// per group.
    ///
    /// # Safety
    /// `filter` addresses the whole filter of this convolution's shape.
    pub unsafe fn pack(&self, filter: *const u8, zp: &[i32]) -> Vec<PackedB> {
        let (k, cog) = (self.win.kh * self.win.kw * self.ci, self.cog());
        (0..self.groups)
            .map(|g| {
                let b = ByteMat {
                    ptr: filter.add(g * cog),
                    signed: self.f_signed,
                    strides: (self.co, 1),
                };
                let zg = if zp.len() == 1 {
                    zp
                } else {
                    &zp[g * cog..(g + 1) * cog]
                };
                PackedB::new(b, k, cog, zg)
            })
            .collect()
    }

    /// Output pixels `rows` of every channel: `out` (i32) from `x` (i8/u8) and the packed
    /// filter `filter` (one per group), on the calling thread.
    ///
    /// # Safety
    /// `x` and `out` address whole dense tensors of this convolution's input and output shapes
    /// in its format; the output pixels `rows` are this call's alone to write.
    pub unsafe fn run_rows(
        &self,
        x: *const u8,
        x_zp: i32,
        filter: &[PackedB],
        out: *mut i32,
        rows: Range<usize>,
    ) {
        let isa = IntIsa::detect();
        let w = &self.win;
        let (ohw, cog) = (w.oh * w.ow, self.cog());
        let os = self.out_strides;
        ROWS.with(|s| {
            let mut rows_of_a = s.borrow_mut();
            let mut r0 = rows.start;
            while r0 < rows.end {
                let r1 = (r0 + MC).min(rows.end);
                let row = |r: usize| {
                    let p = r0 + r;
                    let (img, pix) = (p / ohw.max(1), p % ohw.max(1));
                    img * os[0] + (pix / w.ow) * os[1] + (pix % w.ow) * os[2]
                };
                for (g, packed) in filter.iter().enumerate() {
                    self.im2col(x, x_zp, g, r0..r1, packed, &mut rows_of_a);
                    let c = COut {
                        ptr: out.add(g * cog * os[3]),
                        row: &row,
                        col_stride: os[3],
                    };
                    block(isa, &rows_of_a, packed, &c);
                }
                r0 = r1;
            }
        });
    }

    /// The patches of output pixels `rows` for group `g` into `out`, widened for `packed`
    /// (padded taps equal to the zero point: a difference of 0).
    unsafe fn im2col(
        &self,
        x: *const u8,
        x_zp: i32,
        g: usize,
        rows: Range<usize>,
        packed: &PackedB,
        out: &mut Widened,
    ) {
        let w = &self.win;
        let xs = self.x_strides;
        out.reset(packed, rows.len());
        // Row "index" is an element offset, columns are the group's channels.
        let m = ByteMat {
            ptr: x.add(g * self.ci * xs[3]),
            signed: self.x_signed,
            strides: (1, xs[3]),
        };
        for (r, p) in rows.enumerate() {
            let (img, pix) = (p / (w.oh * w.ow), p % (w.oh * w.ow));
            let (oy, ox) = (pix / w.ow, pix % w.ow);
            out.begin_row(r, self.x_signed, x_zp);
            for ky in w.ky_range(oy) {
                let iy = w.iy(oy, ky);
                for kx in w.kx_range(ox) {
                    let ix = w.ix(ox, kx);
                    let base = img * xs[0] + iy * xs[1] + ix * xs[2];
                    let at = (ky * w.kw + kx) * self.ci;
                    out.put(r, at, &m, (base, 0), x_zp, self.ci);
                }
            }
            out.end_row(r);
        }
    }
}
