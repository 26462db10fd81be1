//! BERT masking, as Google's `create_pretraining_data.py` does it, on one encoded text:
//! choose `round(eligible × prob)` positions (at least 1, at most `max_predictions`) among
//! the real non-special tokens; replace 80 % with `[MASK]`, 10 % with a random real token, keep
//! 10 %; report positions (ascending), original ids and weights, padded to `max_predictions`.
//!
//! Differences from Google's script, on purpose: the count is taken over *eligible* tokens
//! (not including [CLS]/[SEP]), so short and long texts are masked at the same rate; random
//! replacements come from real tokens only (never [PAD], [unusedN], [CLS], [SEP], [MASK]).

use rand::Rng;

use super::tokenizer::{Encoded, special};

#[derive(Debug, Clone)]
pub struct MaskConfig {
    /// Fraction of eligible tokens to predict (0.15).
    pub prob: f64,
    /// At most this many positions per text (10); also the padded length of the outputs.
    pub max_predictions: usize,
    /// Mask whole words (all pieces of a word together) instead of single pieces.
    pub whole_word: bool,
    pub vocab_size: u32,
}

/// A masked text and its MLM targets.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskedTokens {
    /// The ids the model sees.
    pub input_ids: Vec<u32>,
    /// Masked positions, ascending, padded with 0 to `max_predictions`.
    pub positions: Vec<u32>,
    /// The original ids at those positions, padded with 0.
    pub labels: Vec<u32>,
    /// 1.0 for real predictions, 0.0 for padding.
    pub weights: Vec<f32>,
    /// What each chosen position became, for statistics: 0 = [MASK], 1 = random, 2 = kept.
    pub actions: Vec<u8>,
}

pub fn mask_tokens(enc: &Encoded, cfg: &MaskConfig, rng: &mut impl Rng) -> MaskedTokens {
    // Candidate units: single pieces, or whole words (a start piece and its ## continuations).
    let mut units: Vec<Vec<usize>> = Vec::new();
    for pos in 1..enc.len.saturating_sub(1) {
        let id = enc.ids[pos];
        if id == special::CLS || id == special::SEP || id == special::PAD {
            continue;
        }
        if cfg.whole_word && !enc.word_start[pos] && !units.is_empty() {
            units.last_mut().unwrap().push(pos);
        } else {
            units.push(vec![pos]);
        }
    }
    let eligible: usize = units.iter().map(|u| u.len()).sum();
    let mut input_ids = enc.ids.clone();
    let mut chosen: Vec<usize> = Vec::new();
    if eligible > 0 {
        let target = ((eligible as f64 * cfg.prob).round() as usize)
            .max(1)
            .min(cfg.max_predictions);
        // Fisher–Yates shuffle of the units, then take them in order until the target is met;
        // a whole word that would overshoot is skipped (as Google's script does).
        for i in (1..units.len()).rev() {
            let j = rng.random_range(0..=i);
            units.swap(i, j);
        }
        for u in &units {
            if chosen.len() >= target {
                break;
            }
            if chosen.len() + u.len() > target {
                continue;
            }
            chosen.extend_from_slice(u);
        }
    }
    chosen.sort_unstable();
    let mut positions = Vec::with_capacity(cfg.max_predictions);
    let mut labels = Vec::with_capacity(cfg.max_predictions);
    let mut actions = Vec::with_capacity(chosen.len());
    for &pos in &chosen {
        positions.push(pos as u32);
        labels.push(enc.ids[pos]);
        let r: f64 = rng.random();
        if r < 0.8 {
            input_ids[pos] = special::MASK;
            actions.push(0);
        } else if r < 0.9 {
            actions.push(2);
        } else {
            input_ids[pos] = rng.random_range(special::FIRST_REAL..cfg.vocab_size);
            actions.push(1);
        }
    }
    let n = positions.len();
    let mut weights = vec![1.0f32; n];
    positions.resize(cfg.max_predictions, 0);
    labels.resize(cfg.max_predictions, 0);
    weights.resize(cfg.max_predictions, 0.0);
    MaskedTokens {
        input_ids,
        positions,
        labels,
        weights,
        actions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn enc(n_pieces: usize, max_len: usize) -> Encoded {
        let mut ids = vec![special::CLS];
        ids.extend((0..n_pieces).map(|i| 2000 + i as u32));
        ids.push(special::SEP);
        let len = ids.len();
        ids.resize(max_len, 0);
        let mut mask = vec![1; len];
        mask.resize(max_len, 0);
        // Words of two pieces: every odd piece is a continuation.
        let mut word_start = vec![true];
        word_start.extend((0..n_pieces).map(|i| i % 2 == 0));
        word_start.push(true);
        Encoded {
            ids,
            mask,
            len,
            truncated: false,
            word_start,
        }
    }

    fn cfg(whole_word: bool) -> MaskConfig {
        MaskConfig {
            prob: 0.15,
            max_predictions: 10,
            whole_word,
            vocab_size: 30522,
        }
    }

    #[test]
    fn statistics_match_bert() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let (mut eligible, mut masked) = (0usize, 0usize);
        let mut acts = [0usize; 3];
        for k in 0..20000 {
            let n = 20 + k % 43; // 20..62 pieces
            let e = enc(n, 64);
            let m = mask_tokens(&e, &cfg(false), &mut rng);
            eligible += n;
            let real = m.weights.iter().filter(|w| **w > 0.0).count();
            masked += real;
            for a in &m.actions {
                acts[*a as usize] += 1;
            }
            for (i, &p) in m.positions.iter().enumerate().take(real) {
                assert!(
                    p >= 1 && (p as usize) < e.len - 1,
                    "never [CLS]/[SEP]/[PAD]"
                );
                assert_eq!(m.labels[i], e.ids[p as usize]);
                if i > 0 {
                    assert!(p > m.positions[i - 1], "ascending, distinct");
                }
            }
            assert!(m.positions[real..].iter().all(|p| *p == 0));
        }
        let rate = masked as f64 / eligible as f64;
        assert!((rate - 0.15).abs() < 0.01, "rate {rate}");
        let total = acts.iter().sum::<usize>() as f64;
        assert!((acts[0] as f64 / total - 0.8).abs() < 0.02);
        assert!((acts[1] as f64 / total - 0.1).abs() < 0.02);
        assert!((acts[2] as f64 / total - 0.1).abs() < 0.02);
    }

    #[test]
    fn whole_word_masks_all_pieces_of_a_word() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        for _ in 0..200 {
            let e = enc(40, 64);
            let m = mask_tokens(&e, &cfg(true), &mut rng);
            let real: Vec<u32> = m
                .positions
                .iter()
                .zip(&m.weights)
                .filter(|(_, w)| **w > 0.0)
                .map(|(p, _)| *p)
                .collect();
            for p in &real {
                // pieces 2k+1 (odd positions) start words; their partner is the next position.
                let partner = if p % 2 == 1 { p + 1 } else { p - 1 };
                assert!(real.contains(&partner), "{real:?}");
            }
        }
    }

    #[test]
    fn short_texts_and_empty_texts() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let m = mask_tokens(&enc(1, 64), &cfg(false), &mut rng);
        assert_eq!(m.positions[0], 1);
        assert_eq!(m.weights.iter().sum::<f32>(), 1.0);
        let m = mask_tokens(&enc(0, 64), &cfg(false), &mut rng);
        assert_eq!(m.weights.iter().sum::<f32>(), 0.0);
        assert_eq!(m.positions.len(), 10);
    }
}
