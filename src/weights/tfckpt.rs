//! A reader for TensorFlow checkpoints in the V2 format (what `tf.compat.v1.train.Saver` and
//! `tf.train.Checkpoint` write): `PREFIX.index` and `PREFIX.data-0000i-of-0000N`.
//!
//! The `.index` file is a LevelDB-format table (an SSTable): data blocks of prefix-compressed
//! keys with restart points, each block followed by a compression byte and a masked crc32c, an
//! index block of block handles, and a 48-byte footer ending in a magic number. The empty key
//! holds a `BundleHeaderProto` (number of shards, endianness); every other key is a variable
//! name whose value is a `BundleEntryProto` (dtype, shape, shard, offset, size and masked
//! crc32c of the tensor's bytes in that shard). Every tensor read is checked against its crc32c.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

mod sstable;
use sstable::table_entries;
pub use sstable::{mask_crc, unmask_crc};

/// What can go wrong reading a checkpoint; each names the file (and variable) and what to do.
#[derive(Debug, thiserror::Error)]
pub enum TfCkptError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a TensorFlow checkpoint index ({what}); pass the checkpoint prefix (e.g. `model.ckpt-54198`) of a complete, uncorrupted checkpoint", path.display())]
    BadIndex { path: PathBuf, what: String },
    #[error("{}: data shard {shard} of {num_shards} is missing; copy all {num_shards} `.data-*-of-{num_shards:05}` files beside the `.index`", path.display())]
    MissingShard {
        path: PathBuf,
        shard: usize,
        num_shards: usize,
    },
    #[error("{}: variable `{name}` lies at bytes {offset}..{end} but the file has {len}: the shard is truncated; copy it again", path.display())]
    TruncatedShard {
        path: PathBuf,
        name: String,
        offset: u64,
        end: u64,
        len: u64,
    },
    #[error("{}: variable `{name}`: crc32c {got:#010x} of its bytes differs from the index's {want:#010x}: the shard is corrupted; copy it again", path.display())]
    TensorCrc {
        path: PathBuf,
        name: String,
        want: u32,
        got: u32,
    },
    #[error("{}: variable `{name}`: {what}", path.display())]
    BadEntry {
        path: PathBuf,
        name: String,
        what: String,
    },
    #[error("{}: no variable `{name}` in this checkpoint", path.display())]
    NoVariable { path: PathBuf, name: String },
}

type Result<T> = std::result::Result<T, TfCkptError>;

// ---------------------------------------------------------------------------------- protos

/// `tensorflow.BundleHeaderProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct BundleHeaderProto {
    #[prost(int32, tag = "1")]
    num_shards: i32,
    /// 0 = little endian, 1 = big endian.
    #[prost(int32, tag = "2")]
    endianness: i32,
    #[prost(message, optional, tag = "3")]
    version: Option<VersionDef>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct VersionDef {
    #[prost(int32, tag = "1")]
    producer: i32,
    #[prost(int32, tag = "2")]
    min_consumer: i32,
}

/// `tensorflow.BundleEntryProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct BundleEntryProto {
    #[prost(int32, tag = "1")]
    dtype: i32,
    #[prost(message, optional, tag = "2")]
    shape: Option<TensorShapeProto>,
    #[prost(int32, tag = "3")]
    shard_id: i32,
    #[prost(int64, tag = "4")]
    offset: i64,
    #[prost(int64, tag = "5")]
    size: i64,
    #[prost(fixed32, tag = "6")]
    crc32c: u32,
    /// Only the count matters: partitioned variables are not supported.
    #[prost(bytes = "vec", repeated, tag = "7")]
    slices: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct TensorShapeProto {
    #[prost(message, repeated, tag = "2")]
    dim: Vec<Dim>,
    #[prost(bool, tag = "3")]
    unknown_rank: bool,
}

#[derive(Clone, PartialEq, prost::Message)]
struct Dim {
    #[prost(int64, tag = "1")]
    size: i64,
}

// ---------------------------------------------------------------------------------- bundle

/// The element types this reader converts (TensorFlow's `DataType` numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum DType {
    F32,
    F16,
    BF16,
    I32,
    I64,
    /// Anything else (strings, doubles, bools…): listed, not readable.
    Other(i32),
}

impl DType {
    fn from_tf(code: i32) -> DType {
        match code {
            1 => DType::F32,
            3 => DType::I32,
            9 => DType::I64,
            14 => DType::BF16,
            19 => DType::F16,
            c => DType::Other(c),
        }
    }

    fn size(self) -> Option<usize> {
        match self {
            DType::F32 | DType::I32 => Some(4),
            DType::F16 | DType::BF16 => Some(2),
            DType::I64 => Some(8),
            DType::Other(_) => None,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }
}

/// One variable of the index.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub shard: usize,
    pub offset: u64,
    pub size: u64,
    /// Masked crc32c of the tensor's bytes.
    pub crc32c: u32,
    /// Number of slices (> 0 for a partitioned variable, which this reader does not join).
    pub slices: usize,
}

impl Entry {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A tensor's values: floating types as f32 (exact for f16 and bf16), integers as they are.
#[derive(Debug, Clone, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I64(Vec<i64>),
}

/// An opened checkpoint: the index parsed, the shards mapped.
pub struct TfCheckpoint {
    prefix: PathBuf,
    num_shards: usize,
    entries: BTreeMap<String, Entry>,
    shards: Vec<(PathBuf, Mmap)>,
}

impl std::fmt::Debug for TfCheckpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TfCheckpoint")
            .field("prefix", &self.prefix)
            .field("num_shards", &self.num_shards)
            .field("variables", &self.entries.len())
            .finish()
    }
}

/// `PREFIX.index`.
pub fn index_path(prefix: &Path) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(".index");
    PathBuf::from(s)
}

/// `PREFIX.data-0000i-of-0000N`.
/// The most data shards a bundle header may name.
pub const MAX_SHARDS: usize = 100_000;

pub fn shard_path(prefix: &Path, shard: usize, num_shards: usize) -> PathBuf {
    let mut s = prefix.as_os_str().to_owned();
    s.push(format!(".data-{shard:05}-of-{num_shards:05}"));
    PathBuf::from(s)
}

/// The checkpoint prefix a user may have named by its prefix, its `.index`, one of its data
/// shards, or a directory with TensorFlow's `checkpoint` state file (its latest checkpoint);
/// None when there is no `.index` there.
pub fn resolve_prefix(path: &Path) -> Option<PathBuf> {
    if path.is_dir() {
        let state = std::fs::read_to_string(path.join("checkpoint")).ok()?;
        let line = state
            .lines()
            .find(|l| l.trim_start().starts_with("model_checkpoint_path:"))?;
        let name = line.split('"').nth(1)?;
        return resolve_prefix(&path.join(name));
    }
    let s = path.to_string_lossy();
    let prefix = if let Some(p) = s.strip_suffix(".index") {
        PathBuf::from(p)
    } else if let Some(i) = s.rfind(".data-").filter(|&i| s[i..].contains("-of-")) {
        PathBuf::from(&s[..i])
    } else {
        path.to_path_buf()
    };
    index_path(&prefix).is_file().then_some(prefix)
}

fn map_file(path: &Path) -> Result<Mmap> {
    let io = |e| TfCkptError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the checkpoint files are read-only inputs; a concurrent writer would at worst
    // make the crc checks fail.
    unsafe { Mmap::map(&f) }.map_err(io)
}

impl TfCheckpoint {
    /// Opens `PREFIX.index` and every data shard; fails on a damaged index, a missing shard or
    /// an entry beyond its shard's end.
    pub fn open(prefix: &Path) -> Result<TfCheckpoint> {
        let index = index_path(prefix);
        let bad = |what: String| TfCkptError::BadIndex {
            path: index.clone(),
            what,
        };
        let bytes = std::fs::read(&index).map_err(|e| TfCkptError::Io {
            path: index.clone(),
            source: e,
        })?;
        let table = table_entries(&bytes).map_err(bad)?;
        let mut header = None;
        let mut entries = BTreeMap::new();
        for (key, value) in table {
            if key.is_empty() {
                header = Some(
                    <BundleHeaderProto as prost::Message>::decode(value.as_slice())
                        .map_err(|e| bad(format!("bundle header: {e}")))?,
                );
                continue;
            }
            // Slices of partitioned variables have binary keys; their full entry names them.
            let Ok(name) = String::from_utf8(key) else {
                continue;
            };
            if name.starts_with('\0') {
                continue;
            }
            let e = <BundleEntryProto as prost::Message>::decode(value.as_slice())
                .map_err(|e| bad(format!("entry of `{name}`: {e}")))?;
            entries.insert(
                name.clone(),
                entry_from_proto(&e).map_err(|w| bad(format!("entry of `{name}`: {w}")))?,
            );
        }
        let header = header.ok_or_else(|| bad("no bundle header".into()))?;
        if header.endianness != 0 {
            return Err(bad(
                "written on a big-endian machine; only little-endian checkpoints are read".into(),
            ));
        }
        // Bounded before use: a crafted header must not size an allocation.
        let num_shards = usize::try_from(header.num_shards)
            .ok()
            .filter(|&n| (1..=MAX_SHARDS).contains(&n))
            .ok_or_else(|| {
                bad(format!(
                    "{} data shards in its header (a checkpoint has 1 to {MAX_SHARDS})",
                    header.num_shards
                ))
            })?;
        let mut shards = Vec::new();
        for i in 0..num_shards {
            let path = shard_path(prefix, i, num_shards);
            if !path.is_file() {
                return Err(TfCkptError::MissingShard {
                    path,
                    shard: i,
                    num_shards,
                });
            }
            let map = map_file(&path)?;
            shards.push((path, map));
        }
        for (name, e) in &entries {
            let Some((path, map)) = shards.get(e.shard) else {
                return Err(bad(format!(
                    "`{name}` is in shard {} of {num_shards}",
                    e.shard
                )));
            };
            let end = e.offset.saturating_add(e.size);
            if end > map.len() as u64 {
                return Err(TfCkptError::TruncatedShard {
                    path: path.clone(),
                    name: name.clone(),
                    offset: e.offset,
                    end,
                    len: map.len() as u64,
                });
            }
        }
        Ok(TfCheckpoint {
            prefix: prefix.to_path_buf(),
            num_shards,
            entries,
            shards,
        })
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    pub fn num_shards(&self) -> usize {
        self.num_shards
    }

    /// The `.index` and the data shards: everything the checkpoint's content depends on.
    pub fn files(&self) -> Vec<PathBuf> {
        std::iter::once(index_path(&self.prefix))
            .chain(self.shards.iter().map(|(p, _)| p.clone()))
            .collect()
    }

    /// Every variable, in name order.
    pub fn variables(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn entry(&self, name: &str) -> Option<&Entry> {
        self.entries.get(name)
    }

    fn known(&self, name: &str) -> Result<&Entry> {
        self.entries
            .get(name)
            .ok_or_else(|| TfCkptError::NoVariable {
                path: index_path(&self.prefix),
                name: name.to_string(),
            })
    }

    /// A variable's bytes in its shard, crc32c checked.
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let e = self.known(name)?;
        let (path, map) = &self.shards[e.shard];
        let data = &map[e.offset as usize..(e.offset + e.size) as usize];
        let got = mask_crc(crc32c::crc32c(data));
        if got != e.crc32c {
            return Err(TfCkptError::TensorCrc {
                path: path.clone(),
                name: name.to_string(),
                want: unmask_crc(e.crc32c),
                got: unmask_crc(got),
            });
        }
        Ok(data)
    }

    /// A variable's shape and values (crc32c checked).
    pub fn read(&self, name: &str) -> Result<(Vec<usize>, Values)> {
        let e = self.known(name)?;
        let bad = |what: String| TfCkptError::BadEntry {
            path: self.shards[e.shard].0.clone(),
            name: name.to_string(),
            what,
        };
        if e.slices > 0 {
            return Err(bad(format!(
                "a partitioned variable ({} slices); re-save it unpartitioned",
                e.slices
            )));
        }
        let Some(size) = e.dtype.size() else {
            return Err(bad(format!(
                "TensorFlow dtype {:?} is not read (float32/16, bfloat16, int32, int64 are)",
                e.dtype
            )));
        };
        let data = self.bytes(name)?;
        if data.len() != e.numel() * size {
            return Err(bad(format!(
                "{} bytes for shape {:?} of {:?}",
                data.len(),
                e.shape,
                e.dtype
            )));
        }
        Ok((e.shape.clone(), decode(e.dtype, data)))
    }

    /// A floating-point variable as f32 (float16 and bfloat16 widened exactly).
    pub fn read_f32(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        match self.read(name)? {
            (shape, Values::F32(v)) => Ok((shape, v)),
            _ => Err(TfCkptError::BadEntry {
                path: index_path(&self.prefix),
                name: name.to_string(),
                what: format!(
                    "{:?}, not a floating-point tensor",
                    self.entries[name].dtype
                ),
            }),
        }
    }
}

fn entry_from_proto(e: &BundleEntryProto) -> std::result::Result<Entry, String> {
    let shape = match &e.shape {
        Some(s) if s.unknown_rank => return Err("unknown rank".into()),
        Some(s) => s
            .dim
            .iter()
            .map(|d| usize::try_from(d.size).map_err(|_| format!("dimension {}", d.size)))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        None => Vec::new(),
    };
    if shape
        .iter()
        .try_fold(8usize, |n, &d| n.checked_mul(d))
        .is_none()
    {
        return Err(format!("shape {shape:?} too large"));
    }
    let nonneg = |v: i64, what: &str| u64::try_from(v).map_err(|_| format!("{what} {v}"));
    Ok(Entry {
        dtype: DType::from_tf(e.dtype),
        shape,
        shard: usize::try_from(e.shard_id).map_err(|_| format!("shard {}", e.shard_id))?,
        offset: nonneg(e.offset, "offset")?,
        size: nonneg(e.size, "size")?,
        crc32c: e.crc32c,
        slices: e.slices.len(),
    })
}

fn decode(dtype: DType, data: &[u8]) -> Values {
    match dtype {
        DType::F32 => Values::F32(
            data.chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        DType::F16 => Values::F32(
            data.chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        DType::BF16 => Values::F32(
            data.chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
        ),
        DType::I32 => Values::I32(
            data.chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        DType::I64 => Values::I64(
            data.chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
                .collect(),
        ),
        DType::Other(_) => unreachable!("checked by the caller"),
    }
}

#[cfg(test)]
mod tests;
