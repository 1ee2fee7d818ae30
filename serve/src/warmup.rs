//! Warm-up on load: TensorFlow Serving's `assets.extra/tf_serving_warmup_requests`, a TFRecord
//! file of `PredictionLog`s, replayed against a version before it is marked available, so the
//! first clients do not pay for compiling the shapes they call with. A record that fails fails
//! the load, naming the file and the record, as TensorFlow Serving does.

use crate::servable::Servable;
use crate::tfs;
use lathe_compiler::import::tensorflow::bundle::crc32c;
use lathe_proto::tensorflow::serving::{prediction_log, PredictionLog};
use prost::Message as _;
use std::path::Path;

/// Where a version directory keeps its warm-up requests.
pub const WARMUP_FILE: &str = "assets.extra/tf_serving_warmup_requests";

/// The most records replayed (TensorFlow Serving's limit too).
pub const MAX_RECORDS: usize = 1000;

/// TFRecord's masked CRC-32C (LevelDB's mask, as checkpoints use).
fn masked_crc(data: &[u8]) -> u32 {
    crc32c::mask(crc32c::crc32c(data))
}

/// The records of a TFRecord file (each: length, its checksum, data, its checksum), checked.
pub fn read_records(bytes: &[u8]) -> Result<Vec<&[u8]>, String> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let k = records.len();
        let header = bytes
            .get(at..at + 12)
            .ok_or_else(|| format!("record {k} is truncated"))?;
        let len_bytes = &header[..8];
        let len = u64::from_le_bytes(len_bytes.try_into().expect("8 bytes"));
        if masked_crc(len_bytes) != u32::from_le_bytes(header[8..12].try_into().expect("4 bytes")) {
            return Err(format!("record {k}: the length's checksum does not match"));
        }
        let len = usize::try_from(len)
            .ok()
            .filter(|&l| l <= bytes.len() - at - 12);
        let len =
            len.ok_or_else(|| format!("record {k}: its length passes the end of the file"))?;
        let data = &bytes[at + 12..at + 12 + len];
        let crc = bytes
            .get(at + 12 + len..at + 16 + len)
            .ok_or_else(|| format!("record {k} is truncated"))?;
        if masked_crc(data) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(format!("record {k}: the data's checksum does not match"));
        }
        records.push(data);
        if records.len() > MAX_RECORDS {
            return Err(format!("more than {MAX_RECORDS} records"));
        }
        at += 16 + len;
    }
    Ok(records)
}

/// A TFRecord file of these records (to write warm-up files).
pub fn write_records(records: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        let len = (r.len() as u64).to_le_bytes();
        out.extend_from_slice(&len);
        out.extend_from_slice(&masked_crc(&len).to_le_bytes());
        out.extend_from_slice(r);
        out.extend_from_slice(&masked_crc(r).to_le_bytes());
    }
    out
}

/// Replays `dir`'s warm-up requests (if it has any) on `s`; returns how many ran.
pub fn replay(s: &Servable, dir: &Path, max_bytes: usize) -> Result<usize, String> {
    let path = dir.join(WARMUP_FILE);
    if !path.is_file() {
        return Ok(0);
    }
    let at = |e: String| format!("`{}`: {e}", path.display());
    let bytes = std::fs::read(&path).map_err(|e| at(e.to_string()))?;
    let records = read_records(&bytes).map_err(at)?;
    for (k, data) in records.iter().enumerate() {
        let log = PredictionLog::decode(*data)
            .map_err(|e| at(format!("record {k} is not a PredictionLog ({e})")))?;
        let inputs = match log.log_type {
            Some(prediction_log::LogType::PredictLog(p)) => {
                let req = p.request.unwrap_or_default();
                (req.inputs.iter())
                    .map(|(n, t)| {
                        Ok((
                            n.clone(),
                            crate::convert::from_tensor_proto(
                                &format!("input `{n}`"),
                                t,
                                max_bytes,
                            )?,
                        ))
                    })
                    .collect::<crate::error::Result<Vec<_>>>()
            }
            Some(prediction_log::LogType::ClassifyLog(c)) => {
                tfs::examples_to_inputs(s, c.request.unwrap_or_default().input.as_ref())
            }
            Some(prediction_log::LogType::RegressLog(r)) => {
                tfs::examples_to_inputs(s, r.request.unwrap_or_default().input.as_ref())
            }
            None => {
                return Err(at(format!(
                    "record {k} holds no request Lathe replays (Predict, Classify, Regress)"
                )))
            }
        };
        let inputs = inputs
            .and_then(|i| s.check_inputs(&i).map(|()| i))
            .map_err(|e| at(format!("record {k}: {e}")))?;
        s.run_now(inputs)
            .map_err(|e| at(format!("record {k}: {e}")))?;
    }
    Ok(records.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_and_damage_is_an_error() {
        let file = write_records(&[b"one".to_vec(), vec![], b"three".to_vec()]);
        let got = read_records(&file).unwrap();
        assert_eq!(got, vec![&b"one"[..], b"", b"three"]);
        let mut bad = file.clone();
        bad[13] ^= 1;
        assert!(read_records(&bad)
            .unwrap_err()
            .contains("record 0: the data's checksum"));
        assert!(read_records(&file[..file.len() - 2])
            .unwrap_err()
            .contains("record 2 is truncated"));
        let mut long = file.clone();
        long[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        let crc = masked_crc(&long[..8]).to_le_bytes();
        long[8..12].copy_from_slice(&crc);
        assert!(read_records(&long).unwrap_err().contains("passes the end"));
    }
}
