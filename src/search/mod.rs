//! Search a catalogue with the trained model: exact top-k over the `embed` stage's embeddings
//! (one matrix–vector product: a million 256-d products is ~0.3 s on one core), with filters
//! by category, subcategory and split. Text → images, image → texts, image → similar images.
//! Above a size, [`index::Index`] answers approximately (HNSW), rescored exactly.

pub mod index;

use std::cmp::Ordering;

use serde::Serialize;

use crate::schema::embeddings::Embeddings;

/// Which side of the catalogue is ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Images,
    Texts,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Images => "images",
            Side::Texts => "texts",
        }
    }
}

/// Keeps a product when every given field equals the product's.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub category: Option<String>,
    pub subcategory: Option<String>,
    pub split: Option<String>,
}

impl Filter {
    /// Whether no field is asked for.
    pub fn is_empty(&self) -> bool {
        self.category.is_none() && self.subcategory.is_none() && self.split.is_none()
    }

    pub fn keeps(&self, e: &Embeddings, row: usize) -> bool {
        let it = &e.items[row];
        let eq = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        eq(&self.category, &it.category)
            && eq(&self.subcategory, &it.subcategory)
            && eq(&self.split, &it.split)
    }
}

/// One result: the product, its matrix row and its score (the model's ITC score: cosine ×
/// inverse temperature).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Hit {
    pub rank: usize,
    pub row: usize,
    pub score: f32,
    pub product_id: String,
    pub image_id: String,
    pub title: String,
    pub category: String,
    pub subcategory: String,
    pub split: String,
}

/// The dot product of two rows, in 8 independent sums so the compiler can keep them in SIMD
/// lanes (a single running sum is a chain of dependent adds it may not reorder).
#[inline]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for i in 0..8 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// The `k` best products of `side` for the (L2-normalised) `query`, best first; ties broken by
/// row. `exclude` leaves one row out (a product's own row when it is the query).
pub fn top_k(
    e: &Embeddings,
    query: &[f32],
    side: Side,
    filter: &Filter,
    k: usize,
    exclude: Option<usize>,
) -> Vec<Hit> {
    let d = e.dim;
    let m = match side {
        Side::Images => &e.image,
        Side::Texts => &e.text,
    };
    let mut scored: Vec<(f32, usize)> = m
        .chunks_exact(d)
        .enumerate()
        .filter(|(i, _)| Some(*i) != exclude && filter.keeps(e, *i))
        .map(|(i, row)| (dot(row, query), i))
        .collect();
    let order = |a: &(f32, usize), b: &(f32, usize)| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(Ordering::Equal)
            .then(a.1.cmp(&b.1))
    };
    let k = k.min(scored.len());
    if k == 0 {
        return Vec::new();
    }
    if k < scored.len() {
        scored.select_nth_unstable_by(k - 1, order);
        scored.truncate(k);
    }
    scored.sort_by(order);
    hits(e, scored)
}

/// Ranked hits from (cosine, row) pairs already in order.
pub(crate) fn hits(e: &Embeddings, ranked: Vec<(f32, usize)>) -> Vec<Hit> {
    ranked
        .into_iter()
        .enumerate()
        .map(|(r, (s, i))| {
            let it = &e.items[i];
            Hit {
                rank: r + 1,
                row: i,
                score: s * e.scale,
                product_id: it.product_id.clone(),
                image_id: it.image_id.clone(),
                title: it.title.clone(),
                category: it.category.clone(),
                subcategory: it.subcategory.clone(),
                split: it.split.clone(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::embeddings::Item;

    fn catalogue() -> Embeddings {
        let item = |p: &str, sub: &str, split: &str| Item {
            product_id: p.into(),
            image_id: format!("{p}_0"),
            title: p.into(),
            category: "C".into(),
            subcategory: sub.into(),
            split: split.into(),
        };
        Embeddings {
            model: "train/k".into(),
            items: vec![
                item("a", "s1", "train"),
                item("b", "s2", "valid"),
                item("c", "s1", "valid"),
                item("d", "s1", "valid"),
            ],
            dim: 2,
            scale: 10.0,
            image: vec![1.0, 0.0, 0.0, 1.0, 0.8, 0.6, 0.6, 0.8],
            text: vec![0.0, 1.0, 1.0, 0.0, 0.6, 0.8, 0.8, 0.6],
        }
    }

    #[test]
    fn exact_top_k_matches_a_full_sort_and_filters() {
        let e = catalogue();
        let q = [1.0, 0.0];
        let hits = top_k(&e, &q, Side::Images, &Filter::default(), 3, None);
        let ids: Vec<&str> = hits.iter().map(|h| h.product_id.as_str()).collect();
        assert_eq!(ids, ["a", "c", "d"]);
        assert_eq!(hits[0].score, 10.0);
        assert_eq!(hits[1].rank, 2);
        let f = Filter {
            subcategory: Some("s1".into()),
            split: Some("valid".into()),
            ..Default::default()
        };
        let ids: Vec<String> = top_k(&e, &q, Side::Texts, &f, 10, None)
            .into_iter()
            .map(|h| h.product_id)
            .collect();
        assert_eq!(ids, ["d", "c"]);
        // A product's own row left out, and k beyond the catalogue.
        let hits = top_k(
            &e,
            e.image_row(0),
            Side::Images,
            &Filter::default(),
            99,
            Some(0),
        );
        assert_eq!(hits.len(), 3);
        assert!(hits.iter().all(|h| h.row != 0));
        assert!(top_k(&e, &q, Side::Images, &Filter::default(), 0, None).is_empty());
    }

    #[test]
    fn dot_matches_a_plain_sum() {
        for n in [0, 1, 7, 8, 9, 256, 257] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let plain: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
            assert!((dot(&a, &b) - plain).abs() < 1e-4, "{n}");
        }
    }

    #[test]
    fn ties_break_by_row_whatever_k() {
        let mut e = catalogue();
        e.image = vec![0.5; 8];
        for k in 1..=4 {
            let rows: Vec<usize> =
                top_k(&e, &[1.0, 1.0], Side::Images, &Filter::default(), k, None)
                    .iter()
                    .map(|h| h.row)
                    .collect();
            assert_eq!(rows, (0..k).collect::<Vec<_>>());
        }
    }
}
