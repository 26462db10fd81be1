//! `negatives`: for every positive pair, one negative: the same image with the text of another
//! product of the same split and subcategory, never the same product and never one with the
//! same title (same title key). Exactly one negative per positive, seeded. Where a subcategory
//! has no other eligible product, the negative comes from the same category, else from the whole
//! split; such fallbacks are marked, counted and reported.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, ParamSpec as P, RunContext, Stage, StageError,
    StageSpec,
};
use crate::sources::Product;

use super::ingest::read_products;
use super::pairs::{Pair, read_pairs, write_pairs};

pub const SPEC: StageSpec = StageSpec {
    name: "negatives",
    version: 1,
    about: "one same-subcategory negative per positive (label 0), 1:1 per split",
    inputs: &[Input::all("ingest"), Input::all("pairs")],
    params: &[P::new("seed", K::Int, D::Int(7), "sampling seed")],
    outputs: &["negatives.parquet"],
};

pub struct Negatives;

/// Distinct products of one split, indexed for sampling.
struct Pool<'a> {
    products: Vec<&'a Product>,
    by_sub: HashMap<&'a str, Vec<usize>>,
    by_cat: HashMap<&'a str, Vec<usize>>,
}

impl<'a> Pool<'a> {
    fn new(products: &'a [Product], split: &str) -> Pool<'a> {
        // One entry per product (not per image); first image's row wins, in table order.
        let mut seen = std::collections::HashSet::new();
        let products: Vec<&Product> = products
            .iter()
            .filter(|p| p.split == split && seen.insert(p.product_id.as_str()))
            .collect();
        let mut by_sub: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut by_cat: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, p) in products.iter().enumerate() {
            by_sub.entry(p.subcategory.as_str()).or_default().push(i);
            by_cat.entry(p.category.as_str()).or_default().push(i);
        }
        Pool {
            products,
            by_sub,
            by_cat,
        }
    }

    /// A product from `candidates` that is not `pid` and has another title key.
    fn pick(
        &self,
        candidates: &[usize],
        pid: &str,
        key: &str,
        rng: &mut ChaCha8Rng,
    ) -> Option<&'a Product> {
        let ok = |i: usize| {
            let q = self.products[i];
            q.product_id != pid && q.title_key != key
        };
        // Rejection sampling is exact (uniform over the eligible) and fast when most qualify.
        for _ in 0..32 {
            let i = candidates[rng.random_range(0..candidates.len())];
            if ok(i) {
                return Some(self.products[i]);
            }
        }
        let eligible: Vec<usize> = candidates.iter().copied().filter(|&i| ok(i)).collect();
        if eligible.is_empty() {
            None
        } else {
            Some(self.products[eligible[rng.random_range(0..eligible.len())]])
        }
    }
}

impl Stage for Negatives {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let products = read_products(&ctx.input("ingest", "products.parquet")?)?;
        let positives = read_pairs(&ctx.input("pairs", "pairs.parquet")?)?;
        let mut rng = ChaCha8Rng::seed_from_u64(ctx.params().u64("seed")?);
        let pools: BTreeMap<&str, Pool> = ["train", "valid"]
            .into_iter()
            .map(|s| (s, Pool::new(&products, s)))
            .collect();
        let key_of: HashMap<&str, &str> = products
            .iter()
            .map(|p| (p.product_id.as_str(), p.title_key.as_str()))
            .collect();

        let mut out = Vec::with_capacity(positives.len());
        let mut fallbacks: BTreeMap<String, u64> = BTreeMap::new();
        for pos in &positives {
            let pool = &pools[pos.split.as_str()];
            let key = key_of[pos.image_product_id.as_str()];
            let pid = pos.image_product_id.as_str();
            let mut fallback = "";
            let mut q = pool
                .by_sub
                .get(pos.subcategory.as_str())
                .and_then(|c| pool.pick(c, pid, key, &mut rng));
            if q.is_none() {
                fallback = "category";
                q = pool
                    .by_cat
                    .get(pos.category.as_str())
                    .and_then(|c| pool.pick(c, pid, key, &mut rng));
            }
            if q.is_none() {
                fallback = "split";
                let all: Vec<usize> = (0..pool.products.len()).collect();
                q = pool.pick(&all, pid, key, &mut rng);
            }
            let Some(q) = q else {
                let n = pool.products.len();
                return Err(if n < 2 {
                    format!(
                        "no negative possible for {}: split `{}` has {n} product(s), and a negative needs another product of the same split; add products to it",
                        pos.pair_id, pos.split
                    )
                } else {
                    format!(
                        "no negative possible for {}: all {n} products of split `{}` have the same title; add products with other titles",
                        pos.pair_id, pos.split
                    )
                }
                .into());
            };
            if !fallback.is_empty() {
                *fallbacks
                    .entry(format!("{fallback}: {}", pos.subcategory))
                    .or_default() += 1;
            }
            out.push(Pair {
                pair_id: format!("n:{}", pos.image_id),
                split: pos.split.clone(),
                image_id: pos.image_id.clone(),
                image_product_id: pos.image_product_id.clone(),
                text_product_id: q.product_id.clone(),
                label: 0,
                category: pos.category.clone(),
                subcategory: pos.subcategory.clone(),
                text: q.text.clone(),
                fallback: fallback.to_string(),
            });
        }
        write_pairs(&out, &ctx.out("negatives.parquet"))?;
        let n_fb: u64 = fallbacks.values().sum();
        for (what, n) in &fallbacks {
            tracing::warn!("negatives: {n} drawn outside their subcategory ({what})");
        }
        for split in ["train", "valid"] {
            ctx.count(
                split,
                out.iter().filter(|p| p.split == split).count() as u64,
            );
        }
        ctx.count("fallbacks", n_fb);
        ctx.note("fallbacks", serde_json::to_value(&fallbacks).unwrap());
        Ok(())
    }
}
