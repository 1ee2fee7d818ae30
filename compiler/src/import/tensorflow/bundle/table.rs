//! A reader of the sorted string table that holds a checkpoint's `variables.index`: LevelDB's
//! table format, which TensorFlow's `lib/io/table` reimplements byte for byte.
//!
//! ```text
//! file    := data block* , metaindex block , index block , footer
//! block   := entry* , restart: u32le* , num_restarts: u32le     then a 5-byte trailer:
//!            compression type (0: none) , masked CRC-32C of block + type byte: u32le
//! entry   := shared: varint32 , unshared: varint32 , value_len: varint32 ,
//!            key[shared..] (the first `shared` bytes are the previous key's) , value
//! footer  := metaindex handle , index handle (each: offset varint64 , size varint64),
//!            zero padding to 40 bytes , magic 0xdb4775248b80fb57: u64le
//! ```
//!
//! The index block's values are the handles of the data blocks, in key order. Every offset,
//! size and length read from the file is checked against what is there before it is used, and
//! every block's checksum is verified: a truncated or corrupted index is an error that says
//! what is wrong and where, never a panic or a read past the end.

use super::crc32c;

/// The footer's size and its magic number.
const FOOTER_LEN: usize = 48;
const MAGIC: u64 = 0xdb47_7524_8b80_fb57;
/// A block's trailer: compression type and masked checksum.
const TRAILER_LEN: usize = 5;

/// A key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Every `(key, value)` of the table in `file`, in the table's (sorted) order.
pub fn entries(file: &[u8]) -> Result<Vec<Entry>, String> {
    if file.len() < FOOTER_LEN {
        return Err(format!(
            "{} bytes is too short for a table (its footer alone is {FOOTER_LEN})",
            file.len()
        ));
    }
    let footer = &file[file.len() - FOOTER_LEN..];
    let magic = u64::from_le_bytes(footer[40..].try_into().expect("8 bytes"));
    if magic != MAGIC {
        return Err(format!(
            "not a table: the footer's magic number is {magic:#018x}, expected {MAGIC:#018x}"
        ));
    }
    let mut r = Reader::new(&footer[..40]);
    let _metaindex = r.handle("the footer's metaindex handle")?;
    let index = r.handle("the footer's index handle")?;
    let body = &file[..file.len() - FOOTER_LEN];
    let mut out = Vec::new();
    let mut last: Option<Vec<u8>> = None;
    for (_, handle) in block_entries(block(body, index, "the index block")?, "the index block")? {
        let mut r = Reader::new(&handle);
        let h = r.handle("an index entry's block handle")?;
        let what = format!("the data block at offset {}", h.0);
        for (k, v) in block_entries(block(body, h, &what)?, &what)? {
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(format!("{what}: keys are not in increasing order"));
            }
            last = Some(k.clone());
            out.push((k, v));
        }
    }
    Ok(out)
}

/// The contents of the block at `(offset, size)`, checksum verified, trailer removed.
fn block<'a>(body: &'a [u8], (offset, size): (u64, u64), what: &str) -> Result<&'a [u8], String> {
    let end = offset
        .checked_add(size)
        .and_then(|e| e.checked_add(TRAILER_LEN as u64))
        .filter(|&e| e <= body.len() as u64)
        .ok_or_else(|| {
            format!(
                "{what} (offset {offset}, {size} bytes and its trailer) runs past the end of the \
                 table's {} bytes",
                body.len()
            )
        })? as usize;
    let (start, data_end) = (offset as usize, end - TRAILER_LEN);
    let kind = body[data_end];
    let stored = u32::from_le_bytes(body[data_end + 1..end].try_into().expect("4 bytes"));
    let actual = crc32c::mask(crc32c::crc32c(&body[start..data_end + 1]));
    if stored != actual {
        return Err(format!(
            "{what}: checksum mismatch (stored {stored:#010x}, computed {actual:#010x}): the \
             file is corrupt"
        ));
    }
    if kind != 0 {
        return Err(format!(
            "{what} is compressed (type {kind}); only uncompressed tables are supported, as \
             TensorFlow writes them"
        ));
    }
    Ok(&body[start..data_end])
}

/// The entries of one block, keys rebuilt from their shared prefixes.
fn block_entries(block: &[u8], what: &str) -> Result<Vec<Entry>, String> {
    let bad = |m: &str| format!("{what}: {m}");
    if block.len() < 4 {
        return Err(bad("shorter than its restart count"));
    }
    let restarts = u32::from_le_bytes(block[block.len() - 4..].try_into().expect("4 bytes"));
    let restart_bytes = (restarts as usize)
        .checked_mul(4)
        .and_then(|n| n.checked_add(4))
        .filter(|&n| n <= block.len())
        .ok_or_else(|| {
            bad(&format!(
                "{restarts} restart points do not fit in the block"
            ))
        })?;
    let mut r = Reader::new(&block[..block.len() - restart_bytes]);
    let mut key: Vec<u8> = Vec::new();
    let mut out = Vec::new();
    while !r.done() {
        let shared = r
            .varint32("an entry's shared key length")
            .map_err(|e| bad(&e))? as usize;
        let unshared = r.varint32("an entry's key length").map_err(|e| bad(&e))? as usize;
        let value_len = r.varint32("an entry's value length").map_err(|e| bad(&e))? as usize;
        if shared > key.len() {
            return Err(bad(&format!(
                "an entry shares {shared} bytes with a previous key of {}",
                key.len()
            )));
        }
        key.truncate(shared);
        key.extend_from_slice(r.bytes(unshared, "an entry's key").map_err(|e| bad(&e))?);
        let value = r
            .bytes(value_len, "an entry's value")
            .map_err(|e| bad(&e))?;
        out.push((key.clone(), value.to_vec()));
    }
    Ok(out)
}

/// Reads varints and byte runs from a slice, never past its end.
pub(super) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Reader<'a> {
        Reader { data, pos: 0 }
    }

    fn done(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// Bytes not read yet.
    pub(super) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// A little-endian base-128 varint of at most 64 bits.
    pub(super) fn varint64(&mut self, what: &str) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self
                .data
                .get(self.pos)
                .ok_or_else(|| format!("{what} is cut off"))?;
            self.pos += 1;
            if shift == 63 && b > 1 {
                return Err(format!("{what} overflows 64 bits"));
            }
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(format!("{what} overflows 64 bits"))
    }

    fn varint32(&mut self, what: &str) -> Result<u32, String> {
        let v = self.varint64(what)?;
        u32::try_from(v).map_err(|_| format!("{what} ({v}) overflows 32 bits"))
    }

    /// A block handle: offset and size.
    fn handle(&mut self, what: &str) -> Result<(u64, u64), String> {
        Ok((self.varint64(what)?, self.varint64(what)?))
    }

    fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| {
                format!(
                    "{what} ({n} bytes) runs past the end of its block ({} bytes left)",
                    self.data.len() - self.pos
                )
            })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
}

/// Writes tables in the same format, for tests (of this reader and of the checkpoint reader).
#[cfg(test)]
pub(crate) mod write {
    use super::*;

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// Appends a block of `entries` (sorted), with restarts every `restart_every` entries, and
    /// its trailer; returns its handle.
    fn block(
        file: &mut Vec<u8>,
        entries: &[(Vec<u8>, Vec<u8>)],
        restart_every: usize,
    ) -> (u64, u64) {
        let start = file.len();
        let mut restarts = vec![];
        let mut prev: &[u8] = &[];
        for (i, (k, v)) in entries.iter().enumerate() {
            let shared = if i % restart_every == 0 {
                restarts.push((file.len() - start) as u32);
                0
            } else {
                prev.iter().zip(k).take_while(|(a, b)| a == b).count()
            };
            varint(file, shared as u64);
            varint(file, (k.len() - shared) as u64);
            varint(file, v.len() as u64);
            file.extend_from_slice(&k[shared..]);
            file.extend_from_slice(v);
            prev = k;
        }
        if restarts.is_empty() {
            restarts.push(0);
        }
        for r in &restarts {
            file.extend_from_slice(&r.to_le_bytes());
        }
        file.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        let size = (file.len() - start) as u64;
        file.push(0);
        let crc = crc32c::mask(crc32c::crc32c(&file[start..]));
        file.extend_from_slice(&crc.to_le_bytes());
        (start as u64, size)
    }

    /// A table of `entries` (sorted by key), `per_block` entries per data block.
    pub(crate) fn table(entries: &[Entry], per_block: usize) -> Vec<u8> {
        let mut file = vec![];
        let mut index = vec![];
        for chunk in entries.chunks(per_block.max(1)) {
            let (off, size) = block(&mut file, chunk, 3);
            let mut h = vec![];
            varint(&mut h, off);
            varint(&mut h, size);
            index.push((chunk.last().expect("non-empty chunk").0.clone(), h));
        }
        let meta = block(&mut file, &[], 1);
        let idx = block(&mut file, &index, 1);
        let mut footer = vec![];
        for v in [meta.0, meta.1, idx.0, idx.1] {
            varint(&mut footer, v);
        }
        footer.resize(40, 0);
        footer.extend_from_slice(&MAGIC.to_le_bytes());
        file.extend_from_slice(&footer);
        file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        let mut e: Vec<Entry> = (0..40)
            .map(|i| {
                (
                    format!("layer_{i:02}/kernel/.ATTRIBUTES/VARIABLE_VALUE").into_bytes(),
                    vec![i as u8; i % 7],
                )
            })
            .collect();
        e.insert(0, (vec![], b"header".to_vec()));
        e
    }

    #[test]
    fn reads_what_was_written() {
        let e = sample();
        for per_block in [1, 4, 100] {
            assert_eq!(entries(&write::table(&e, per_block)).unwrap(), e);
        }
        assert_eq!(entries(&write::table(&[], 4)).unwrap(), vec![]);
    }

    #[test]
    fn every_truncation_and_every_flipped_byte_is_an_error_or_a_clean_read() {
        let file = write::table(&sample(), 8);
        for len in 0..file.len() {
            assert!(entries(&file[..len]).is_err(), "truncated to {len} bytes");
        }
        // A flipped byte is caught by a checksum, the magic, or a bounds check; the footer's
        // padding is the one place a change goes unnoticed, and it must still read the same.
        for i in 0..file.len() {
            let mut f = file.clone();
            f[i] ^= 0x5a;
            if let Ok(e) = entries(&f) {
                assert_eq!(e, sample(), "flipped byte {i} changed what was read");
            }
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        let mut file = write::table(&sample(), 8);
        let e = entries(&file[..10]).unwrap_err();
        assert!(e.contains("too short"), "{e}");
        let n = file.len();
        file[n - 1] ^= 1;
        assert!(entries(&file).unwrap_err().contains("magic"));
        let mut file = write::table(&sample(), 8);
        file[3] ^= 1;
        let e = entries(&file).unwrap_err();
        assert!(
            e.contains("checksum mismatch") && e.contains("offset 0"),
            "{e}"
        );
    }
}
