//! Products indexed for drawing negatives: the distinct products of a split (the first row of
//! each product, in table order) by subcategory and by category, and who may be whose negative.
//! Shared by `negatives` (one negative per positive, drawn with [`Pool::pick`]) and the
//! evaluation sets (up to 100 per query, shuffled from the same indexes).

use std::collections::{HashMap, HashSet};

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::Product;

pub struct Pool<'a> {
    /// One entry per product.
    pub products: Vec<&'a Product>,
    /// Every index, for draws from the whole pool.
    pub all: Vec<usize>,
    pub by_sub: HashMap<&'a str, Vec<usize>>,
    pub by_cat: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Pool<'a> {
    /// The distinct products among those `keep` accepts; a product's first accepted row wins.
    pub fn new(products: &'a [Product], keep: impl Fn(&Product) -> bool) -> Pool<'a> {
        let mut seen = HashSet::new();
        let products: Vec<&Product> = products
            .iter()
            .filter(|p| keep(p) && seen.insert(p.product_id.as_str()))
            .collect();
        let mut by_sub: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut by_cat: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in products.iter().enumerate() {
            by_sub.entry(p.subcategory.as_str()).or_default().push(i);
            by_cat.entry(p.category.as_str()).or_default().push(i);
        }
        Pool {
            all: (0..products.len()).collect(),
            products,
            by_sub,
            by_cat,
        }
    }

    /// Whether product `i` may be a negative of product `pid` with title key `key`: another
    /// product, with another title (same-title products are the same garment).
    pub fn eligible(&self, i: usize, pid: &str, key: &str) -> bool {
        let q = self.products[i];
        q.product_id != pid && q.title_key != key
    }

    /// A uniformly drawn eligible product from `candidates` (see [`Pool::eligible`]).
    pub fn pick(
        &self,
        candidates: &[usize],
        pid: &str,
        key: &str,
        rng: &mut ChaCha8Rng,
    ) -> Option<&'a Product> {
        // Rejection sampling is exact (uniform over the eligible) and fast when most qualify.
        for _ in 0..32 {
            let i = candidates[rng.random_range(0..candidates.len())];
            if self.eligible(i, pid, key) {
                return Some(self.products[i]);
            }
        }
        let eligible: Vec<usize> = candidates
            .iter()
            .copied()
            .filter(|&i| self.eligible(i, pid, key))
            .collect();
        if eligible.is_empty() {
            None
        } else {
            Some(self.products[eligible[rng.random_range(0..eligible.len())]])
        }
    }
}
