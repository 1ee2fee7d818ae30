//! The SIMD layer every hand-written kernel shares: the [`Isa`] a kernel runs with and the CPU
//! feature detection behind it (also asked by codegen), a minimal [`Simd`] trait implemented for
//! AVX-512, AVX2+FMA and scalar `f32`, and [`multiversion`], which compiles one generic
//! `#[inline(always)]` kernel per instruction set inside a `#[target_feature]` function.

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;
use std::sync::OnceLock;

/// One vector of `LANES` f32 lanes. Every method is `unsafe`: the caller guarantees the
/// CPU supports the instruction set and that pointers address `LANES` valid elements.
pub trait Simd: Copy {
    const LANES: usize;
    type V: Copy;
    unsafe fn zero() -> Self::V;
    unsafe fn splat(v: f32) -> Self::V;
    /// Unaligned load of `LANES` elements.
    unsafe fn load(p: *const f32) -> Self::V;
    /// Unaligned store of `LANES` elements.
    unsafe fn store(p: *mut f32, v: Self::V);
    /// Loads the first `n < LANES` elements (the others are zero); touches only those.
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V;
    /// Stores the first `n < LANES` lanes; touches only those elements.
    unsafe fn store_n(p: *mut f32, v: Self::V, n: usize);
    /// `a * b + c` (fused where the hardware has FMA).
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// `a - b`.
    unsafe fn sub(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn div(a: Self::V, b: Self::V) -> Self::V;
    /// `if a > b { a } else { b }` per lane (so a NaN in `a` never replaces `b`).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// `if a < b { a } else { b }` per lane.
    unsafe fn min(a: Self::V, b: Self::V) -> Self::V;
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// The IR's `maximum`, bit for bit: `if a is NaN or a > b { a } else { b }` per lane (a
    /// NaN in either gives NaN; of two equal zeros, `b`).
    unsafe fn maximum(a: Self::V, b: Self::V) -> Self::V;
    /// The IR's `minimum`: `if a is NaN or a < b { a } else { b }` per lane.
    unsafe fn minimum(a: Self::V, b: Self::V) -> Self::V;
    /// The sum of the lanes.
    unsafe fn sum(v: Self::V) -> f32;
}

/// An instruction set a kernel is compiled for, chosen at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Isa {
    /// AVX-512F, with AVX2 and FMA.
    Avx512,
    /// AVX2 and FMA.
    Avx2,
    /// Portable Rust (correct, slow).
    Scalar,
}

impl Isa {
    /// Every instruction set, widest first.
    pub const ALL: [Isa; 3] = [Isa::Avx512, Isa::Avx2, Isa::Scalar];

    /// The widest instruction set this CPU runs (detected once per process).
    pub fn detect() -> Isa {
        static BEST: OnceLock<Isa> = OnceLock::new();
        *BEST.get_or_init(|| {
            Isa::ALL
                .into_iter()
                .find(|isa| isa.supported())
                .unwrap_or(Isa::Scalar)
        })
    }

    /// Whether this CPU runs code compiled for the instruction set: it has every one of its
    /// [`Isa::features`].
    pub fn supported(self) -> bool {
        self.features().iter().all(|f| crate::cpu::has_feature(f))
    }

    /// Its name in plan images (`avx512`, `avx2`, `scalar`).
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512",
            Isa::Avx2 => "avx2",
            Isa::Scalar => "scalar",
        }
    }

    /// The CPU features it needs, as [`crate::cpu::has_feature`] names them.
    pub fn features(self) -> &'static [&'static str] {
        match self {
            Isa::Avx512 => &["avx512f", "avx2", "fma"],
            Isa::Avx2 => &["avx2", "fma"],
            Isa::Scalar => &[],
        }
    }

    /// Every instruction set this CPU runs, widest first (tests run each).
    pub fn all_supported() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.supported()).collect()
    }
}

/// Stored by name; the plan being encoded records the features it needs.
impl serde::Serialize for Isa {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        crate::cpu::image::need_features(self.features());
        s.serialize_str(self.name())
    }
}

/// Read by name; an instruction set this CPU does not run is an error, so a decoded kernel
/// never runs code the CPU lacks.
impl<'de> serde::Deserialize<'de> for Isa {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Isa, D::Error> {
        let name = String::deserialize(d)?;
        let isa = (Isa::ALL.into_iter().find(|i| i.name() == name)).ok_or_else(|| {
            crate::cpu::image::invalid(format!("unknown instruction set `{name}`"))
        })?;
        if !isa.supported() {
            return Err(crate::cpu::image::invalid(format!(
                "kernels compiled for {name} ({}), which this CPU lacks",
                isa.features().join(", ")
            )));
        }
        Ok(isa)
    }
}

/// True when a fused multiply-add is one native instruction on this CPU (generated code
/// uses it then, and a multiply and an add otherwise).
pub fn has_native_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::cpu::has_feature("fma") && crate::cpu::has_feature("avx")
    }
    #[cfg(target_arch = "aarch64")]
    {
        true
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// True when the CPU has vector rounding instructions (SSE4.1 on x86-64), which generated
/// code needs.
pub fn has_vector_rounding() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        crate::cpu::has_feature("sse4.1")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        true
    }
}

/// Plain `f32`: the portable fallback and the tail of every vector loop.
#[derive(Clone, Copy)]
pub struct Scalar;

impl Simd for Scalar {
    const LANES: usize = 1;
    type V = f32;
    #[inline(always)]
    unsafe fn zero() -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> f32 {
        v
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> f32 {
        *p
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: f32) {
        *p = v
    }
    #[inline(always)]
    unsafe fn load_n(_: *const f32, _: usize) -> f32 {
        0.0
    }
    #[inline(always)]
    unsafe fn store_n(_: *mut f32, _: f32, _: usize) {}
    #[inline(always)]
    unsafe fn fma(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
    #[inline(always)]
    unsafe fn add(a: f32, b: f32) -> f32 {
        a + b
    }
    #[inline(always)]
    unsafe fn sub(a: f32, b: f32) -> f32 {
        a - b
    }
    #[inline(always)]
    unsafe fn div(a: f32, b: f32) -> f32 {
        a / b
    }
    #[inline(always)]
    unsafe fn max(a: f32, b: f32) -> f32 {
        if a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn min(a: f32, b: f32) -> f32 {
        if a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn mul(a: f32, b: f32) -> f32 {
        a * b
    }
    #[inline(always)]
    unsafe fn maximum(a: f32, b: f32) -> f32 {
        if a.is_nan() || a > b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn minimum(a: f32, b: f32) -> f32 {
        if a.is_nan() || a < b {
            a
        } else {
            b
        }
    }
    #[inline(always)]
    unsafe fn sum(v: f32) -> f32 {
        v
    }
}

/// 8 lanes of AVX2 with FMA.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    const LANES: usize = 8;
    type V = __m256;
    #[inline(always)]
    unsafe fn zero() -> __m256 {
        _mm256_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m256 {
        _mm256_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m256 {
        _mm256_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256) {
        _mm256_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> __m256 {
        _mm256_maskload_ps(p, avx2_mask(n))
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: __m256, n: usize) {
        _mm256_maskstore_ps(p, avx2_mask(n), v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        _mm256_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        _mm256_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        _mm256_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m256, b: __m256) -> __m256 {
        _mm256_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m256, b: __m256) -> __m256 {
        // MAXPS returns its second operand unless the first is greater.
        _mm256_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn min(a: __m256, b: __m256) -> __m256 {
        // MINPS returns its second operand unless the first is less.
        _mm256_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        _mm256_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn maximum(a: __m256, b: __m256) -> __m256 {
        let take_a = _mm256_or_ps(
            _mm256_cmp_ps::<_CMP_GT_OQ>(a, b),
            _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a),
        );
        _mm256_blendv_ps(b, a, take_a)
    }
    #[inline(always)]
    unsafe fn minimum(a: __m256, b: __m256) -> __m256 {
        let take_a = _mm256_or_ps(
            _mm256_cmp_ps::<_CMP_LT_OQ>(a, b),
            _mm256_cmp_ps::<_CMP_UNORD_Q>(a, a),
        );
        _mm256_blendv_ps(b, a, take_a)
    }
    #[inline(always)]
    unsafe fn sum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

/// Lanes `0..n` set (all bits), the others clear.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn avx2_mask(n: usize) -> __m256i {
    _mm256_cmpgt_epi32(
        _mm256_set1_epi32(n as i32),
        _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
    )
}

/// 16 lanes of AVX-512F.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
pub struct Avx512;

// The AVX-512 intrinsics are stable since Rust 1.89, above the workspace's declared
// rust-version (1.87); the toolchain in use has them. See the module docs.
#[cfg(target_arch = "x86_64")]
#[allow(clippy::incompatible_msrv)]
impl Simd for Avx512 {
    const LANES: usize = 16;
    type V = __m512;
    #[inline(always)]
    unsafe fn zero() -> __m512 {
        _mm512_setzero_ps()
    }
    #[inline(always)]
    unsafe fn splat(v: f32) -> __m512 {
        _mm512_set1_ps(v)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> __m512 {
        _mm512_loadu_ps(p)
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m512) {
        _mm512_storeu_ps(p, v)
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> __m512 {
        _mm512_maskz_loadu_ps(((1u32 << n) - 1) as __mmask16, p)
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, v: __m512, n: usize) {
        _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as __mmask16, v)
    }
    #[inline(always)]
    unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
        _mm512_fmadd_ps(a, b, c)
    }
    #[inline(always)]
    unsafe fn add(a: __m512, b: __m512) -> __m512 {
        _mm512_add_ps(a, b)
    }
    #[inline(always)]
    unsafe fn sub(a: __m512, b: __m512) -> __m512 {
        _mm512_sub_ps(a, b)
    }
    #[inline(always)]
    unsafe fn div(a: __m512, b: __m512) -> __m512 {
        _mm512_div_ps(a, b)
    }
    #[inline(always)]
    unsafe fn max(a: __m512, b: __m512) -> __m512 {
        // VMAXPS returns its second operand unless the first is greater.
        _mm512_max_ps(a, b)
    }
    #[inline(always)]
    unsafe fn min(a: __m512, b: __m512) -> __m512 {
        // VMINPS returns its second operand unless the first is less.
        _mm512_min_ps(a, b)
    }
    #[inline(always)]
    unsafe fn mul(a: __m512, b: __m512) -> __m512 {
        _mm512_mul_ps(a, b)
    }
    #[inline(always)]
    unsafe fn maximum(a: __m512, b: __m512) -> __m512 {
        let take_a =
            _mm512_cmp_ps_mask::<_CMP_GT_OQ>(a, b) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a);
        _mm512_mask_blend_ps(take_a, b, a)
    }
    #[inline(always)]
    unsafe fn minimum(a: __m512, b: __m512) -> __m512 {
        let take_a =
            _mm512_cmp_ps_mask::<_CMP_LT_OQ>(a, b) | _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(a, a);
        _mm512_mask_blend_ps(take_a, b, a)
    }
    #[inline(always)]
    unsafe fn sum(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }
}

/// Loads the first `n.min(LANES)` elements at `p`, the other lanes zero: a whole vector when
/// `n >= LANES`, the edge of a channel loop otherwise.
///
/// # Safety
///
/// `p` addresses `n.min(LANES)` readable floats and the CPU runs `S`.
#[inline(always)]
pub unsafe fn load_first<S: Simd>(p: *const f32, n: usize) -> S::V {
    // SAFETY: the caller's contract; `load_n` reads only the first `n` elements.
    unsafe {
        if n >= S::LANES {
            S::load(p)
        } else {
            S::load_n(p, n)
        }
    }
}

/// Stores the first `n.min(LANES)` lanes of `v` at `p` (nothing when `n` is 0).
///
/// # Safety
///
/// `p` addresses `n.min(LANES)` writable floats and the CPU runs `S`.
#[inline(always)]
pub unsafe fn store_first<S: Simd>(p: *mut f32, v: S::V, n: usize) {
    // SAFETY: the caller's contract; `store_n` writes only the first `n` elements.
    unsafe {
        if n >= S::LANES {
            S::store(p, v)
        } else {
            S::store_n(p, v, n)
        }
    }
}

/// Defines `fn $name(isa: Isa, args...)` that runs the generic `$generic::<S>(args...)`
/// with `S` the [`Simd`] type of `isa`, compiled with that instruction set enabled.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $generic:ident) => {
        $(#[$m])*
        $vis fn $name(isa: $crate::kernels::simd::Isa, $($arg: $ty),*) {
            use $crate::kernels::simd::*;
            match isa {
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => {
                    #[target_feature(enable = "avx512f,avx2,fma")]
                    unsafe fn imp($($arg: $ty),*) {
                        $generic::<Avx512>($($arg),*)
                    }
                    // SAFETY: callers pass `Isa::Avx512` only when `Isa::supported` says
                    // this CPU has AVX-512F, AVX2 and FMA (`Isa::detect` or a test's list).
                    unsafe { imp($($arg),*) }
                }
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn imp($($arg: $ty),*) {
                        $generic::<Avx2>($($arg),*)
                    }
                    // SAFETY: as above, `Isa::Avx2` implies AVX2 and FMA.
                    unsafe { imp($($arg),*) }
                }
                _ => $generic::<Scalar>($($arg),*),
            }
        }
    };
}
pub(crate) use multiversion;
