use super::*;
use lathe_proto::tensorflow::{tensor_shape_proto, TensorShapeProto};

/// A checkpoint written by hand, as TensorFlow's BundleWriter lays it out.
struct Fixture {
    dir: PathBuf,
    index: Vec<(Vec<u8>, Vec<u8>)>,
    shard: Vec<u8>,
}

fn shape_proto(dims: &[i64]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .iter()
            .map(|&size| tensor_shape_proto::Dim {
                size,
                ..Default::default()
            })
            .collect(),
        unknown_rank: false,
    }
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("lathe-bundle-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let header = BundleHeaderProto {
            num_shards: 1,
            ..Default::default()
        };
        Fixture {
            dir,
            index: vec![(vec![], header.encode_to_vec())],
            shard: vec![],
        }
    }

    fn add(&mut self, key: &str, dt: DataType, dims: &[i64], bytes: &[u8], crc: u32) {
        let e = BundleEntryProto {
            dtype: dt as i32,
            shape: Some(shape_proto(dims)),
            shard_id: 0,
            offset: self.shard.len() as i64,
            size: bytes.len() as i64,
            crc32c: crc32c::mask(crc),
            slices: vec![],
        };
        self.shard.extend_from_slice(bytes);
        self.index
            .push((key.as_bytes().to_vec(), e.encode_to_vec()));
    }

    fn add_f32(&mut self, key: &str, dims: &[i64], v: &[f32]) {
        let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.add(key, DataType::DtFloat, dims, &bytes, crc32c::crc32c(&bytes));
    }

    fn add_strings(&mut self, key: &str, v: &[&[u8]]) {
        let (mut bytes, mut crc) = (vec![], 0);
        for s in v {
            let mut n = s.len() as u64;
            while n >= 0x80 {
                bytes.push(n as u8 | 0x80);
                n >>= 7;
            }
            bytes.push(n as u8);
            crc = crc32c::extend(crc, &(s.len() as u32).to_le_bytes());
        }
        let masked = crc32c::mask(crc).to_le_bytes();
        bytes.extend_from_slice(&masked);
        crc = crc32c::extend(crc, &masked);
        for s in v {
            bytes.extend_from_slice(s);
            crc = crc32c::extend(crc, s);
        }
        self.add(key, DataType::DtString, &[v.len() as i64], &bytes, crc);
    }

    /// Writes the files; returns the prefix.
    fn write(&mut self) -> PathBuf {
        self.index.sort();
        let prefix = self.dir.join("variables");
        std::fs::write(
            with_suffix(&prefix, ".index"),
            table::write::table(&self.index, 2),
        )
        .unwrap();
        std::fs::write(with_suffix(&prefix, ".data-00000-of-00001"), &self.shard).unwrap();
        prefix
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn sample(name: &str) -> (Fixture, PathBuf) {
    let mut f = Fixture::new(name);
    f.add_f32("dense/kernel", &[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.5]);
    f.add_f32("dense/bias", &[3], &[-1.0, 0.0, 1.0]);
    let i: Vec<u8> = [7i64, -8].iter().flat_map(|x| x.to_le_bytes()).collect();
    f.add("step", DataType::DtInt64, &[2], &i, crc32c::crc32c(&i));
    f.add_strings("names", &[b"alpha", b"", &[0xffu8; 200]]);
    let prefix = f.write();
    (f, prefix)
}

#[test]
fn reads_tensors_and_strings() {
    let (_f, prefix) = sample("read");
    let b = Bundle::open(&prefix).unwrap();
    assert_eq!(
        b.keys().collect::<Vec<_>>(),
        ["dense/bias", "dense/kernel", "names", "step"]
    );
    let k = b.tensor("dense/kernel").unwrap();
    assert_eq!(k.shape(), &[2, 3]);
    assert_eq!(
        k.as_array::<f32>()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.5]
    );
    let s = b.tensor("step").unwrap();
    assert_eq!(
        s.as_array::<i64>()
            .unwrap()
            .iter()
            .copied()
            .collect::<Vec<_>>(),
        [7, -8]
    );
    assert_eq!(
        b.strings("names").unwrap(),
        vec![b"alpha".to_vec(), vec![], vec![0xff; 200]]
    );
}

#[test]
fn errors_name_the_file_and_the_variable() {
    let (f, prefix) = sample("errors");
    let b = Bundle::open(&prefix).unwrap();
    let e = b.tensor("missing").unwrap_err();
    assert!(e.file.ends_with("variables.index"), "{e}");
    assert!(e.message.contains("no variable \"missing\""), "{e}");
    let e = b.strings("dense/bias").unwrap_err();
    assert!(e.message.contains("expected strings"), "{e}");
    let e = b.tensor("names").unwrap_err();
    assert!(e.message.contains("string tensor"), "{e}");

    // A flipped bit in the shard: the checksum of the tensor holding it says so.
    let shard = with_suffix(&prefix, ".data-00000-of-00001");
    let mut bytes = std::fs::read(&shard).unwrap();
    bytes[24 + 5] ^= 4; // dense/bias follows the 24 bytes of dense/kernel
    std::fs::write(&shard, &bytes).unwrap();
    let e = b.tensor("dense/bias").unwrap_err();
    assert!(e.file.ends_with("variables.data-00000-of-00001"), "{e}");
    assert!(e.to_string().contains("checksum mismatch"), "{e}");
    assert!(e.to_string().contains("dense/bias"), "{e}");

    // A truncated shard: the size is checked against the file before reading.
    std::fs::write(&shard, &bytes[..30]).unwrap();
    let e = b.tensor("step").unwrap_err();
    assert!(e.message.contains("run past the end of the shard"), "{e}");

    // A missing shard and a missing index.
    std::fs::remove_file(&shard).unwrap();
    let e = b.tensor("step").unwrap_err();
    assert!(e.message.contains("cannot open the shard"), "{e}");
    let e = Bundle::open(&f.dir.join("nothing")).unwrap_err();
    assert!(e.message.contains("cannot read"), "{e}");
}

#[test]
fn sizes_from_the_index_are_checked_before_they_are_trusted() {
    let mut f = Fixture::new("sizes");
    // An entry whose shape needs far more bytes than its size says.
    let e = BundleEntryProto {
        dtype: DataType::DtFloat as i32,
        shape: Some(shape_proto(&[1 << 40, 1 << 30])),
        size: 16,
        ..Default::default()
    };
    f.index.push((b"huge".to_vec(), e.encode_to_vec()));
    // Strings: more elements than bytes.
    let e = BundleEntryProto {
        dtype: DataType::DtString as i32,
        shape: Some(shape_proto(&[1 << 50])),
        size: 8,
        ..Default::default()
    };
    f.index.push((b"many".to_vec(), e.encode_to_vec()));
    // A size past the end of the shard.
    let e = BundleEntryProto {
        dtype: DataType::DtUint8 as i32,
        shape: Some(shape_proto(&[1 << 40])),
        size: 1 << 40,
        ..Default::default()
    };
    f.index.push((b"past".to_vec(), e.encode_to_vec()));
    let prefix = f.write();
    let b = Bundle::open(&prefix).unwrap();
    let e = b.tensor("huge").unwrap_err();
    assert!(e.message.contains("overflows"), "{e}");
    let e = b.strings("many").unwrap_err();
    assert!(e.message.contains("cannot fit"), "{e}");
    let e = b.tensor("past").unwrap_err();
    assert!(e.message.contains("run past the end"), "{e}");
}

#[test]
fn rejects_bad_headers() {
    for (name, header, want) in [
        (
            "big",
            BundleHeaderProto {
                num_shards: 1,
                endianness: Endianness::Big as i32,
                version: None,
            },
            "big-endian",
        ),
        (
            "shards",
            BundleHeaderProto {
                num_shards: 0,
                ..Default::default()
            },
            "0 shards",
        ),
    ] {
        let mut f = Fixture::new(name);
        f.index[0].1 = header.encode_to_vec();
        let e = Bundle::open(&f.write()).unwrap_err();
        assert!(e.message.contains(want), "{e}");
    }
    let mut f = Fixture::new("noheader");
    f.index.clear();
    f.add_f32("v", &[1], &[1.0]);
    let e = Bundle::open(&f.write()).unwrap_err();
    assert!(e.message.contains("header"), "{e}");
}
