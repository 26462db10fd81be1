//! An approximate index over one side of a catalogue's embeddings, for catalogues where one
//! exact pass per query costs too much (`serve --index-above`, default 100,000 products).
//!
//! HNSW from `hnsw_rs`: maintained, pure Rust (no C++ toolchain, unlike usearch or faiss),
//! parallel build, filtered search. Rows are L2-normalised, so the distance is `1 − a·b`
//! ([`CosineDistance`], with the exact search's SIMD-friendly [`super::dot`]; anndists' own dot
//! distance sums in one scalar chain and asserts `a·b ≤ 1`, which rounding can break). The
//! index returns candidates; their scores are recomputed exactly, so a hit's score is the
//! exact search's score for that row.
//! A filter that keeps few rows (below `exact_below`) is answered exactly over them.

use std::cmp::Ordering;

use hnsw_rs::prelude::{Distance, Hnsw};

use rand::{Rng, SeedableRng};

use super::{Filter, Hit, Side, hits};
use crate::schema::embeddings::{Embeddings, Item};

/// `1 − a·b` of unit rows, never below 0.
#[derive(Debug, Clone, Copy, Default)]
pub struct CosineDistance;

impl Distance<f32> for CosineDistance {
    fn eval(&self, a: &[f32], b: &[f32]) -> f32 {
        (1.0 - super::dot(a, b)).max(0.0)
    }
}

/// The index's build and search settings (HNSW's M, efConstruction, efSearch).
#[derive(Debug, Clone, Copy)]
pub struct IndexParams {
    /// Links per node (M).
    pub links: usize,
    /// Candidate list while building (efConstruction).
    pub ef_construction: usize,
    /// Candidate list while searching (efSearch; at least k).
    pub ef_search: usize,
    /// A filtered query keeping fewer rows than this is answered by an exact pass over them
    /// (HNSW loses recall when a filter keeps few nodes).
    pub exact_below: usize,
}

impl Default for IndexParams {
    fn default() -> Self {
        IndexParams {
            links: 16,
            ef_construction: 200,
            ef_search: 128,
            exact_below: 20_000,
        }
    }
}

/// An HNSW graph over one side (images or texts) of a catalogue.
pub struct Index {
    pub side: Side,
    hnsw: Hnsw<'static, f32, CosineDistance>,
    /// The settings it was built with; `ef_search` may be changed between searches.
    pub params: IndexParams,
    /// Wall seconds the build took.
    pub build_seconds: f64,
}

impl Index {
    /// Builds the graph over `side`'s rows (on rayon's threads).
    pub fn build(e: &Embeddings, side: Side, params: IndexParams) -> Index {
        let t0 = std::time::Instant::now();
        let n = e.len().max(1);
        let layers = 16.min(((n as f64).ln() as usize).max(1));
        let hnsw = Hnsw::new(
            params.links.clamp(2, 256),
            n,
            layers,
            params.ef_construction.max(1),
            CosineDistance,
        );
        let m = matrix(e, side);
        let rows: Vec<(&[f32], usize)> = m.chunks_exact(e.dim).zip(0..).collect();
        hnsw.parallel_insert_slice(&rows);
        let mut hnsw = hnsw;
        hnsw.set_searching_mode(true);
        Index {
            side,
            hnsw,
            params,
            build_seconds: t0.elapsed().as_secs_f64(),
        }
    }

    /// The (about) `k` best rows for `query`, best first, scores exact; as
    /// [`super::top_k`] but approximate.
    pub fn search(
        &self,
        e: &Embeddings,
        query: &[f32],
        filter: &Filter,
        k: usize,
        exclude: Option<usize>,
    ) -> Vec<Hit> {
        if k == 0 || e.is_empty() {
            return Vec::new();
        }
        if !filter.is_empty() {
            let kept = (0..e.len()).filter(|&i| filter.keeps(e, i)).count();
            if kept < self.params.exact_below {
                return super::top_k(e, query, self.side, filter, k, exclude);
            }
        }
        let ef = self.params.ef_search.max(k);
        let want = k + usize::from(exclude.is_some());
        let found = if filter.is_empty() {
            self.hnsw.search(query, want, ef)
        } else {
            let keep = |id: &usize| filter.keeps(e, *id);
            self.hnsw.search_filter(query, want, ef, Some(&keep))
        };
        let m = matrix(e, self.side);
        let d = e.dim;
        let mut scored: Vec<(f32, usize)> = found
            .into_iter()
            .map(|nb| nb.d_id)
            .filter(|&i| Some(i) != exclude && i < e.len())
            .map(|i| (super::dot(&m[i * d..(i + 1) * d], query), i))
            .collect();
        scored.sort_by(|a, b| {
            b.0.partial_cmp(&a.0)
                .unwrap_or(Ordering::Equal)
                .then(a.1.cmp(&b.1))
        });
        scored.truncate(k);
        hits(e, scored)
    }
}

fn matrix(e: &Embeddings, side: Side) -> &[f32] {
    match side {
        Side::Images => &e.image,
        Side::Texts => &e.text,
    }
}

/// Recall@k of `approx` against `exact`: the share of the exact top k the index found.
pub fn recall(exact: &[Hit], approx: &[Hit]) -> f64 {
    if exact.is_empty() {
        return 1.0;
    }
    let found = exact
        .iter()
        .filter(|h| approx.iter().any(|a| a.row == h.row))
        .count();
    found as f64 / exact.len() as f64
}

/// A synthetic catalogue for benchmarks and tests: `n` unit rows around `clusters` centres
/// (a catalogue's embeddings cluster by kind of product); texts equal images.
pub fn clustered(n: usize, dim: usize, clusters: usize, seed: u64) -> Embeddings {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let unit = |v: &mut Vec<f32>| {
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    };
    let centres: Vec<Vec<f32>> = (0..clusters)
        .map(|_| {
            let mut c: Vec<f32> = (0..dim).map(|_| rng.random::<f32>() - 0.5).collect();
            unit(&mut c);
            c
        })
        .collect();
    let mut image = Vec::with_capacity(n * dim);
    let mut items = Vec::with_capacity(n);
    for i in 0..n {
        let c = &centres[i % clusters];
        let mut v: Vec<f32> = c
            .iter()
            .map(|x| x + 0.08 * (rng.random::<f32>() - 0.5))
            .collect();
        unit(&mut v);
        image.extend(v);
        items.push(Item {
            product_id: format!("p{i}"),
            image_id: format!("p{i}"),
            title: String::new(),
            category: "C".into(),
            subcategory: format!("s{}", i % 3),
            split: if i % 5 == 0 { "valid" } else { "train" }.into(),
        });
    }
    Embeddings {
        model: "train/x".into(),
        items,
        dim,
        scale: 1.0,
        text: image.clone(),
        image,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::top_k;

    #[test]
    fn the_index_finds_what_the_exact_search_finds() {
        let e = clustered(3000, 32, 40, 5);
        let ix = Index::build(&e, Side::Images, IndexParams::default());
        let mut total = 0.0;
        let queries = 100;
        for q in 0..queries {
            let query = e.text_row(q * 29).to_vec();
            let exact = top_k(&e, &query, Side::Images, &Filter::default(), 10, None);
            let approx = ix.search(&e, &query, &Filter::default(), 10, None);
            assert_eq!(approx.len(), 10);
            // Exact scores on the rows found, best first.
            assert!(approx.windows(2).all(|w| w[0].score >= w[1].score));
            for h in &approx {
                let s: f32 = e
                    .image_row(h.row)
                    .iter()
                    .zip(&query)
                    .map(|(a, b)| a * b)
                    .sum();
                assert!((h.score - s).abs() < 1e-5);
            }
            total += recall(&exact, &approx);
        }
        let r = total / queries as f64;
        assert!(r >= 0.95, "recall@10 {r}");
    }

    #[test]
    fn filters_and_exclusion_hold_on_the_index() {
        let e = clustered(2000, 16, 20, 7);
        // Filters through the graph (exact_below 0) as a large catalogue's would.
        let params = IndexParams {
            exact_below: 0,
            ..Default::default()
        };
        let ix = Index::build(&e, Side::Images, params);
        let query = e.image_row(3).to_vec();
        let hits = ix.search(&e, &query, &Filter::default(), 5, Some(3));
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| h.row != 3));
        let f = Filter {
            subcategory: Some("s1".into()),
            ..Default::default()
        };
        let hits = ix.search(&e, &query, &f, 7, None);
        assert_eq!(hits.len(), 7);
        assert!(hits.iter().all(|h| h.subcategory == "s1"));
        let exact = top_k(&e, &query, Side::Images, &f, 7, None);
        assert!(recall(&exact, &hits) >= 0.85, "{}", recall(&exact, &hits));
        assert!(ix.search(&e, &query, &f, 0, None).is_empty());
    }
}
