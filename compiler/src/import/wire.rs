//! Protobuf's wire format, read by hand, for the importers that stream their files
//! (`tensorflow/stream.rs`, `onnx/stream.rs`).
//!
//! A model file is nearly all weights. Decoding it as one message holds every weight twice
//! (the file's bytes and the message); a [`Walker`] instead reads a message one field at a
//! time, so that a caller can descend into a nested message without reading it whole
//! ([`Walker::enter`]), decode each large field from its own bytes and let it go before the
//! next is read, and keep the other fields as re-encoded bytes ([`Walker::keep`]) to decode at
//! the end. Every length read from the input is checked against what remains of the message
//! that holds it before anything is allocated.

use super::ImportError;
use prost::encoding::encode_varint;
use std::io::{self, Read};
use std::path::Path;

/// Protobuf wire types.
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
pub const LENGTH_DELIMITED: u8 = 2;
const FIXED32: u8 = 5;

/// Why a walk stopped: the input is not the message it should be, or reading it failed.
#[derive(Debug)]
pub enum Fault {
    Invalid(String),
    Io(io::Error),
}

impl Fault {
    /// The import error for the file at `path`, which should have been a `kind` (`"ONNX
    /// model"`): "not a valid `kind` (why)", or the read failure.
    pub fn error(self, path: &Path, kind: &str) -> ImportError {
        match self {
            Fault::Invalid(m) => invalid(path, kind, m),
            Fault::Io(e) => ImportError::file(path, e.to_string()),
        }
    }
}

/// The error for the file at `path`, which is not a valid `kind` for the reason `why`.
pub fn invalid(path: &Path, kind: &str, why: impl std::fmt::Display) -> ImportError {
    ImportError::file(path, format!("not a valid {kind} ({why})"))
}

/// One field's key: the offset it starts at, its field number and its wire type.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Key {
    pub at: u64,
    pub field: u64,
    pub wire_type: u8,
}

impl Key {
    /// Fails unless the field is length-delimited (a message, string or bytes); `name` is
    /// what the schema calls the field.
    pub fn expect_length_delimited(&self, name: &str) -> Result<(), Fault> {
        if self.wire_type == LENGTH_DELIMITED {
            return Ok(());
        }
        Err(Fault::Invalid(format!(
            "at byte {}: field {} ({name}) has wire type {}, not 2 (length-delimited)",
            self.at, self.field, self.wire_type
        )))
    }
}

/// The message a walk was in before [`Walker::enter`]: given back to [`Walker::leave`].
#[must_use = "the enclosing message is restored by `Walker::leave`"]
pub struct Scope {
    end: u64,
    name: Option<String>,
}

/// A reader of protobuf's wire format that knows how much of the input, and of the message
/// being read, remains.
pub struct Walker<R> {
    /// The input, limited to its stated length: what remains of it is `reader.limit()`.
    reader: io::Take<R>,
    len: u64,
    /// The offset at which the message being read ends; at the top level, none (`u64::MAX`):
    /// the input's end.
    end: u64,
    /// What errors call the message being read; `None` at the top level ("the file").
    name: Option<String>,
}

impl<R: Read> Walker<R> {
    /// A walker over the `len` bytes `reader` yields, at the top-level message.
    pub fn new(reader: R, len: u64) -> Walker<R> {
        Walker {
            reader: reader.take(len),
            len,
            end: u64::MAX,
            name: None,
        }
    }

    /// The offset of the next byte.
    pub fn at(&self) -> u64 {
        self.len - self.reader.limit()
    }

    /// How many bytes remain of the message being read, or of the file where it ends first,
    /// and what errors call the one that ends first.
    fn remaining(&self) -> (u64, &str) {
        let at = self.at();
        let file = self.len - at;
        match &self.name {
            Some(name) if self.end - at <= file => (self.end - at, name),
            _ => (file, "the file"),
        }
    }

    /// Fills `buf`; running out of the message or the input is a fault naming `what` was
    /// being read and the byte `at` which it starts.
    fn exact(&mut self, buf: &mut [u8], what: &str, at: u64) -> Result<(), Fault> {
        let ends = |scope: &str| {
            Fault::Invalid(format!(
                "{scope} ends inside {what}, which starts at byte {at}"
            ))
        };
        let (remaining, scope) = self.remaining();
        if buf.len() as u64 > remaining {
            return Err(ends(scope));
        }
        self.reader.read_exact(buf).map_err(|e| match e.kind() {
            io::ErrorKind::UnexpectedEof => ends("the file"),
            _ => Fault::Io(e),
        })
    }

    /// The next key of the message being read; `None` at its end.
    pub fn key(&mut self) -> Result<Option<Key>, Fault> {
        let at = self.at();
        if at >= self.end {
            return Ok(None);
        }
        let mut first = [0u8; 1];
        loop {
            match self.reader.read(&mut first) {
                Ok(0) if self.name.is_none() => return Ok(None),
                Ok(0) => {
                    let name = self.name.as_deref().unwrap_or_default();
                    return Err(Fault::Invalid(format!("the file ends inside {name}")));
                }
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Fault::Io(e)),
            }
        }
        let key = self.varint_from(first[0], at, "a field key")?;
        let field = key >> 3;
        if key > u64::from(u32::MAX) || field == 0 {
            return Err(Fault::Invalid(format!(
                "at byte {at}: {key} is not a valid field key"
            )));
        }
        Ok(Some(Key {
            at,
            field,
            wire_type: (key & 7) as u8,
        }))
    }

    /// A varint; `what` names it in errors.
    pub fn varint(&mut self, what: &str) -> Result<u64, Fault> {
        let at = self.at();
        let mut first = [0u8; 1];
        self.exact(&mut first, what, at)?;
        self.varint_from(first[0], at, what)
    }

    /// The rest of a varint starting at byte `at` whose first byte is `first`.
    fn varint_from(&mut self, first: u8, at: u64, what: &str) -> Result<u64, Fault> {
        let mut value = u64::from(first & 0x7f);
        let mut byte = first;
        let mut shift = 0;
        while byte & 0x80 != 0 {
            shift += 7;
            let mut next = [0u8; 1];
            self.exact(&mut next, what, at)?;
            byte = next[0];
            // The tenth byte holds bit 63 only.
            if shift == 63 && byte > 1 {
                return Err(Fault::Invalid(format!(
                    "at byte {at}: {what} does not fit in 64 bits"
                )));
            }
            value |= u64::from(byte & 0x7f) << shift;
        }
        Ok(value)
    }

    /// The length of the length-delimited field `what` whose key starts at byte `at`, checked
    /// against what remains of the message being read.
    fn length(&mut self, at: u64, what: &str) -> Result<u64, Fault> {
        let n = self.varint(&format!("the length of {what}"))?;
        let (remaining, scope) = self.remaining();
        if n > remaining {
            return Err(Fault::Invalid(format!(
                "{what} at byte {at} is {n} bytes long, but only {remaining} bytes of {scope} \
                 remain"
            )));
        }
        Ok(n)
    }

    /// The payload of the length-delimited field `what` whose key starts at byte `at`. Its
    /// length is checked against what remains before any memory is set aside for it.
    pub fn length_delimited(&mut self, at: u64, what: &str) -> Result<Vec<u8>, Fault> {
        let n = self.length(at, what)?;
        // Only on a 32-bit machine can a length that fits in the input not fit in memory.
        let n = usize::try_from(n)
            .map_err(|_| Fault::Invalid(format!("{what} at byte {at} is too long ({n} bytes)")))?;
        let mut bytes = vec![0u8; n];
        self.exact(&mut bytes, what, at)?;
        Ok(bytes)
    }

    /// Reads past the length-delimited field `what` whose key starts at byte `at`, holding
    /// none of it.
    pub fn skip(&mut self, at: u64, what: &str) -> Result<(), Fault> {
        let n = self.length(at, what)?;
        let skipped =
            io::copy(&mut (&mut self.reader).take(n), &mut io::sink()).map_err(Fault::Io)?;
        if skipped < n {
            return Err(Fault::Invalid(format!(
                "the file ends inside {what}, which starts at byte {at}"
            )));
        }
        Ok(())
    }

    /// Descends into the length-delimited field whose key starts at byte `at`, a message that
    /// errors call `name`: until [`Walker::leave`], [`Walker::key`] reads its fields and ends
    /// where it ends. Its length is checked against the message that holds it; against the
    /// file, only as it is read, so that a file cut short is an error naming the innermost
    /// field it cuts.
    pub fn enter(&mut self, at: u64, name: &str) -> Result<Scope, Fault> {
        let n = self.varint(&format!("the length of {name}"))?;
        let start = self.at();
        if let Some(outer) = &self.name {
            let left = self.end - start;
            if n > left {
                return Err(Fault::Invalid(format!(
                    "{name} at byte {at} is {n} bytes long, but only {left} bytes of {outer} \
                     remain"
                )));
            }
        }
        let outer = Scope {
            end: self.end,
            name: self.name.replace(format!("{name} at byte {at}")),
        };
        self.end = start.saturating_add(n);
        Ok(outer)
    }

    /// Returns to the message `enter` left; the nested one must have been read to its end
    /// (until [`Walker::key`] gave `None`).
    pub fn leave(&mut self, outer: Scope) {
        debug_assert_eq!(self.at(), self.end, "left a message before its end");
        self.end = outer.end;
        self.name = outer.name;
    }

    /// Reads the field whose key is `key` and appends it, key and payload, to `out`: bytes
    /// that decode to the same field.
    pub fn keep(&mut self, key: Key, out: &mut Vec<u8>) -> Result<(), Fault> {
        let Key {
            at,
            field,
            wire_type,
        } = key;
        let what = format!("field {field}");
        match wire_type {
            VARINT => {
                let v = self.varint(&what)?;
                encode_varint(field << 3 | u64::from(wire_type), out);
                encode_varint(v, out);
            }
            FIXED64 | FIXED32 => {
                let n = if wire_type == FIXED64 { 8 } else { 4 };
                let mut v = [0u8; 8];
                self.exact(&mut v[..n], &what, at)?;
                encode_varint(field << 3 | u64::from(wire_type), out);
                out.extend_from_slice(&v[..n]);
            }
            LENGTH_DELIMITED => {
                let bytes = self.length_delimited(at, &what)?;
                put_length_delimited(field, &bytes, out);
            }
            other => {
                return Err(Fault::Invalid(format!(
                    "at byte {at}: field {field} has wire type {other}, which is none of 0 \
                     (varint), 1 (fixed64), 2 (length-delimited) and 5 (fixed32)"
                )))
            }
        }
        Ok(())
    }
}

/// Appends a length-delimited field, key and payload, to `out`.
pub fn put_length_delimited(field: u64, payload: &[u8], out: &mut Vec<u8>) {
    encode_varint(field << 3 | u64::from(LENGTH_DELIMITED), out);
    encode_varint(payload.len() as u64, out);
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field of the message `bytes`, with the first field-1 message entered as `outer`:
    /// `(the outer message's fields re-encoded, the top level's)`.
    fn walk(bytes: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
        let text = |f: Fault| match f {
            Fault::Invalid(m) => m,
            Fault::Io(e) => e.to_string(),
        };
        let mut w = Walker::new(bytes, bytes.len() as u64);
        let (mut inner, mut top) = (Vec::new(), Vec::new());
        while let Some(key) = w.key().map_err(text)? {
            if key.field != 1 || key.wire_type != LENGTH_DELIMITED {
                w.keep(key, &mut top).map_err(text)?;
                continue;
            }
            let outer = w.enter(key.at, "outer").map_err(text)?;
            while let Some(key) = w.key().map_err(text)? {
                match key.field {
                    1 => {
                        let scope = w.enter(key.at, "inner").map_err(text)?;
                        while let Some(key) = w.key().map_err(text)? {
                            w.keep(key, &mut Vec::new()).map_err(text)?;
                        }
                        w.leave(scope);
                    }
                    3 => w.skip(key.at, "field 3").map_err(text)?,
                    _ => w.keep(key, &mut inner).map_err(text)?,
                }
            }
            w.leave(outer);
        }
        Ok((inner, top))
    }

    #[test]
    fn a_nested_message_is_walked_in_place() {
        // Field 1 { field 2 = 5, field 3 = "ab" (skipped), field 4 = fixed32 }, field 2 = 7.
        let bytes = [
            0x0a, 11, 0x10, 5, 0x1a, 2, b'a', b'b', 0x25, 1, 2, 3, 4, 0x10, 7,
        ];
        let (inner, top) = walk(&bytes).unwrap();
        assert_eq!(inner, [0x10, 5, 0x25, 1, 2, 3, 4]);
        assert_eq!(top, [0x10, 7]);
    }

    #[test]
    fn lengths_are_checked_against_the_message_that_holds_them() {
        // An inner message longer than the outer one that holds it.
        assert_eq!(
            walk(&[0x0a, 2, 0x0a, 5, 0, 0, 0, 0, 0]).unwrap_err(),
            "inner at byte 2 is 5 bytes long, but only 0 bytes of outer at byte 0 remain"
        );
        // A skipped field longer than its message, and one cut by the end of the file.
        assert_eq!(
            walk(&[0x0a, 2, 0x1a, 5, 0, 0, 0, 0, 0]).unwrap_err(),
            "field 3 at byte 2 is 5 bytes long, but only 0 bytes of outer at byte 0 remain"
        );
        assert_eq!(
            walk(&[0x0a, 9, 0x1a, 5, 0]).unwrap_err(),
            "field 3 at byte 2 is 5 bytes long, but only 1 bytes of the file remain"
        );
        // A fixed-size field that runs past the end of its message.
        assert_eq!(
            walk(&[0x0a, 3, 0x25, 1, 2, 3, 4]).unwrap_err(),
            "outer at byte 0 ends inside field 4, which starts at byte 2"
        );
        // An outer message the file ends inside of, between its fields.
        assert_eq!(
            walk(&[0x0a, 9, 0x10, 5]).unwrap_err(),
            "the file ends inside outer at byte 0"
        );
    }
}
