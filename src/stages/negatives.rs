//! `negatives`: for every positive pair, one negative: the same image with the text of another
//! product of the same split, never the same product and never one with the same title (same
//! title key). Exactly one negative per positive and round, seeded.
//!
//! `rounds` draws that many independent rounds (`round` column, 0..rounds); training uses round
//! `epoch % rounds` in each epoch, so with `rounds = epochs` every epoch sees fresh negatives.
//! `strategy` chooses where a negative comes from:
//! - `subcategory` (the original): another product of the same subcategory;
//! - `random`: any other product of the split (easy negatives);
//! - `curriculum`: each negative is a same-subcategory one with probability `share(round)`, which
//!   rises linearly from `hard_start` in round 0 to `hard_end` in the last round, else random.
//!
//! The strategy applies to the train split; valid negatives are always same-subcategory ones (the
//! original's), so validation accuracy means the same thing whatever the training recipe.
//!
//! Where a subcategory has no other eligible product, a same-subcategory draw comes from the same
//! category, else from the whole split; such fallbacks are marked, counted and reported. Round 0
//! of `subcategory` is exactly the draw of a single-round run with the same seed.

use std::collections::{BTreeMap, HashMap};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::dag::params::Choice;
use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, RunContext, Stage, StageError, StageSpec,
};
use crate::sources::pool::Pool;

use crate::schema::{Pair, read_pairs, read_products, write_pairs};

crate::param_choice! {
    /// The `strategy` param's values (see [`Strategy`], which adds the curriculum's shares).
    pub enum StrategyName {
        Subcategory = "subcategory",
        Random = "random",
        Curriculum = "curriculum",
    }
}

crate::stage_params! {
    /// The params of `negatives`.
    pub struct NegativesParams {
        seed: u64 = (K::Int, D::Int(7), "sampling seed").min(0.0);
        rounds: usize = (
            K::Int,
            D::Int(1),
            "independent rounds of negatives; training uses round `epoch % rounds`",
        )
        .range(1.0, 1000.0);
        strategy: StrategyName = (
            K::Choice(StrategyName::CHOICES),
            D::Str("subcategory"),
            "same subcategory (the original), any other product, or random first then a rising share of same-subcategory ones",
        );
        hard_start: f64 = (
            K::Float,
            D::Float(0.0),
            "curriculum: share of same-subcategory negatives in round 0",
        )
        .range(0.0, 1.0);
        hard_end: f64 = (
            K::Float,
            D::Float(1.0),
            "curriculum: share of same-subcategory negatives in the last round",
        )
        .range(0.0, 1.0);
    }
}

pub const SPEC: StageSpec = StageSpec {
    name: "negatives",
    version: 1,
    about: "one same-subcategory negative per positive (label 0), 1:1 per split",
    inputs: &[Input::all("ingest"), Input::all("pairs")],
    params: NegativesParams::SPECS,
    outputs: &["negatives.parquet"],
};

pub struct Negatives;

/// Where the negatives come from (the `strategy` param).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Strategy {
    Subcategory,
    Random,
    Curriculum { start: f64, end: f64 },
}

impl Strategy {
    /// The share of same-subcategory negatives in round `r` of `rounds`.
    pub fn hard_share(self, r: usize, rounds: usize) -> f64 {
        match self {
            Strategy::Subcategory => 1.0,
            Strategy::Random => 0.0,
            Strategy::Curriculum { start, end } => {
                if rounds <= 1 {
                    end
                } else {
                    start + (end - start) * r as f64 / (rounds - 1) as f64
                }
            }
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
        let p: NegativesParams = ctx.typed_params()?;
        let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
        let rounds = p.rounds;
        if rounds == 0 {
            return Err("negatives.rounds must be at least 1".into());
        }
        let strategy = match p.strategy {
            StrategyName::Random => Strategy::Random,
            StrategyName::Curriculum => {
                let (start, end) = (p.hard_start, p.hard_end);
                for (name, v) in [("hard_start", start), ("hard_end", end)] {
                    if !(0.0..=1.0).contains(&v) {
                        return Err(
                            format!("negatives.{name} = {v}: a share must lie in [0, 1]").into(),
                        );
                    }
                }
                Strategy::Curriculum { start, end }
            }
            StrategyName::Subcategory => Strategy::Subcategory,
        };
        let pools: BTreeMap<&str, Pool> = ["train", "valid"]
            .into_iter()
            .map(|s| (s, Pool::new(&products, |p| p.split == s)))
            .collect();
        let key_of: HashMap<&str, &str> = products
            .iter()
            .map(|p| (p.product_id.as_str(), p.title_key.as_str()))
            .collect();

        let mut out = Vec::with_capacity(positives.len() * rounds);
        let mut fallbacks: BTreeMap<String, u64> = BTreeMap::new();
        let mut random_draws = 0u64;
        for round in 0..rounds {
            let share = strategy.hard_share(round, rounds);
            for pos in &positives {
                let pool = &pools[pos.split.as_str()];
                let key = key_of[pos.image_product_id.as_str()];
                let pid = pos.image_product_id.as_str();
                let share = if pos.split == "train" { share } else { 1.0 };
                let hard = share >= 1.0 || (share > 0.0 && rng.random::<f64>() < share);
                let mut fallback = "";
                let mut q = if hard {
                    pool.by_sub
                        .get(pos.subcategory.as_str())
                        .and_then(|c| pool.pick(c, pid, key, &mut rng))
                } else {
                    random_draws += 1;
                    pool.pick(&pool.all, pid, key, &mut rng)
                };
                if q.is_none() && hard {
                    fallback = "category";
                    q = pool
                        .by_cat
                        .get(pos.category.as_str())
                        .and_then(|c| pool.pick(c, pid, key, &mut rng));
                }
                if q.is_none() && hard {
                    fallback = "split";
                    q = pool.pick(&pool.all, pid, key, &mut rng);
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
                    // Round 0 keeps the single-round ids, so its masks and tokens do not change.
                    pair_id: if round == 0 {
                        format!("n:{}", pos.image_id)
                    } else {
                        format!("n{round}:{}", pos.image_id)
                    },
                    split: pos.split.clone(),
                    image_id: pos.image_id.clone(),
                    image_product_id: pos.image_product_id.clone(),
                    text_product_id: q.product_id.clone(),
                    label: 0,
                    category: pos.category.clone(),
                    subcategory: pos.subcategory.clone(),
                    text: q.text.clone(),
                    fallback: fallback.to_string(),
                    round: round as i32,
                });
            }
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
        ctx.count("rounds", rounds as u64);
        ctx.count("random_draws", random_draws);
        ctx.note("fallbacks", serde_json::to_value(&fallbacks).unwrap());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curriculum_rises_linearly_from_start_to_end() {
        let c = Strategy::Curriculum {
            start: 0.0,
            end: 1.0,
        };
        let v: Vec<f64> = (0..5).map(|r| c.hard_share(r, 5)).collect();
        assert_eq!(v, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(c.hard_share(0, 1), 1.0);
        assert_eq!(Strategy::Subcategory.hard_share(3, 5), 1.0);
        assert_eq!(Strategy::Random.hard_share(0, 5), 0.0);
    }
}
