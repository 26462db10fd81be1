//! Unit tests of the checkpoint reader: the table format on tables written here (restart
//! points, shared key prefixes, snappy blocks, damaged bytes), crc32c masking, and a small
//! checkpoint that TensorFlow 2.21 wrote (`tests/data/tfckpt/`).

use super::sstable::*;
use super::*;

/// A LevelDB-format table writer, as TensorFlow's `table::TableBuilder` writes them.
struct TableWriter {
    out: Vec<u8>,
    restart_interval: usize,
    snappy: bool,
}

impl TableWriter {
    fn block(&mut self, entries: &[(Vec<u8>, Vec<u8>)]) -> BlockHandle {
        let mut b = Vec::new();
        let mut restarts = vec![];
        let mut last: &[u8] = &[];
        for (i, (k, v)) in entries.iter().enumerate() {
            let shared = if i % self.restart_interval == 0 {
                restarts.push(b.len() as u32);
                0
            } else {
                k.iter().zip(last).take_while(|(a, b)| a == b).count()
            };
            for n in [shared, k.len() - shared, v.len()] {
                put_varint(&mut b, n as u64);
            }
            b.extend_from_slice(&k[shared..]);
            b.extend_from_slice(v);
            last = k;
        }
        if restarts.is_empty() {
            restarts.push(0);
        }
        for r in &restarts {
            b.extend_from_slice(&r.to_le_bytes());
        }
        b.extend_from_slice(&(restarts.len() as u32).to_le_bytes());
        let (kind, body) = if self.snappy {
            (1u8, snap::raw::Encoder::new().compress_vec(&b).unwrap())
        } else {
            (0u8, b)
        };
        let h = BlockHandle {
            offset: self.out.len() as u64,
            size: body.len() as u64,
        };
        let crc = crc32c::crc32c_append(crc32c::crc32c(&body), &[kind]);
        self.out.extend_from_slice(&body);
        self.out.push(kind);
        self.out.extend_from_slice(&mask_crc(crc).to_le_bytes());
        h
    }

    /// A table of `entries` (sorted by the caller) in data blocks of `per_block`.
    fn table(mut self, entries: &[(Vec<u8>, Vec<u8>)], per_block: usize) -> Vec<u8> {
        let mut index = Vec::new();
        for chunk in entries.chunks(per_block.max(1)) {
            let h = self.block(chunk);
            index.push((chunk.last().unwrap().0.clone(), handle_bytes(h)));
        }
        let meta = self.block(&[]);
        let interval = std::mem::replace(&mut self.restart_interval, 1);
        let idx = self.block(&index);
        self.restart_interval = interval;
        let mut footer = handle_bytes(meta);
        footer.extend(handle_bytes(idx));
        footer.resize(40, 0);
        footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
        self.out.extend(footer);
        self.out
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn handle_bytes(h: BlockHandle) -> Vec<u8> {
    let mut v = Vec::new();
    put_varint(&mut v, h.offset);
    put_varint(&mut v, h.size);
    v
}

fn sample_entries(n: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
        .map(|i| {
            (
                format!("bert/encoder/layer_{i}/attention/self/query/kernel").into_bytes(),
                vec![i as u8; i % 7],
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn crc32c_masking_round_trips_and_matches_leveldb() {
    // RFC 3720 B.4: crc32c of 32 zero bytes.
    assert_eq!(crc32c::crc32c(&[0u8; 32]), 0x8a91_36aa);
    for crc in [0u32, 1, 0x8a91_36aa, u32::MAX, 0xdead_beef] {
        assert_eq!(unmask_crc(mask_crc(crc)), crc);
        assert_ne!(mask_crc(crc), crc);
    }
    // LevelDB's Mask: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
    let c = 0x1234_5678u32;
    assert_eq!(
        mask_crc(c),
        ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
    );
}

#[test]
fn blocks_with_restart_points_and_shared_prefixes_parse() {
    let entries = sample_entries(40);
    for interval in [1, 3, 16] {
        for snappy in [false, true] {
            let w = TableWriter {
                out: Vec::new(),
                restart_interval: interval,
                snappy,
            };
            let table = w.table(&entries, 7);
            let back = table_entries(&table).unwrap();
            assert_eq!(back, entries, "interval {interval}, snappy {snappy}");
        }
    }
}

#[test]
fn block_entries_rejects_bad_shared_lengths_and_overruns() {
    // shared = 5 on the first entry (no previous key).
    let mut b = vec![5, 1, 0, b'x'];
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    assert!(block_entries(&b).unwrap_err().contains("shares"));
    // a value longer than the block.
    let mut b = vec![0, 1, 90, b'x'];
    b.extend_from_slice(&0u32.to_le_bytes());
    b.extend_from_slice(&1u32.to_le_bytes());
    assert!(block_entries(&b).unwrap_err().contains("past"));
    // a restart count larger than the block.
    assert!(block_entries(&1000u32.to_le_bytes()).is_err());
}

#[test]
fn damaged_tables_are_refused() {
    let w = TableWriter {
        out: Vec::new(),
        restart_interval: 16,
        snappy: false,
    };
    let table = w.table(&sample_entries(10), 4);
    // A flipped byte in a data block fails that block's crc.
    let mut t = table.clone();
    t[3] ^= 0x40;
    assert!(table_entries(&t).unwrap_err().contains("crc32c"));
    // Truncated: the footer's magic is gone.
    assert!(
        table_entries(&table[..table.len() - 10])
            .unwrap_err()
            .contains("magic")
    );
    assert!(table_entries(&table[..20]).is_err());
}

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tfckpt/small.ckpt")
}

/// `tests/data/tfckpt/small.ckpt` was written by `tests/python/tf_checkpoint.py fixture`
/// (TensorFlow 2.21, `tf.compat.v1.train.Saver`): values are `arange`-based, so they are
/// checked here without TensorFlow.
#[test]
fn reads_a_checkpoint_tensorflow_wrote() {
    let ck = TfCheckpoint::open(&fixture()).unwrap();
    assert_eq!(ck.num_shards(), 1);
    let names: Vec<&str> = ck.variables().map(|(n, _)| n).collect();
    assert_eq!(
        names,
        ["bf16", "f16", "f32", "global_step", "i32", "i64", "scalar"]
    );
    let (shape, v) = ck.read_f32("f32").unwrap();
    assert_eq!(shape, [2, 3]);
    assert_eq!(v, [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]);
    let (_, v) = ck.read_f32("f16").unwrap();
    assert_eq!(v, [-1.0, 0.25, 65504.0]);
    let (_, v) = ck.read_f32("bf16").unwrap();
    assert_eq!(v, [1.0, -2.5, 0.15625, -(2f32.powi(127))]);
    assert_eq!(
        ck.read("i32").unwrap(),
        (vec![4], Values::I32(vec![1, -2, 3, i32::MAX]))
    );
    assert_eq!(
        ck.read("i64").unwrap(),
        (vec![2], Values::I64(vec![i64::MIN, 7]))
    );
    assert_eq!(
        ck.read("global_step").unwrap(),
        (vec![], Values::I64(vec![54198]))
    );
    assert_eq!(
        ck.read("scalar").unwrap(),
        (vec![], Values::F32(vec![3.25]))
    );
    assert!(matches!(
        ck.read("nope"),
        Err(TfCkptError::NoVariable { .. })
    ));
    assert!(ck.read_f32("i32").is_err());
}

#[test]
fn damaged_checkpoints_name_the_file_and_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("model.ckpt-1");
    let copy = |what: &str| {
        let from = fixture().with_extension(format!("ckpt{what}"));
        std::fs::copy(&from, PathBuf::from(format!("{}{what}", p.display()))).unwrap();
    };
    copy(".index");
    // Missing shard.
    let e = TfCheckpoint::open(&p).unwrap_err();
    assert!(
        matches!(
            e,
            TfCkptError::MissingShard {
                shard: 0,
                num_shards: 1,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("data-00000-of-00001"), "{e}");
    // Corrupted shard: one flipped bit gives a crc error naming the variable.
    copy(".data-00000-of-00001");
    let data = shard_path(&p, 0, 1);
    let mut bytes = std::fs::read(&data).unwrap();
    let ck = TfCheckpoint::open(&p).unwrap();
    let off = ck.entry("f32").unwrap().offset as usize;
    drop(ck);
    bytes[off + 5] ^= 0x01;
    std::fs::write(&data, &bytes).unwrap();
    let ck = TfCheckpoint::open(&p).unwrap();
    let e = ck.read("f32").unwrap_err();
    assert!(
        matches!(&e, TfCkptError::TensorCrc { name, .. } if name == "f32"),
        "{e}"
    );
    assert!(e.to_string().contains("corrupted"), "{e}");
    ck.read("i32").unwrap();
    // Truncated shard.
    std::fs::write(&data, &bytes[..bytes.len() - 3]).unwrap();
    let e = TfCheckpoint::open(&p).unwrap_err();
    assert!(matches!(e, TfCkptError::TruncatedShard { .. }), "{e}");
    // Truncated index.
    let index = index_path(&p);
    let ib = std::fs::read(&index).unwrap();
    for cut in [1, 10, ib.len() / 2, ib.len() - 1] {
        std::fs::write(&index, &ib[..cut]).unwrap();
        let e = TfCheckpoint::open(&p).unwrap_err();
        assert!(matches!(e, TfCkptError::BadIndex { .. }), "{e}");
    }
}

/// A bundle header naming 2^31 − 1 shards is refused before anything is sized by it (it used
/// to abort allocating 85 GB), from a 200-byte index.
#[test]
fn a_crafted_shard_count_is_an_error_not_an_abort() {
    let header = BundleHeaderProto {
        num_shards: i32::MAX,
        endianness: 0,
        version: None,
    };
    let entries = vec![(Vec::new(), prost::Message::encode_to_vec(&header))];
    let w = TableWriter {
        out: Vec::new(),
        restart_interval: 4,
        snappy: false,
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bomb.ckpt");
    std::fs::write(index_path(&p), w.table(&entries, 4)).unwrap();
    let e = TfCheckpoint::open(&p).unwrap_err();
    assert!(matches!(e, TfCkptError::BadIndex { .. }), "{e}");
    assert!(e.to_string().contains("2147483647 data shards"), "{e}");
}

/// An index that names one data block many times is refused at the second mention (memory
/// used to grow with every mention: 1.9 GB for 1,500 of a 1 MiB block).
#[test]
fn an_index_naming_a_block_twice_is_refused() {
    let mut w = TableWriter {
        out: Vec::new(),
        restart_interval: 4,
        snappy: false,
    };
    let h = w.block(&sample_entries(3));
    let index: Vec<(Vec<u8>, Vec<u8>)> = (0..1000u32)
        .map(|i| (format!("k{i:05}").into_bytes(), handle_bytes(h)))
        .collect();
    let meta = w.block(&[]);
    w.restart_interval = 1;
    let idx = w.block(&index);
    let mut footer = handle_bytes(meta);
    footer.extend(handle_bytes(idx));
    footer.resize(40, 0);
    footer.extend_from_slice(&TABLE_MAGIC.to_le_bytes());
    w.out.extend(footer);
    let e = table_entries(&w.out).unwrap_err();
    assert!(e.contains("twice"), "{e}");
    // Named once, the same block reads.
    let once = TableWriter {
        out: Vec::new(),
        restart_interval: 4,
        snappy: false,
    }
    .table(&sample_entries(3), 8);
    assert_eq!(table_entries(&once).unwrap().len(), 3);
}

#[test]
fn prefixes_resolve_from_index_shard_or_state_file() {
    let f = fixture();
    let dir = f.parent().unwrap();
    assert_eq!(resolve_prefix(&f), Some(f.clone()));
    assert_eq!(resolve_prefix(&index_path(&f)), Some(f.clone()));
    assert_eq!(resolve_prefix(&shard_path(&f, 0, 1)), Some(f.clone()));
    assert_eq!(resolve_prefix(dir), Some(dir.join("small.ckpt")));
    assert_eq!(resolve_prefix(&dir.join("nothing")), None);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;
    use proptest::test_runner::{Config, TestRunner};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    fn fixture_index() -> Vec<u8> {
        std::fs::read(index_path(&fixture())).unwrap()
    }

    /// Any damage to an index (flipped bytes, cut short) gives an error, never a panic; an
    /// index that still opens gives tensors whose values fill their shapes. Counts both
    /// outcomes and fails if either never happened (a property that never reaches its
    /// assertion proves nothing).
    #[test]
    fn damaged_indexes_never_panic() {
        let (opened, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let cases = (
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            proptest::option::of(any::<usize>()),
        );
        TestRunner::new(Config::with_cases(300))
            .run(&cases, |(flips, cut)| {
                let mut idx = fixture_index();
                for (at, x) in flips {
                    let n = idx.len();
                    idx[at % n] ^= x;
                }
                let keep = cut.map_or(idx.len(), |c| c % (idx.len() + 1));
                let _ = table_entries(&idx[..keep]);
                let dir = tempfile::tempdir().unwrap();
                let p = dir.path().join("small.ckpt");
                std::fs::write(index_path(&p), &idx[..keep]).unwrap();
                std::fs::copy(shard_path(&fixture(), 0, 1), shard_path(&p, 0, 1)).unwrap();
                match TfCheckpoint::open(&p) {
                    Ok(ck) => {
                        let names: Vec<String> =
                            ck.variables().map(|(n, _)| n.to_string()).collect();
                        for n in names {
                            if let Ok((shape, values)) = ck.read(&n) {
                                let len = match values {
                                    Values::F32(v) => v.len(),
                                    Values::I32(v) => v.len(),
                                    Values::I64(v) => v.len(),
                                };
                                prop_assert_eq!(len, shape.iter().product::<usize>(), "{}", n);
                            }
                        }
                        opened.fetch_add(1, Relaxed);
                    }
                    Err(_) => {
                        refused.fetch_add(1, Relaxed);
                    }
                }
                Ok(())
            })
            .unwrap();
        let (o, r) = (opened.into_inner(), refused.into_inner());
        eprintln!("damaged indexes: {o} opened and checked, {r} refused");
        assert!(
            o > 0 && r > 0,
            "opened {o}, refused {r}: a case kind never happened"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Well-formed tables of arbitrary entries (garbage protos behind valid crcs): an error
        /// or a checkpoint, never a panic.
        #[test]
        fn arbitrary_entries_never_panic(
            mut entries in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..12), proptest::collection::vec(any::<u8>(), 0..40)),
                0..12,
            ),
            header in proptest::collection::vec(any::<u8>(), 0..12),
        ) {
            entries.push((Vec::new(), header));
            entries.sort();
            entries.dedup_by(|a, b| a.0 == b.0);
            let w = TableWriter { out: Vec::new(), restart_interval: 4, snappy: false };
            let table = w.table(&entries, 5);
            let dir = tempfile::tempdir().unwrap();
            let p = dir.path().join("x.ckpt");
            std::fs::write(index_path(&p), &table).unwrap();
            std::fs::write(shard_path(&p, 0, 1), [7u8; 64]).unwrap();
            if let Ok(ck) = TfCheckpoint::open(&p) {
                let names: Vec<String> = ck.variables().map(|(n, _)| n.to_string()).collect();
                for n in names {
                    let _ = ck.read(&n);
                }
            }
        }

        /// Arbitrary bytes as a block or a table: an error or entries, never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = block_entries(&bytes);
            let _ = table_entries(&bytes);
        }
    }
}
