//! A memory of negatives for the contrastive loss (`train.itc_queue`): the image and text ITC
//! embeddings of the most recent matched records, detached, kept across steps and added to each
//! step's in-batch negatives (XBM, Wang et al. 2020; MoCo's queue, without its momentum encoder).
//!
//! The image side is a frozen CNN's features through a small trainable encoder, and the
//! learning rate decays linearly, so recent embeddings stay close to what the current model
//! would compute: the memory lends a batch of 32 the negatives of a batch of 32 + `size` at the
//! cost of one `[N, size]` product per direction. A memory entry of the same product as a batch
//! row is that row's positive (a soft target, as two rows of one product are within a batch),
//! never its negative.
//!
//! Newest first; the oldest entries drop out beyond `size`. Saved with every checkpoint, so a
//! resumed run computes the steps an uninterrupted one would.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::Path;

use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{Error, IoContext, Result};

/// The memory: `[n, D]` image and text embeddings (row r of both is one record) and the
/// product each row stands for, newest first.
pub struct EmbeddingQueue {
    size: usize,
    image: Option<Tensor<2>>,
    text: Option<Tensor<2>>,
    products: VecDeque<String>,
}

/// What a step reads from the memory: its embeddings and, per batch row, which entries are of
/// the same product (`[N, n]`, 1 = positive).
pub struct QueueView {
    pub image: Tensor<2>,
    pub text: Tensor<2>,
    pub positives: Tensor<2>,
}

impl EmbeddingQueue {
    /// An empty memory of at most `size` records (0 = off: it stays empty).
    pub fn new(size: usize) -> EmbeddingQueue {
        EmbeddingQueue {
            size,
            image: None,
            text: None,
            products: VecDeque::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.products.len()
    }

    pub fn is_empty(&self) -> bool {
        self.products.is_empty()
    }

    /// The products of the entries, newest first.
    pub fn products(&self) -> impl Iterator<Item = &str> {
        self.products.iter().map(|s| s.as_str())
    }

    /// Adds a step's embeddings (`[N, D]`, row i of product `products[i]`) in front, detached,
    /// and drops the oldest beyond the size. Within a step, row 0 ends up newest.
    pub fn push(&mut self, image: Tensor<2>, text: Tensor<2>, products: &[String]) {
        if self.size == 0 || products.is_empty() {
            return;
        }
        let keep_new = products.len().min(self.size);
        let d = image.dims()[1];
        let (image, text) = (
            image.detach().slice([0..keep_new, 0..d]),
            text.detach().slice([0..keep_new, 0..d]),
        );
        let join = |new: Tensor<2>, old: Option<Tensor<2>>| match old {
            Some(old) => Tensor::cat(vec![new, old], 0),
            None => new,
        };
        let image = join(image, self.image.take());
        let text = join(text, self.text.take());
        for p in products[..keep_new].iter().rev() {
            self.products.push_front(p.clone());
        }
        let n = self.products.len().min(self.size);
        self.products.truncate(n);
        self.image = Some(image.slice([0..n, 0..d]));
        self.text = Some(text.slice([0..n, 0..d]));
    }

    /// The memory as a step's batch of `products` sees it; `None` while empty.
    pub fn view(&self, products: &[String], device: &Device) -> Option<QueueView> {
        let (image, text) = (self.image.as_ref()?, self.text.as_ref()?);
        let (n, q) = (products.len(), self.products.len());
        let mut pos = vec![0f32; n * q];
        for (i, p) in products.iter().enumerate() {
            for (j, e) in self.products.iter().enumerate() {
                if p == e {
                    pos[i * q + j] = 1.0;
                }
            }
        }
        Some(QueueView {
            image: image.clone().to_device(device),
            text: text.clone().to_device(device),
            positives: Tensor::<2>::from_data(TensorData::new(pos, [n, q]), device),
        })
    }

    /// Writes the memory to `path` (with a checkpoint): `n`, `D` as little-endian u64, the
    /// image then the text embeddings as f32, then the products, one per line.
    pub fn save(&self, path: &Path) -> Result<()> {
        let (n, mut d) = (self.products.len(), 0usize);
        let mut bytes = Vec::new();
        let mut floats = Vec::new();
        if let (Some(i), Some(t)) = (&self.image, &self.text) {
            d = i.dims()[1];
            for x in [i, t] {
                let v: Vec<f32> = x
                    .clone()
                    .try_into_vec_as::<f32>()
                    .map_err(Error::read_back("the ITC memory"))?;
                floats.extend(v);
            }
        }
        bytes.extend((n as u64).to_le_bytes());
        bytes.extend((d as u64).to_le_bytes());
        for f in floats {
            bytes.extend(f.to_le_bytes());
        }
        for p in &self.products {
            bytes.extend(p.as_bytes());
            bytes.push(b'\n');
        }
        let mut f = std::fs::File::create(path).at(path)?;
        f.write_all(&bytes).at(path)?;
        Ok(())
    }

    /// Reads a memory [`EmbeddingQueue::save`] wrote, of at most `size` records, onto `device`.
    pub fn load(path: &Path, size: usize, device: &Device) -> Result<EmbeddingQueue> {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .at(path)?;
        let bad = |why: &str| Error::input(path, format!("not an ITC memory: {why}"));
        if bytes.len() < 16 {
            return Err(bad("shorter than its header"));
        }
        let n = u64::from_le_bytes(bytes[0..8].try_into().unwrap()) as usize;
        let d = u64::from_le_bytes(bytes[8..16].try_into().unwrap()) as usize;
        if n > size {
            return Err(bad(&format!(
                "{n} records, more than train.itc_queue = {size}"
            )));
        }
        let floats = n
            .checked_mul(d)
            .and_then(|x| x.checked_mul(8))
            .filter(|&x| x <= bytes.len() - 16)
            .ok_or_else(|| bad("its sizes do not fit the file"))?;
        let v: Vec<f32> = bytes[16..16 + floats]
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let products: VecDeque<String> = std::str::from_utf8(&bytes[16 + floats..])
            .map_err(|_| bad("products are not UTF-8"))?
            .lines()
            .map(str::to_string)
            .collect();
        if products.len() != n {
            return Err(bad(&format!("{} products for {n} records", products.len())));
        }
        let mut q = EmbeddingQueue::new(size);
        if n > 0 {
            let half = n * d;
            q.image = Some(Tensor::<2>::from_data(
                TensorData::new(v[..half].to_vec(), [n, d]),
                device,
            ));
            q.text = Some(Tensor::<2>::from_data(
                TensorData::new(v[half..].to_vec(), [n, d]),
                device,
            ));
        }
        q.products = products;
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev() -> Device {
        Device::flex()
    }

    fn rows(vals: &[f32], d: usize) -> Tensor<2> {
        Tensor::<2>::from_data(TensorData::new(vals.to_vec(), [vals.len() / d, d]), &dev())
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_the_newest_entries_in_order_up_to_its_size() {
        let mut q = EmbeddingQueue::new(3);
        assert!(q.view(&names(&["a"]), &dev()).is_none());
        q.push(
            rows(&[1., 1., 2., 2.], 2),
            rows(&[10., 10., 20., 20.], 2),
            &names(&["a", "b"]),
        );
        q.push(
            rows(&[3., 3., 4., 4.], 2),
            rows(&[30., 30., 40., 40.], 2),
            &names(&["c", "d"]),
        );
        assert_eq!(q.len(), 3);
        assert_eq!(q.products().collect::<Vec<_>>(), ["c", "d", "a"]);
        let v = q.view(&names(&["x"]), &dev()).unwrap();
        let img: Vec<f32> = v.image.try_into_vec_as::<f32>().unwrap();
        let txt: Vec<f32> = v.text.try_into_vec_as::<f32>().unwrap();
        assert_eq!(img, [3., 3., 4., 4., 1., 1.]);
        assert_eq!(txt, [30., 30., 40., 40., 10., 10.]);
        // A step larger than the memory keeps its first rows.
        q.push(
            rows(&[5., 5., 6., 6., 7., 7., 8., 8.], 2),
            rows(&[0.; 8], 2),
            &names(&["e", "f", "g", "h"]),
        );
        assert_eq!(q.products().collect::<Vec<_>>(), ["e", "f", "g"]);
        // Size 0 is off.
        let mut off = EmbeddingQueue::new(0);
        off.push(rows(&[1., 1.], 2), rows(&[1., 1.], 2), &names(&["a"]));
        assert!(off.is_empty());
    }

    #[test]
    fn an_entry_of_the_rows_product_is_its_positive_never_its_negative() {
        let mut q = EmbeddingQueue::new(4);
        q.push(
            rows(&[1., 0., 0., 1.], 2),
            rows(&[1., 0., 0., 1.], 2),
            &names(&["a", "b"]),
        );
        let v = q.view(&names(&["b", "c", "a"]), &dev()).unwrap();
        let pos: Vec<f32> = v.positives.try_into_vec_as::<f32>().unwrap();
        assert_eq!(pos, [0., 1., 0., 0., 1., 0.]);
    }

    #[test]
    fn saves_and_loads_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("queue.bin");
        let mut q = EmbeddingQueue::new(5);
        q.push(
            rows(&[0.5, -1.25, 3.0, 7.5], 2),
            rows(&[1., 2., 3., 4.], 2),
            &names(&["p1", "p2"]),
        );
        q.save(&path).unwrap();
        let r = EmbeddingQueue::load(&path, 5, &dev()).unwrap();
        assert_eq!(r.products().collect::<Vec<_>>(), ["p1", "p2"]);
        let a: Vec<f32> = r.image.clone().unwrap().try_into_vec_as::<f32>().unwrap();
        assert_eq!(a, [0.5, -1.25, 3.0, 7.5]);
        // An empty memory round-trips too; a memory larger than the size or cut short is refused.
        EmbeddingQueue::new(5).save(&path).unwrap();
        assert!(EmbeddingQueue::load(&path, 5, &dev()).unwrap().is_empty());
        q.save(&path).unwrap();
        assert!(EmbeddingQueue::load(&path, 1, &dev()).is_err());
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..20]).unwrap();
        assert!(EmbeddingQueue::load(&path, 5, &dev()).is_err());
    }
}
