//! The evaluation sets: for each valid query product, its own text or image and up to
//! `negatives` candidates of the same category (then split) — the original's 1 + 100 — in both
//! directions. Shared by the `evaluate` stage, `fashionbert evaluate` and the prediction files.

use std::collections::HashSet;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::metrics::Scored;
use crate::sources::Product;
use crate::sources::pool::Pool;

/// One query's candidates: `(image_id, text_id, label)`.
pub struct EvalSet {
    pub direction: &'static str,
    pub rows: Vec<(String, String, String, bool)>, // (query, image_id, text_id, label)
}

impl EvalSet {
    /// A set's rows as scored pairs, the candidate being the text (img2txt) or the image (txt2img).
    pub fn scored(&self, logits: impl Fn(&str, &str) -> [f32; 2]) -> Vec<Scored> {
        self.rows
            .iter()
            .map(|(q, img, txt, label)| Scored {
                query: q.clone(),
                candidate: if self.direction == "img2txt" {
                    txt.clone()
                } else {
                    img.clone()
                },
                label: *label,
                logits: logits(img, txt),
            })
            .collect()
    }
}

/// Builds both directions' eval sets.
pub fn build_sets(
    products: &[Product],
    has_features: &dyn Fn(&str) -> bool,
    queries: usize,
    negatives: usize,
    fill: bool,
    seed: u64,
) -> (Vec<EvalSet>, u64, u64) {
    // One representative (first) image per valid product with features.
    let pool = Pool::new(products, |p| {
        p.split == "valid" && has_features(&p.image_id)
    });
    let valid = &pool.products;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..valid.len()).collect();
    order.shuffle(&mut rng);
    order.truncate(queries);
    let (mut i2t, mut t2i) = (Vec::new(), Vec::new());
    let (mut filled, mut short) = (0u64, 0u64);
    for &qi in &order {
        let q = valid[qi];
        let ok = |&j: &usize| pool.eligible(j, &q.product_id, &q.title_key);
        let mut chosen: Vec<usize> = Vec::new();
        let mut used: HashSet<usize> = HashSet::new();
        let pools: Vec<&Vec<usize>> = if fill {
            vec![
                &pool.by_sub[q.subcategory.as_str()],
                &pool.by_cat[q.category.as_str()],
                &pool.all,
            ]
        } else {
            vec![&pool.by_sub[q.subcategory.as_str()]]
        };
        for (level, pool) in pools.into_iter().enumerate() {
            if chosen.len() >= negatives {
                break;
            }
            let mut cand: Vec<usize> = pool
                .iter()
                .copied()
                .filter(|j| ok(j) && !used.contains(j))
                .collect();
            cand.shuffle(&mut rng);
            for j in cand.into_iter().take(negatives - chosen.len()) {
                used.insert(j);
                chosen.push(j);
                if level > 0 {
                    filled += 1;
                }
            }
        }
        if chosen.len() < negatives {
            short += 1;
        }
        i2t.push((
            q.image_id.clone(),
            q.image_id.clone(),
            q.product_id.clone(),
            true,
        ));
        t2i.push((
            q.product_id.clone(),
            q.image_id.clone(),
            q.product_id.clone(),
            true,
        ));
        for &j in &chosen {
            let c = valid[j];
            i2t.push((
                q.image_id.clone(),
                q.image_id.clone(),
                c.product_id.clone(),
                false,
            ));
            t2i.push((
                q.product_id.clone(),
                c.image_id.clone(),
                q.product_id.clone(),
                false,
            ));
        }
    }
    (
        vec![
            EvalSet {
                direction: "img2txt",
                rows: i2t,
            },
            EvalSet {
                direction: "txt2img",
                rows: t2i,
            },
        ],
        filled,
        short,
    )
}
