//! Plan images: a compiled plan as bytes, what an artifact stores per specialization so that
//! loading it runs no pass, no lowering and no weight packing.
//!
//! An image is two byte strings. The *plan* is the [`Plan`] itself (its storages, buffers,
//! steps, kernels' parameters and memory plan) in postcard's compact encoding, through the
//! serde derives on `plan.rs` and the kernels. The *blob* holds every array a plan holds
//! that may be large, each 64-byte aligned: packed weight panels ([`PackedB`]) and the
//! constants read at run time. A decoded plan's packed panels point into the blob where it
//! lies, a file mapped into memory, so loading copies no weight; the other arrays are copied
//! out (they are small: constants read at run time, depthwise filters, index tables).
//!
//! Generated row kernels are stored as their fused body's IR text and their machine code with
//! its relocations (absolute addresses of the kernel's tables and libcalls, written when the
//! code is placed in executable memory at load: see `codegen::jit::link`). Code compiled for
//! ISA flags this CPU lacks is not used: the body is compiled again.
//!
//! Kernels that images do not hold yet (`#[serde(skip)]` on their [`Kernel`] variant: the
//! integer kernels, einsum loops, generic windows, determinants, Fourier transforms, the
//! indexing and image kernels, and interpreter steps) make [`encode`] fail with
//! [`ImageError::Unsupported`] naming the step; an artifact then stores the graph alone and
//! the plan is compiled when it loads.
//!
//! # Trust
//!
//! The artifact's checksum makes a damaged file an error before anything is decoded. The
//! decoder checks what the encoding itself could get wrong: every array lies inside the
//! blob, is aligned, and has the size its shape says; a packed weight's layout is consistent;
//! every instruction set is one this CPU runs ([`Isa::supported`]); every op name is an IR op.
//! The plan's internal consistency (buffer offsets, kernel shapes) is the compiler's, as it
//! is for code in a shared library: an artifact is trusted the way a `.so` is.
//!
//! [`PackedB`]: crate::kernels::packed::PackedB
//! [`Kernel`]: super::plan::Kernel
//! [`Isa::supported`]: crate::kernels::simd::Isa::supported

use super::plan::{Kernel, OpName, Plan};
use lathe_ir::{DType, Tensor};
use serde::{de, Deserialize, Deserializer, Serialize, Serializer};
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::ops::Range;
use std::sync::Arc;

/// Alignment of every array in a blob (a cache line, and what the packed kernels need).
pub const BLOB_ALIGN: usize = 64;

/// Why a plan could not be stored or read back.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The plan holds a kernel that images do not hold yet.
    #[error("step `{step}` ({op}) runs a {kind} kernel, which plan images do not hold yet")]
    Unsupported {
        step: String,
        op: String,
        kind: &'static str,
    },
    /// The bytes are not an image this build wrote, or were damaged.
    #[error("plan image: {0}")]
    Corrupt(String),
}

/// Bytes a decoded plan's arrays may lie in: a mapped artifact, or owned aligned bytes
/// ([`AlignedBytes`]); the same type as an artifact file's.
pub type Bytes = lathe_compiler::artifact::Bytes;

/// Owned bytes that start on a [`BLOB_ALIGN`] boundary.
pub struct AlignedBytes {
    lines: Vec<Line64>,
    len: usize,
}

/// One aligned line; a `Vec` of them starts on a 64-byte boundary.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line64([u8; BLOB_ALIGN]);

impl AlignedBytes {
    /// A copy of `bytes`, aligned.
    pub fn copy_of(bytes: &[u8]) -> AlignedBytes {
        let mut lines = vec![Line64([0; BLOB_ALIGN]); bytes.len().div_ceil(BLOB_ALIGN)];
        for (line, chunk) in lines.iter_mut().zip(bytes.chunks(BLOB_ALIGN)) {
            line.0[..chunk.len()].copy_from_slice(chunk);
        }
        AlignedBytes {
            lines,
            len: bytes.len(),
        }
    }
}

impl fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlignedBytes({} bytes)", self.len)
    }
}

impl AsRef<[u8]> for AlignedBytes {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: `Line64` is `repr(C)` around `[u8; 64]` with no padding, so the lines are
        // `64 * len` contiguous initialized bytes.
        let all = unsafe {
            std::slice::from_raw_parts(
                self.lines.as_ptr().cast::<u8>(),
                self.lines.len() * BLOB_ALIGN,
            )
        };
        &all[..self.len]
    }
}

/// An aligned array inside a [`Bytes`]: where a decoded packed weight lies.
#[derive(Clone)]
pub struct Slice {
    backing: Bytes,
    range: Range<usize>,
}

impl Slice {
    pub fn bytes(&self) -> &[u8] {
        &(*self.backing).as_ref()[self.range.clone()]
    }

    /// The bytes as `f32`s (the range is aligned and a multiple of 4 bytes: checked when
    /// the slice was made).
    pub fn floats(&self) -> &[f32] {
        let b = self.bytes();
        // SAFETY: `get` made the range start on a 64-byte boundary of the backing's bytes,
        // which are themselves aligned (a page, or `AlignedBytes`), and span whole floats;
        // every bit pattern is a valid f32.
        unsafe { std::slice::from_raw_parts(b.as_ptr().cast::<f32>(), b.len() / 4) }
    }
}

impl fmt::Debug for Slice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Slice({:?})", self.range)
    }
}

/// Where an array lies in the blob (what the plan encoding holds in its place).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct BlobRef {
    offset: u64,
    len: u64,
}

struct Writer {
    blob: Vec<u8>,
    features: BTreeSet<&'static str>,
}

struct Reader {
    backing: Bytes,
    blob: Range<usize>,
}

thread_local! {
    /// The message of the last error a decoder of ours raised (postcard keeps none).
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    static WRITER: RefCell<Option<Writer>> = const { RefCell::new(None) };
    static READER: RefCell<Option<Reader>> = const { RefCell::new(None) };
}

/// A decoding error saying `msg`, which [`decode`] reports (the encoding's own errors keep no
/// message).
pub(crate) fn invalid<E: de::Error>(msg: impl fmt::Display) -> E {
    let msg = msg.to_string();
    LAST_ERROR.with(|l| *l.borrow_mut() = Some(msg.clone()));
    E::custom(msg)
}

/// Appends `bytes` to the blob being written (aligned), for a `Serialize` impl.
pub(crate) fn put(bytes: &[u8]) -> Result<BlobRef, String> {
    WRITER.with(|w| {
        let mut w = w.borrow_mut();
        let w = w
            .as_mut()
            .ok_or("arrays are stored only inside image::encode")?;
        let offset = w.blob.len().next_multiple_of(BLOB_ALIGN);
        w.blob.resize(offset, 0);
        w.blob.extend_from_slice(bytes);
        Ok(BlobRef {
            offset: offset as u64,
            len: bytes.len() as u64,
        })
    })
}

/// Records that the plan being written needs these CPU features (an instruction set's).
pub(crate) fn need_features(features: &[&'static str]) {
    WRITER.with(|w| {
        if let Some(w) = w.borrow_mut().as_mut() {
            w.features.extend(features);
        }
    })
}

/// The array `r` of the blob being read, checked to lie inside it, aligned, and of
/// `expect_len` bytes when given.
pub(crate) fn get(r: BlobRef, expect_len: Option<usize>) -> Result<Slice, String> {
    READER.with(|rd| {
        let rd = rd.borrow();
        let rd = rd
            .as_ref()
            .ok_or("arrays are read only inside image::decode")?;
        let (offset, len) = (usize::try_from(r.offset), usize::try_from(r.len));
        let (Ok(offset), Ok(len)) = (offset, len) else {
            return Err(format!(
                "array at {} of {} bytes is out of range",
                r.offset, r.len
            ));
        };
        if let Some(want) = expect_len {
            if want != len {
                return Err(format!("array of {len} bytes where {want} are needed"));
            }
        }
        let blob_len = rd.blob.len();
        let end = offset.checked_add(len).filter(|&e| e <= blob_len);
        let Some(end) = end else {
            return Err(format!(
                "array of {len} bytes at {offset} runs past the blob ({blob_len} bytes)"
            ));
        };
        let start = rd.blob.start + offset;
        let base = (*rd.backing).as_ref().as_ptr() as usize;
        if !start.is_multiple_of(BLOB_ALIGN) || !base.is_multiple_of(BLOB_ALIGN) {
            return Err(format!(
                "array at {offset} is not {BLOB_ALIGN}-byte aligned"
            ));
        }
        Ok(Slice {
            backing: Arc::clone(&rd.backing),
            range: start..rd.blob.start + end,
        })
    })
}

/// Starts an empty blob for the `Serialize` impls on this thread to write into.
fn start_writing() {
    WRITER.with(|w| {
        *w.borrow_mut() = Some(Writer {
            blob: Vec::new(),
            features: BTreeSet::new(),
        })
    });
}

/// Appends floats to the blob being written (their native bytes, as [`Slice::floats`] reads
/// them back).
pub(crate) fn put_floats(v: &[f32]) -> Result<BlobRef, String> {
    // SAFETY: any initialized f32 slice is a valid byte slice of four times its length.
    let bytes = unsafe { std::slice::from_raw_parts(v.as_ptr().cast::<u8>(), size_of_val(v)) };
    put(bytes)
}

/// The floats at `r` of the blob being read, `expect_len` of them when given.
pub(crate) fn get_floats(r: BlobRef, expect_len: Option<usize>) -> Result<Slice, String> {
    if !r.len.is_multiple_of(4) {
        return Err(format!("{} bytes are no whole number of floats", r.len));
    }
    get(r, expect_len.map(|n| n * 4))
}

/// A plan encoded: the plan's bytes, its blob, and the CPU features its kernels need.
#[derive(Debug)]
pub struct Image {
    pub plan: Vec<u8>,
    pub blob: Vec<u8>,
    pub features: Vec<String>,
}

/// Encodes `plan`; [`ImageError::Unsupported`] names the first step whose kernel images do
/// not hold.
pub(crate) fn encode(plan: &Plan) -> Result<Image, ImageError> {
    let _span = tracing::debug_span!("image.encode").entered();
    start_writing();
    let bytes = postcard::to_stdvec(plan);
    let writer = WRITER.with(|w| w.borrow_mut().take()).expect("set above");
    match bytes {
        Ok(plan) => Ok(Image {
            plan,
            blob: writer.blob,
            features: writer.features.into_iter().map(String::from).collect(),
        }),
        Err(e) => Err(unsupported_step(plan)
            .unwrap_or_else(|| ImageError::Corrupt(format!("the plan does not encode: {e}")))),
    }
}

/// The first step (at any depth) whose kernel does not encode on its own.
fn unsupported_step(plan: &Plan) -> Option<ImageError> {
    for step in &plan.steps {
        let inner = match &step.kernel {
            Kernel::While(l) => unsupported_step(&l.cond).or_else(|| unsupported_step(&l.body)),
            Kernel::If(b) => {
                unsupported_step(&b.then_branch).or_else(|| unsupported_step(&b.else_branch))
            }
            _ => None,
        };
        if inner.is_some() {
            return inner;
        }
        start_writing();
        let alone = postcard::to_stdvec(&step.kernel);
        WRITER.with(|w| w.borrow_mut().take());
        if alone.is_err() {
            return Some(ImageError::Unsupported {
                step: step.name.clone(),
                op: step.op.to_string(),
                kind: step.kernel.kind(),
            });
        }
    }
    None
}

/// Decodes a plan from `plan_bytes`, its arrays in `blob` of `backing` (packed weights stay
/// there; `backing` is kept alive by the plan), compiling its generated kernels on up to
/// `threads` threads.
pub(crate) fn decode(
    plan_bytes: &[u8],
    backing: Bytes,
    blob: Range<usize>,
    threads: usize,
) -> Result<(Plan, super::codegen::KernelLoads), ImageError> {
    let _span = tracing::debug_span!("image.decode", bytes = plan_bytes.len()).entered();
    let len = (*backing).as_ref().len();
    if blob.start > blob.end || blob.end > len {
        return Err(ImageError::Corrupt(format!(
            "blob {blob:?} lies outside the {len} bytes given"
        )));
    }
    READER.with(|r| *r.borrow_mut() = Some(Reader { backing, blob }));
    LAST_ERROR.with(|l| l.borrow_mut().take());
    super::codegen::forget_pending();
    let plan = postcard::from_bytes::<Plan>(plan_bytes);
    READER.with(|r| r.borrow_mut().take());
    let ours = LAST_ERROR.with(|l| l.borrow_mut().take());
    let plan = match plan {
        Ok(plan) => plan,
        Err(e) => {
            super::codegen::forget_pending();
            return Err(ImageError::Corrupt(
                ours.unwrap_or_else(|| format!("malformed ({e})")),
            ));
        }
    };
    // The generated kernels it holds, placed or compiled on every core.
    let loads = super::codegen::compile_pending(threads).map_err(ImageError::Corrupt)?;
    Ok((plan, loads))
}

/// Serde for a shared constant tensor: dtype, shape, and its little-endian bytes in the blob.
pub(crate) mod tensor_arc {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Repr {
        dtype: DType,
        dims: Vec<usize>,
        bytes: BlobRef,
    }

    pub fn serialize<S: Serializer>(t: &Arc<Tensor>, s: S) -> Result<S::Ok, S::Error> {
        let bytes = put(&t.to_le_bytes()).map_err(serde::ser::Error::custom)?;
        Repr {
            dtype: t.dtype(),
            dims: t.shape().to_vec(),
            bytes,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<Tensor>, D::Error> {
        let r = Repr::deserialize(d)?;
        // `from_le_bytes` checks the byte count against the shape.
        let slice = get(r.bytes, None).map_err(invalid)?;
        Tensor::from_le_bytes(r.dtype, &r.dims, slice.bytes())
            .map(Arc::new)
            .map_err(invalid)
    }
}

/// Serde for a large `Vec<f32>` a kernel owns (a filter in its own layout): the floats go to
/// the blob, and are copied back out when read.
pub(crate) mod floats {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
        put_floats(v)
            .map_err(serde::ser::Error::custom)?
            .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
        let r = BlobRef::deserialize(d)?;
        Ok(get_floats(r, None).map_err(invalid)?.floats().to_vec())
    }
}

/// A step's op name is stored as text and read back as the IR op's own mnemonic.
impl Serialize for OpName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0)
    }
}

impl<'de> Deserialize<'de> for OpName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OpName, D::Error> {
        /// Names a step may have that are no IR op.
        const PSEUDO: [&str; 1] = ["copy"];
        let name = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        (lathe_ir::ops::decl::lookup(&name).map(|info| info.name))
            .or_else(|| PSEUDO.into_iter().find(|p| *p == name))
            .map(OpName)
            .ok_or_else(|| invalid(format!("`{name}` is no IR op")))
    }
}
