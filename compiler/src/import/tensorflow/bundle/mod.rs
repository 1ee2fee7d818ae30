//! TensorFlow checkpoints (the TensorBundle format): the `variables/` directory of a
//! SavedModel, `variables.index` plus `variables.data-SSSSS-of-NNNNN` shards.
//!
//! The index is a sorted string table ([`table`]) mapping each checkpoint key to a
//! `BundleEntryProto` (dtype, shape, shard, offset, size, masked CRC-32C of the bytes); the
//! empty key holds the `BundleHeaderProto` (shard count, endianness). A shard is the tensors'
//! bytes back to back: numeric tensors little-endian and dense; string tensors as
//!
//! ```text
//! varint64 length per element , masked CRC-32C of the lengths: u32le , the bytes of each element
//! ```
//!
//! where the entry's checksum covers each length (as a u32, or u64 past 4 GiB), the lengths'
//! checksum and the bytes. [`Bundle::open`] reads and checks the index; [`Bundle::tensor`] and
//! [`Bundle::strings`] read one entry, checking its size against its dtype and shape and against
//! the shard before reading, and its checksum after.

pub mod crc32c;
pub(crate) mod table;

use super::tensor::{dtype, shape};
use lathe_ir::{DType, Dim, Tensor};
use lathe_proto::tensorflow::{
    bundle_header_proto::Endianness, BundleEntryProto, BundleHeaderProto, DataType,
};
use prost::Message;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// Shards a header may declare: far more than any real checkpoint (one per saving device).
const MAX_SHARDS: i32 = 1 << 16;

/// A checkpoint whose index has been read: entries by key, data still on disk.
#[derive(Debug)]
pub struct Bundle {
    /// `.../variables/variables`: the index is `{prefix}.index`.
    prefix: PathBuf,
    num_shards: i32,
    entries: BTreeMap<String, BundleEntryProto>,
}

/// An error about one file of the bundle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleError {
    pub file: PathBuf,
    pub message: String,
}

impl std::fmt::Display for BundleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.file.display(), self.message)
    }
}

impl Bundle {
    /// Reads and checks the index `{prefix}.index` (e.g. prefix `model/variables/variables`).
    pub fn open(prefix: &Path) -> Result<Bundle, BundleError> {
        let index = with_suffix(prefix, ".index");
        let err = |m: String| BundleError {
            file: index.clone(),
            message: m,
        };
        let bytes = std::fs::read(&index).map_err(|e| err(format!("cannot read: {e}")))?;
        let mut header = None;
        let mut entries = BTreeMap::new();
        for (key, value) in table::entries(&bytes).map_err(err)? {
            if key.is_empty() {
                let h = BundleHeaderProto::decode(value.as_slice())
                    .map_err(|e| err(format!("the bundle header does not decode: {e}")))?;
                header = Some(h);
                continue;
            }
            let key = String::from_utf8(key)
                .map_err(|e| err(format!("a key is not UTF-8: {:?}", e.as_bytes())))?;
            let entry = BundleEntryProto::decode(value.as_slice())
                .map_err(|e| err(format!("the entry of {key:?} does not decode: {e}")))?;
            entries.insert(key, entry);
        }
        let header =
            header.ok_or_else(|| err("the bundle header (empty key) is missing".into()))?;
        if header.endianness() != Endianness::Little {
            return Err(err(
                "the checkpoint was written big-endian; only little-endian is supported".into(),
            ));
        }
        if !(1..=MAX_SHARDS).contains(&header.num_shards) {
            return Err(err(format!(
                "the header declares {} shards (1 to {MAX_SHARDS} expected)",
                header.num_shards
            )));
        }
        for (key, e) in &entries {
            if !(0..header.num_shards).contains(&e.shard_id) {
                return Err(err(format!(
                    "entry {key:?} is in shard {}, but there are {}",
                    e.shard_id, header.num_shards
                )));
            }
        }
        Ok(Bundle {
            prefix: prefix.to_path_buf(),
            num_shards: header.num_shards,
            entries,
        })
    }

    /// The checkpoint keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The entry of `key`, if the checkpoint has it.
    pub fn entry(&self, key: &str) -> Option<&BundleEntryProto> {
        self.entries.get(key)
    }

    /// The path of the index file.
    pub fn index_path(&self) -> PathBuf {
        with_suffix(&self.prefix, ".index")
    }

    /// Reads the numeric tensor `key`.
    pub fn tensor(&self, key: &str) -> Result<Tensor, BundleError> {
        let (entry, dims) = self.lookup(key)?;
        let file = self.shard_path(entry);
        let err = |m: String| BundleError {
            file: file.clone(),
            message: format!("variable {key:?}: {m}"),
        };
        if entry.dtype() == DataType::DtString {
            return Err(err("is a string tensor; expected a numeric one".into()));
        }
        let dt: DType = dtype(entry.dtype).map_err(err)?;
        let expect = dims
            .iter()
            .try_fold(dt.size_bytes(), |n, &d| n.checked_mul(d))
            .ok_or_else(|| err(format!("its shape {dims:?} overflows")))?;
        if entry.size != expect as i64 {
            return Err(err(format!(
                "the index says {} bytes, but {} {dims:?} takes {expect}",
                entry.size,
                dt.name()
            )));
        }
        // Built while it is read (no copy of its bytes held beside it), checksummed on the way.
        let mut f = self.open_at(entry, &file).map_err(err)?;
        let mut crc = 0;
        let t = Tensor::read_le(dt, &dims, &mut f, &mut |b| crc = crc32c::extend(crc, b))
            .map_err(|e| err(format!("cannot read {} bytes: {e}", entry.size)))?;
        check_crc(entry, crc).map_err(err)?;
        Ok(t)
    }

    /// Reads the string tensor `key`: its elements, in row-major order.
    pub fn strings(&self, key: &str) -> Result<Vec<Vec<u8>>, BundleError> {
        let (entry, dims) = self.lookup(key)?;
        let file = self.shard_path(entry);
        let err = |m: String| BundleError {
            file: file.clone(),
            message: format!("entry {key:?}: {m}"),
        };
        if entry.dtype() != DataType::DtString {
            return Err(err(format!(
                "is a {} tensor; expected strings",
                entry.dtype().as_str_name()
            )));
        }
        let count = dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| err(format!("its shape {dims:?} overflows")))?;
        // Each element takes at least its one-byte length: a cheap bound before any allocation.
        if count as u64 > entry.size.max(0) as u64 {
            return Err(err(format!(
                "{count} strings cannot fit in the {} bytes the index gives",
                entry.size
            )));
        }
        let raw = self.read(entry, &file).map_err(err)?;
        let mut r = table::Reader::new(&raw);
        let mut lens = Vec::with_capacity(count);
        let mut crc = 0;
        for _ in 0..count {
            let n = r.varint64("a string length").map_err(err)?;
            crc = match u32::try_from(n) {
                Ok(n32) => crc32c::extend(crc, &n32.to_le_bytes()),
                Err(_) => crc32c::extend(crc, &n.to_le_bytes()),
            };
            lens.push(n);
        }
        let pos = raw.len() - r.remaining();
        let stored = raw
            .get(pos..pos + 4)
            .ok_or_else(|| err("the lengths' checksum is cut off".into()))?;
        if u32::from_le_bytes(stored.try_into().expect("4 bytes")) != crc32c::mask(crc) {
            return Err(err(
                "checksum mismatch in the string lengths: the shard is corrupt".into(),
            ));
        }
        crc = crc32c::extend(crc, stored);
        let mut rest = &raw[pos + 4..];
        let mut out = Vec::with_capacity(count);
        for n in lens {
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= rest.len())
                .ok_or_else(|| err(format!("a string of {n} bytes runs past the entry")))?;
            let (s, tail) = rest.split_at(n);
            crc = crc32c::extend(crc, s);
            out.push(s.to_vec());
            rest = tail;
        }
        if !rest.is_empty() {
            return Err(err(format!(
                "{} bytes left over after the strings",
                rest.len()
            )));
        }
        check_crc(entry, crc).map_err(err)?;
        Ok(out)
    }

    /// The entry of `key` and its dims, which must be known and not partitioned.
    fn lookup(&self, key: &str) -> Result<(&BundleEntryProto, Vec<usize>), BundleError> {
        let err = |m: String| BundleError {
            file: self.index_path(),
            message: m,
        };
        let entry = self
            .entries
            .get(key)
            .ok_or_else(|| err(format!("the checkpoint has no variable {key:?}")))?;
        if !entry.slices.is_empty() {
            return Err(err(format!(
                "variable {key:?} is partitioned into {} slices, which is not supported",
                entry.slices.len()
            )));
        }
        let s = entry.shape.clone().unwrap_or_default();
        let dims = shape(&s, |_| Dim::Unknown)
            .ok()
            .and_then(|s| s.as_known())
            .ok_or_else(|| err(format!("variable {key:?} has an invalid or unknown shape")))?;
        Ok((entry, dims))
    }

    fn shard_path(&self, e: &BundleEntryProto) -> PathBuf {
        with_suffix(
            &self.prefix,
            &format!(".data-{:05}-of-{:05}", e.shard_id, self.num_shards),
        )
    }

    /// The entry's `size` bytes at `offset` of its shard, both checked against the shard's
    /// length before anything is allocated.
    fn read(&self, e: &BundleEntryProto, file: &Path) -> Result<Vec<u8>, String> {
        let mut bytes = vec![0; e.size as usize];
        self.open_at(e, file)?
            .read_exact(&mut bytes)
            .map_err(|err| format!("cannot read {} bytes at offset {}: {err}", e.size, e.offset))?;
        Ok(bytes)
    }

    /// The shard, positioned at the entry, limited to its `size` bytes; offset and size are
    /// checked against the shard's length first.
    fn open_at(&self, e: &BundleEntryProto, file: &Path) -> Result<std::io::Take<File>, String> {
        let mut f = File::open(file).map_err(|err| format!("cannot open the shard: {err}"))?;
        let len = f
            .metadata()
            .map_err(|err| format!("cannot read the shard: {err}"))?
            .len();
        let (offset, size) = (e.offset, e.size);
        let in_file = u64::try_from(offset)
            .ok()
            .zip(u64::try_from(size).ok())
            .and_then(|(o, s)| o.checked_add(s))
            .is_some_and(|end| end <= len);
        if !in_file {
            return Err(format!(
                "{size} bytes at offset {offset} run past the end of the shard ({len} bytes): \
                 the shard is truncated or the index corrupt"
            ));
        }
        f.seek(SeekFrom::Start(offset as u64))
            .map_err(|err| format!("cannot seek in the shard: {err}"))?;
        Ok(f.take(size as u64))
    }
}

fn check_crc(e: &BundleEntryProto, crc: u32) -> Result<(), String> {
    if crc32c::mask(crc) != e.crc32c {
        return Err(format!(
            "checksum mismatch (stored {:#010x}, computed {:#010x}): the shard is corrupt",
            e.crc32c,
            crc32c::mask(crc)
        ));
    }
    Ok(())
}

/// `prefix` with `suffix` appended to its last component.
fn with_suffix(prefix: &Path, suffix: &str) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests;
