//! The artifact's container: a header, a table of named sections, the sections, a checksum of
//! the header and table, and one per section. Nothing here knows what the sections hold.
//!
//! ```text
//! offset  size  field
//!      0     8  magic: 89 'L' 'A' 'T' 'H' 'E' 0D 0A (a text-mode copy or a truncated
//!               download is caught at once)
//!      8     4  format version, u32 little-endian
//!     12     4  number of sections, u32
//!     16     8  length of the whole file, u64 (a truncated file is refused before anything)
//!     24     4  CRC-32 (IEEE) of the header (but these four bytes) and the section table
//!     28    36  zero
//!     64  64·n  section table: per section a name (44 bytes, UTF-8, zero-padded), the CRC-32
//!               of its bytes (u32), its offset and its length (u64 each)
//!      …        the sections, each starting at a multiple of 64 bytes (weights are read
//!               aligned, and can be mapped in place)
//! ```
//!
//! Reading checks every size against the file before using it, the header's checksum when the
//! file is opened, and a section's checksum each time the section is read, so a mapped file's
//! sections that a load does not use (the graphs' weights, when plans are loaded) are never
//! touched. A corrupted or truncated file is an [`ArtifactError`], never a panic or an
//! allocation its bytes ask for.

use super::ArtifactError;

/// The first eight bytes of every artifact.
pub const MAGIC: [u8; 8] = *b"\x89LATHE\r\n";
/// Bytes of the header, and the alignment of every section.
pub const ALIGN: usize = 64;
/// Bytes of one section table entry.
const ENTRY: usize = 64;
/// Bytes of a section name, at most.
const NAME: usize = 44;
/// Sections an artifact may have, at most (a corrupted count is refused before it sizes
/// anything).
const MAX_SECTIONS: usize = 4096;

/// Whether `bytes` starts like an artifact (for telling formats apart by content).
pub fn is_artifact(bytes: &[u8]) -> bool {
    bytes.starts_with(&MAGIC)
}

/// Whether the file at `path` starts like an artifact (an unreadable one does not).
pub fn is_artifact_file(path: &std::path::Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; MAGIC.len()];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok_and(|()| is_artifact(&head))
}

/// Sections to write, in order.
#[derive(Default)]
pub struct Writer {
    sections: Vec<(String, Vec<u8>)>,
}

impl Writer {
    /// Adds a section (names are at most 48 bytes; the artifact writer picks them).
    pub fn section(&mut self, name: impl Into<String>, bytes: Vec<u8>) {
        let name = name.into();
        assert!(name.len() <= NAME, "section name `{name}` is too long");
        self.sections.push((name, bytes));
    }

    /// The file: header, table, sections, checksummed.
    pub fn finish(self, version: u32) -> Vec<u8> {
        let table_end = ALIGN + ENTRY * self.sections.len();
        let mut offset = align(table_end);
        let mut places = Vec::with_capacity(self.sections.len());
        for (_, bytes) in &self.sections {
            places.push(offset);
            offset = align(offset + bytes.len());
        }
        let total = offset;
        let mut out = vec![0u8; total];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&version.to_le_bytes());
        out[12..16].copy_from_slice(&(self.sections.len() as u32).to_le_bytes());
        out[16..24].copy_from_slice(&(total as u64).to_le_bytes());
        for (i, ((name, bytes), &at)) in self.sections.iter().zip(&places).enumerate() {
            let e = ALIGN + ENTRY * i;
            out[e..e + name.len()].copy_from_slice(name.as_bytes());
            out[e + NAME..e + NAME + 4].copy_from_slice(&crc32fast::hash(bytes).to_le_bytes());
            out[e + NAME + 4..e + NAME + 12].copy_from_slice(&(at as u64).to_le_bytes());
            out[e + NAME + 12..e + ENTRY].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
            out[at..at + bytes.len()].copy_from_slice(bytes);
        }
        let crc = checksum(&out[..table_end]);
        out[24..28].copy_from_slice(&crc.to_le_bytes());
        out
    }
}

/// The CRC-32 of the header and table, `head`, but the checksum's own four bytes.
fn checksum(head: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&head[..24]);
    h.update(&head[28..]);
    h.finalize()
}

/// `n` rounded up to a multiple of [`ALIGN`].
fn align(n: usize) -> usize {
    n.div_ceil(ALIGN) * ALIGN
}

/// The CRC-32 of `bytes`, computed in pieces on several threads when they are many (a
/// section of packed weights is most of a load's time otherwise: ~20 ms for resnet50's).
fn parallel_crc(bytes: &[u8]) -> u32 {
    const PIECE: usize = 8 << 20;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(8));
    if threads < 2 || bytes.len() < 2 * PIECE {
        return crc32fast::hash(bytes);
    }
    let per = bytes.len().div_ceil(threads).max(PIECE);
    let hashers: Vec<crc32fast::Hasher> = std::thread::scope(|s| {
        let handles: Vec<_> = (bytes.chunks(per))
            .map(|piece| {
                s.spawn(move || {
                    let mut h = crc32fast::Hasher::new();
                    h.update(piece);
                    h
                })
            })
            .collect();
        (handles.into_iter())
            .map(|h| h.join().expect("a checksum thread does not panic"))
            .collect()
    });
    let mut all = crc32fast::Hasher::new();
    for h in &hashers {
        all.combine(h);
    }
    all.finalize()
}

/// One section: its name, bytes and the checksum its bytes must have.
#[derive(Clone, Copy, Debug)]
pub struct Section<'a> {
    pub name: &'a str,
    bytes: &'a [u8],
    crc: u32,
}

impl<'a> Section<'a> {
    /// Section `name`, whose `bytes` must have checksum `crc`.
    pub(crate) fn at(name: &'a str, bytes: &'a [u8], crc: u32) -> Section<'a> {
        Section { name, bytes, crc }
    }

    /// Its bytes, once their checksum is found right (computed on each call).
    pub fn read(&self) -> Result<&'a [u8], ArtifactError> {
        let _span = tracing::debug_span!(
            "artifact.checksum",
            section = self.name,
            bytes = self.bytes.len()
        )
        .entered();
        let crc = parallel_crc(self.bytes);
        if crc != self.crc {
            return Err(ArtifactError::Corrupt(format!(
                "section `{}`'s checksum is {crc:08x}, its table says {:08x}: the file is damaged",
                self.name, self.crc
            )));
        }
        Ok(self.bytes)
    }

    /// The checksum its bytes must have.
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Its bytes, unchecked (for their place and size only).
    pub fn unchecked(&self) -> &'a [u8] {
        self.bytes
    }
}

/// An artifact's sections, their places checked, borrowed from its bytes.
#[derive(Debug)]
pub struct Sections<'a> {
    sections: Vec<Section<'a>>,
}

impl<'a> Sections<'a> {
    /// Checks `bytes` (magic, format `version` — before anything a later format may lay out
    /// differently —, length, checksum, table) and finds its sections.
    pub fn parse(bytes: &'a [u8], version: u32) -> Result<Sections<'a>, ArtifactError> {
        let bad = |m: String| Err(ArtifactError::Corrupt(m));
        if !is_artifact(bytes) {
            return bad("it does not start with a Lathe artifact's magic bytes".into());
        }
        if bytes.len() < ALIGN {
            return bad(format!(
                "it is {} bytes, shorter than the header",
                bytes.len()
            ));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        if u32_at(8) != version {
            return Err(ArtifactError::Version {
                found: u32_at(8),
                expected: version,
            });
        }
        let count = u32_at(12) as usize;
        let total = u64_at(16);
        if total != bytes.len() as u64 {
            return bad(format!(
                "it is {} bytes but its header says {total} (truncated, or not copied whole)",
                bytes.len()
            ));
        }
        if count > MAX_SECTIONS || ALIGN + ENTRY * count > bytes.len() {
            return bad(format!(
                "its header lists {count} sections, more than the file holds"
            ));
        }
        let crc = checksum(&bytes[..ALIGN + ENTRY * count]);
        if crc != u32_at(24) {
            return bad(format!(
                "its header's checksum is {crc:08x}, the header says {:08x}: the file is damaged",
                u32_at(24)
            ));
        }
        let mut sections = Vec::with_capacity(count);
        for i in 0..count {
            let e = ALIGN + ENTRY * i;
            let raw = &bytes[e..e + NAME];
            let len = raw.iter().position(|&b| b == 0).unwrap_or(NAME);
            let Ok(name) = std::str::from_utf8(&raw[..len]) else {
                return bad(format!("section {i} has a name that is not UTF-8"));
            };
            let crc = u32_at(e + NAME);
            let (at, size) = (u64_at(e + NAME + 4), u64_at(e + NAME + 12));
            let end = at.checked_add(size).filter(|&end| end <= total);
            let Some(end) = end else {
                return bad(format!(
                    "section `{name}` ({size} bytes at {at}) runs past the end of the file"
                ));
            };
            sections.push(Section {
                name,
                bytes: &bytes[at as usize..end as usize],
                crc,
            });
        }
        Ok(Sections { sections })
    }

    /// The section named `name`, if the file has it (its checksum not checked yet).
    pub fn get(&self, name: &str) -> Option<Section<'a>> {
        self.sections.iter().find(|s| s.name == name).copied()
    }

    /// The bytes of the section named `name`, checked, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&'a [u8], ArtifactError> {
        self.get(name)
            .ok_or_else(|| ArtifactError::Corrupt(format!("it has no `{name}` section")))?
            .read()
    }

    /// The sections, in order.
    pub fn iter(&self) -> impl Iterator<Item = Section<'a>> + '_ {
        self.sections.iter().copied()
    }

    /// The sections' names, in order.
    #[cfg(test)]
    pub(crate) fn names(&self) -> Vec<&'a str> {
        self.sections.iter().map(|s| s.name).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file() -> Vec<u8> {
        let mut w = Writer::default();
        w.section("meta", b"{}".to_vec());
        w.section("weights", vec![7u8; 100]);
        w.finish(1)
    }

    #[test]
    fn the_checksum_in_pieces_is_the_checksum() {
        // Lengths around the piece size and the thread split, with a ragged tail.
        for len in [0, 1, 16 << 20, (16 << 20) + 1, (37 << 20) + 5] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + i / 4099) as u8).collect();
            assert_eq!(parallel_crc(&bytes), crc32fast::hash(&bytes), "{len} bytes");
        }
    }

    #[test]
    fn sections_come_back_aligned() {
        let bytes = file();
        assert_eq!(bytes.len() % ALIGN, 0);
        let s = Sections::parse(&bytes, 1).unwrap();
        let e = Sections::parse(&bytes, 2).unwrap_err().to_string();
        assert!(
            e.contains("format version 1") && e.contains("reads version 2"),
            "{e}"
        );
        assert_eq!(s.names(), vec!["meta", "weights"]);
        assert_eq!(s.require("meta").unwrap(), &b"{}"[..]);
        let w = s.require("weights").unwrap();
        assert_eq!(w, &[7u8; 100][..]);
        assert_eq!((w.as_ptr() as usize - bytes.as_ptr() as usize) % ALIGN, 0);
        assert!(s
            .require("nope")
            .unwrap_err()
            .to_string()
            .contains("no `nope` section"));
    }

    #[test]
    fn truncated_and_damaged_files_are_errors() {
        let bytes = file();
        for cut in [0, 7, 8, 63, 64, bytes.len() - 1] {
            let e = Sections::parse(&bytes[..cut], 1).unwrap_err().to_string();
            assert!(
                e.contains("magic") || e.contains("shorter") || e.contains("truncated"),
                "cut at {cut}: {e}"
            );
        }
        // Every single flipped bit is caught: the header's own fields by their checks, the
        // table by the header's checksum, a section's bytes by its own when it is read. (The
        // padding between sections is never read.)
        let s = Sections::parse(&bytes, 1).unwrap();
        let base = bytes.as_ptr() as usize;
        let read: Vec<std::ops::Range<usize>> = (s.iter())
            .map(|sec| {
                let at = sec.unchecked().as_ptr() as usize - base;
                at..at + sec.unchecked().len()
            })
            .collect();
        let head = ALIGN + ENTRY * read.len();
        for at in (0..bytes.len()).filter(|&a| a < head || read.iter().any(|r| r.contains(&a))) {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[at] ^= 1 << bit;
                let caught = match Sections::parse(&b, 1) {
                    Err(_) => true,
                    Ok(s) => s.iter().any(|sec| sec.read().is_err()),
                };
                assert!(caught, "flipping bit {bit} of byte {at} went unnoticed");
            }
        }
    }
}
