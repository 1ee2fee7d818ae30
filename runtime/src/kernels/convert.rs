//! Conversions that involve a low-precision storage type (float8, float4, 4- and 2-bit
//! integers): `cast` and `cast_unsaturated` steps, elementwise through `lathe_ir`'s own
//! conversion functions, so they give the interpreter's bits.

use lathe_ir::DType;

/// One conversion of `len` elements of `from` to `to`.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Convert {
    pub from: DType,
    pub to: DType,
    /// False for `cast_unsaturated` (which only low-precision float targets notice).
    pub saturate: bool,
    pub len: usize,
}

impl Convert {
    /// Converts `len` elements at `x` into `out`.
    ///
    /// # Safety
    /// `x` must point to `len` readable elements of `from`, and `out` to `len` writable
    /// elements of `to` that nothing else touches during the call and that do not overlap `x`.
    pub unsafe fn run(&self, x: *const u8, out: *mut u8) {
        // SAFETY: the caller guarantees the two ranges and their exclusive use.
        let (src, dst) = unsafe {
            (
                std::slice::from_raw_parts(x, self.len * self.from.size_bytes()),
                std::slice::from_raw_parts_mut(out, self.len * self.to.size_bytes()),
            )
        };
        lathe_ir::tensor::convert_le(self.from, self.to, self.saturate, src, dst);
    }
}
