//! How an epoch's records are cut into batches (`train.batches`): at random, or so that the
//! in-batch contrastive negatives look like the evaluation's candidates, which all share the
//! query's subcategory.
//!
//! - `random`: one shuffle of the epoch's records (the original's order).
//! - `subcategory`: the records grouped by subcategory (groups in a random order, records
//!   shuffled within), cut into batches; a batch holds one subcategory, or the tail of one and
//!   the head of the next. Batches are then shuffled.
//! - `mixed`: half of every batch from one subcategory run as above, half drawn at random.
//!
//! Same-product rows in one batch stay positives of each other (the contrastive targets are
//! by product), so grouping never makes a product its own negative. A partial last batch is
//! always last (the loop drops it), whatever the composition.

use std::collections::BTreeMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;

crate::param_choice! {
    /// How an epoch's records are cut into batches (`train.batches`).
    pub enum Composition {
        /// One shuffle of the epoch.
        Random = "random",
        /// Each batch drawn from one subcategory (or the tail of one and the head of the next).
        Subcategory = "subcategory",
        /// Half of each batch from one subcategory, half at random.
        Mixed = "mixed",
    }
}

fn rng(seed: u64, epoch: usize, salt: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(1_000_003)
            .wrapping_add(epoch as u64)
            .wrapping_add(salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
    )
}

/// `idx` (an epoch's record indices) in training order for batches of `batch`; `group` gives
/// each record's subcategory.
pub fn order(
    idx: &[usize],
    group: impl Fn(usize) -> String,
    batch: usize,
    how: Composition,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let batch = batch.max(1);
    let mut shuffled = idx.to_vec();
    shuffled.shuffle(&mut rng(seed, epoch, 0));
    match how {
        Composition::Random => shuffled,
        Composition::Subcategory => {
            let runs = grouped(&shuffled, &group, seed, epoch);
            shuffle_batches(chunks(&runs, batch), batch, seed, epoch)
        }
        Composition::Mixed => {
            let half = (batch / 2).max(1);
            let (a, b) = shuffled.split_at(shuffled.len() / 2);
            let grouped_part = chunks(&grouped(a, &group, seed, epoch), half);
            let random_part = chunks(b, batch - half);
            let mut batches: Vec<Vec<usize>> = grouped_part
                .into_iter()
                .zip(random_part)
                .map(|(mut g, r)| {
                    g.extend(r);
                    g
                })
                .collect();
            // Records left over by the zip (one half ran out first) form the last batches.
            let used: std::collections::HashSet<usize> =
                batches.iter().flatten().copied().collect();
            let rest: Vec<usize> = shuffled
                .iter()
                .copied()
                .filter(|i| !used.contains(i))
                .collect();
            batches.extend(chunks(&rest, batch));
            let flat: Vec<usize> = batches.into_iter().flatten().collect();
            shuffle_batches(chunks(&flat, batch), batch, seed, epoch)
        }
    }
}

/// The records grouped by subcategory: groups in a random order, each group's records in
/// `shuffled`'s order.
fn grouped(
    shuffled: &[usize],
    group: &impl Fn(usize) -> String,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let mut by: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &i in shuffled {
        by.entry(group(i)).or_default().push(i);
    }
    let mut groups: Vec<Vec<usize>> = by.into_values().collect();
    groups.shuffle(&mut rng(seed, epoch, 1));
    groups.into_iter().flatten().collect()
}

fn chunks(v: &[usize], n: usize) -> Vec<Vec<usize>> {
    v.chunks(n.max(1)).map(|c| c.to_vec()).collect()
}

/// Full batches in a random order, a partial one last.
fn shuffle_batches(
    mut batches: Vec<Vec<usize>>,
    batch: usize,
    seed: u64,
    epoch: usize,
) -> Vec<usize> {
    let partial = batches
        .last()
        .is_some_and(|b| b.len() < batch)
        .then(|| batches.pop().unwrap());
    batches.shuffle(&mut rng(seed, epoch, 2));
    batches.into_iter().chain(partial).flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Record `i`'s subcategory: one of `k`, spread over the indices.
    fn groups(k: usize) -> impl Fn(usize) -> String {
        move |i| format!("g{}", (i * 7919 + 13) % k)
    }

    /// `random` is the order models were trained in before compositions existed.
    #[test]
    fn random_is_the_old_epoch_order() {
        let idx: Vec<usize> = (100..300).collect();
        let old: Vec<usize> = crate::training::epoch_order(idx.len(), 17, 3)
            .into_iter()
            .map(|i| idx[i])
            .collect();
        assert_eq!(order(&idx, groups(5), 32, Composition::Random, 17, 3), old);
    }

    #[test]
    fn every_record_once_in_every_composition() {
        let idx: Vec<usize> = (0..203).collect();
        for how in [
            Composition::Random,
            Composition::Subcategory,
            Composition::Mixed,
        ] {
            let o = order(&idx, groups(9), 16, how, 5, 2);
            let mut s = o.clone();
            s.sort_unstable();
            assert_eq!(s, idx, "{how:?}");
            assert_eq!(o, order(&idx, groups(9), 16, how, 5, 2), "seeded");
            assert_ne!(o, order(&idx, groups(9), 16, how, 5, 3), "per epoch");
        }
    }

    #[test]
    fn subcategory_batches_hold_one_or_two_subcategories() {
        let idx: Vec<usize> = (0..640).collect();
        let g = groups(6);
        let o = order(&idx, &g, 32, Composition::Subcategory, 1, 0);
        let mut single = 0;
        for b in o.chunks(32) {
            let mut s: Vec<String> = b.iter().map(|&i| g(i)).collect();
            s.sort();
            s.dedup();
            assert!(s.len() <= 2, "{s:?}");
            single += (s.len() == 1) as usize;
        }
        assert!(
            single >= 12,
            "most batches hold one subcategory: {single} of 20"
        );
        // Random batches mix them.
        let r = order(&idx, &g, 32, Composition::Random, 1, 0);
        assert!(r.chunks(32).all(|b| {
            let mut s: Vec<String> = b.iter().map(|&i| g(i)).collect();
            s.sort();
            s.dedup();
            s.len() >= 4
        }));
    }

    #[test]
    fn mixed_batches_are_half_one_subcategory() {
        let idx: Vec<usize> = (0..640).collect();
        let g = groups(8);
        let o = order(&idx, &g, 32, Composition::Mixed, 3, 1);
        let full: Vec<&[usize]> = o.chunks(32).filter(|b| b.len() == 32).collect();
        let dominated = full
            .iter()
            .filter(|b| {
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                for &i in b.iter() {
                    *counts.entry(g(i)).or_default() += 1;
                }
                counts.values().max().copied().unwrap_or(0) >= 16
            })
            .count();
        assert!(
            dominated * 10 >= full.len() * 8,
            "{dominated} of {}",
            full.len()
        );
    }

    #[test]
    fn a_partial_batch_is_last() {
        let idx: Vec<usize> = (0..70).collect();
        for how in [Composition::Subcategory, Composition::Mixed] {
            let o = order(&idx, groups(3), 32, how, 9, 0);
            assert_eq!(o.len(), 70);
            // The first two batches are full batches of the composition; the last 6 are the rest.
            assert_eq!(
                o.chunks(32).map(|c| c.len()).collect::<Vec<_>>(),
                [32, 32, 6]
            );
        }
    }
}
