//! The patch-feature store: one `[patches, dim]` matrix per image in memory-mappable shards.
//!
//! Layout of a `features` entry:
//! - `shards/shard-NNNNN.bin`: raw little-endian f16 or f32, images back to back;
//! - `index.parquet`: `image_id → (shard, row)`;
//! - `zero_patch.bin`: the f32 feature of an all-zero (masked) patch;
//! - `meta.json`: dtype, patches, dim, shard sizes and how the features were made.
//!
//! Writing streams: memory is one shard's buffer at most, whatever the number of images.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use half::f16;
use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::table::{self, col_i32, col_str};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FeatDType {
    F16,
    F32,
}

impl FeatDType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "f16" => Some(FeatDType::F16),
            "f32" => Some(FeatDType::F32),
            _ => None,
        }
    }
    pub fn bytes(self) -> usize {
        match self {
            FeatDType::F16 => 2,
            FeatDType::F32 => 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Meta {
    pub dtype: FeatDType,
    pub patches: usize,
    pub dim: usize,
    pub shard_images: usize,
    /// Images per shard, in shard order.
    pub shards: Vec<usize>,
    /// How the features were made (extractor, convention, patch input size, …).
    pub extractor: serde_json::Value,
}

pub struct Writer {
    dir: PathBuf,
    meta: Meta,
    ids: Vec<String>,
    shard_of: Vec<i32>,
    row_of: Vec<i32>,
    current: Option<BufWriter<File>>,
    in_current: usize,
}

impl Writer {
    pub fn create(
        dir: &Path,
        dtype: FeatDType,
        patches: usize,
        dim: usize,
        shard_images: usize,
        extractor: serde_json::Value,
    ) -> Result<Writer> {
        std::fs::create_dir_all(dir.join("shards")).at(dir)?;
        Ok(Writer {
            dir: dir.to_path_buf(),
            meta: Meta {
                dtype,
                patches,
                dim,
                shard_images: shard_images.max(1),
                shards: Vec::new(),
                extractor,
            },
            ids: Vec::new(),
            shard_of: Vec::new(),
            row_of: Vec::new(),
            current: None,
            in_current: 0,
        })
    }

    fn shard_path(dir: &Path, i: usize) -> PathBuf {
        dir.join("shards").join(format!("shard-{i:05}.bin"))
    }

    /// Appends one image's `[patches × dim]` features (row-major).
    pub fn push(&mut self, image_id: &str, feats: &[f32]) -> Result<()> {
        assert_eq!(
            feats.len(),
            self.meta.patches * self.meta.dim,
            "feature size"
        );
        if self.current.is_none() || self.in_current == self.meta.shard_images {
            self.finish_shard()?;
            let p = Self::shard_path(&self.dir, self.meta.shards.len());
            self.current = Some(BufWriter::with_capacity(1 << 20, File::create(&p).at(&p)?));
            self.meta.shards.push(0);
            self.in_current = 0;
        }
        let w = self.current.as_mut().unwrap();
        let r: std::io::Result<()> = match self.meta.dtype {
            FeatDType::F32 => w.write_all(bytemuck::cast_slice(feats)),
            FeatDType::F16 => {
                let h: Vec<f16> = feats.iter().map(|&v| f16::from_f32(v)).collect();
                w.write_all(bytemuck::cast_slice(&h))
            }
        };
        r.at(&self.dir)?;
        self.ids.push(image_id.to_string());
        self.shard_of.push(self.meta.shards.len() as i32 - 1);
        self.row_of.push(self.in_current as i32);
        self.in_current += 1;
        *self.meta.shards.last_mut().unwrap() += 1;
        Ok(())
    }

    fn finish_shard(&mut self) -> Result<()> {
        if let Some(mut w) = self.current.take() {
            w.flush().at(&self.dir)?;
        }
        Ok(())
    }

    /// Writes the index, the zero-patch feature and the metadata.
    pub fn finish(mut self, zero_patch: &[f32]) -> Result<Meta> {
        assert_eq!(zero_patch.len(), self.meta.dim);
        self.finish_shard()?;
        let mut df = table::frame(vec![
            col_str("image_id", &self.ids),
            col_i32("shard", &self.shard_of),
            col_i32("row", &self.row_of),
        ])?;
        table::write_parquet(&mut df, &self.dir.join("index.parquet"))?;
        let zp = self.dir.join("zero_patch.bin");
        std::fs::write(&zp, bytemuck::cast_slice::<f32, u8>(zero_patch)).at(&zp)?;
        let mp = self.dir.join("meta.json");
        std::fs::write(&mp, serde_json::to_string_pretty(&self.meta).unwrap()).at(&mp)?;
        Ok(self.meta)
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Read access to a feature store (memory-mapped).
pub struct Store {
    pub meta: Meta,
    dir: PathBuf,
    shards: Vec<Mmap>,
    index: HashMap<String, (u32, u32)>,
    zero_patch: Vec<f32>,
}

impl Store {
    pub fn open(dir: &Path) -> Result<Store> {
        let mp = dir.join("meta.json");
        let meta: Meta = serde_json::from_str(&std::fs::read_to_string(&mp).at(&mp)?)
            .map_err(|e| Error::input(&mp, format!("bad feature store metadata: {e}")))?;
        let per_image = meta.patches * meta.dim * meta.dtype.bytes();
        let mut shards = Vec::new();
        for (i, n) in meta.shards.iter().enumerate() {
            let p = Writer::shard_path(dir, i);
            let f = File::open(&p).at(&p)?;
            // SAFETY: store entries are immutable once committed.
            let m = unsafe { Mmap::map(&f) }.at(&p)?;
            if m.len() != n * per_image {
                return Err(Error::input(
                    &p,
                    format!(
                        "shard has {} bytes, expected {} ({n} images): the store is damaged; re-run `features`",
                        m.len(),
                        n * per_image
                    ),
                ));
            }
            shards.push(m);
        }
        let df = table::read_parquet(&dir.join("index.parquet"))?;
        let ids = table::strings(&df, "image_id")?;
        let sh = table::i32s(&df, "shard")?;
        let rows = table::i32s(&df, "row")?;
        let index = ids
            .into_iter()
            .zip(sh.into_iter().zip(rows))
            .map(|(id, (s, r))| (id, (s as u32, r as u32)))
            .collect();
        let zp = dir.join("zero_patch.bin");
        let zb = std::fs::read(&zp).at(&zp)?;
        if zb.len() != meta.dim * 4 {
            return Err(Error::input(&zp, "wrong size"));
        }
        let zero_patch = bytemuck::pod_collect_to_vec::<u8, f32>(&zb);
        Ok(Store {
            meta,
            dir: dir.to_path_buf(),
            shards,
            index,
            zero_patch,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    pub fn contains(&self, image_id: &str) -> bool {
        self.index.contains_key(image_id)
    }

    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.index.keys()
    }

    pub fn zero_patch(&self) -> &[f32] {
        &self.zero_patch
    }

    /// Copies one image's features as f32 into `out` (`patches × dim` values, appended).
    pub fn read_into(&self, image_id: &str, out: &mut Vec<f32>) -> Result<()> {
        let &(s, r) = self.index.get(image_id).ok_or_else(|| {
            Error::input(
                &self.dir,
                format!("no features for image `{image_id}` in this feature store (rejected by `features`, or a store from another ingest)"),
            )
        })?;
        let n = self.meta.patches * self.meta.dim;
        let bytes = n * self.meta.dtype.bytes();
        let raw = &self.shards[s as usize][r as usize * bytes..(r as usize + 1) * bytes];
        match self.meta.dtype {
            FeatDType::F32 => out.extend(
                raw.chunks_exact(4)
                    .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
            ),
            FeatDType::F16 => out.extend(
                raw.chunks_exact(2)
                    .map(|c| f16::from_le_bytes(c.try_into().unwrap()).to_f32()),
            ),
        }
        Ok(())
    }

    pub fn get(&self, image_id: &str) -> Result<Vec<f32>> {
        let mut v = Vec::with_capacity(self.meta.patches * self.meta.dim);
        self.read_into(image_id, &mut v)?;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_read_across_shards() {
        let dir = tempfile::tempdir().unwrap();
        for dtype in [FeatDType::F32, FeatDType::F16] {
            let d = dir.path().join(format!("{dtype:?}"));
            let mut w = Writer::create(&d, dtype, 2, 3, 2, serde_json::json!({})).unwrap();
            for i in 0..5 {
                let v: Vec<f32> = (0..6).map(|k| (i * 10 + k) as f32 * 0.5).collect();
                w.push(&format!("img{i}"), &v).unwrap();
            }
            let meta = w.finish(&[1.0, 2.0, 3.0]).unwrap();
            assert_eq!(meta.shards, vec![2, 2, 1]);
            let s = Store::open(&d).unwrap();
            assert_eq!(s.len(), 5);
            assert_eq!(
                s.get("img3").unwrap(),
                (0..6).map(|k| (30 + k) as f32 * 0.5).collect::<Vec<_>>()
            );
            assert_eq!(s.zero_patch(), &[1.0, 2.0, 3.0]);
            let e = s.get("nope").unwrap_err().to_string();
            assert!(e.contains("no features for image `nope`"), "{e}");
        }
    }
}
