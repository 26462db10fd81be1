//! Retrieval metrics, corrected and EasyTransfer-compatible.
//!
//! **Corrected** (what to trust): candidates are grouped exactly by query. The ground truth's
//! rank is taken under uniform random tie-breaking, in expectation: with `g` candidates scored
//! strictly higher and `e` others scored equal, the ground truth is equally likely at ranks
//! `g+1 … g+e+1`, so Rank@K counts `clamp((K − g) / (e + 1), 0, 1)` and the reciprocal rank is
//! the mean of `1/r` over those ranks. Deterministic, and a constant scorer gets chance, not
//! 1.0 or 0.0. ACC is `argmax(logits) == label` over all pairs (ties → class 0, as numpy);
//! AUC is the Mann–Whitney statistic with ties counted ½ (as scikit-learn).
//!
//! **EasyTransfer-compatible** (for comparison with the published table): the original
//! script's numbers on the prediction file it would have written, its grouping bug included:
//! in each batch line the first id has no leading space and the others do, so every query is
//! split into two groups and every Rank@K is capped near 0.5; docs sorted (stably) by the raw
//! `logit[1]`; Rank@K = hits / (groups + 1e-5); ACC = correct / (pairs + 1e-5).

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

pub const KS: [usize; 4] = [1, 5, 10, 100];

/// One scored (query, candidate) pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub query: String,
    pub candidate: String,
    pub label: bool,
    pub logits: [f32; 2],
}

impl Scored {
    /// The corrected ranking score: the log-odds of "matched", `logit[1] − logit[0]`.
    pub fn score(&self) -> f64 {
        self.logits[1] as f64 - self.logits[0] as f64
    }
}

/// Accuracy, AUC and Rank@K at [`KS`]: what the corrected and the compatible metrics both
/// report (JSON keys `acc`, `auc`, `rank@1`, …, flattened into each).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Scores {
    pub acc: f64,
    pub auc: f64,
    #[serde(rename = "rank@1")]
    pub rank1: f64,
    #[serde(rename = "rank@5")]
    pub rank5: f64,
    #[serde(rename = "rank@10")]
    pub rank10: f64,
    #[serde(rename = "rank@100")]
    pub rank100: f64,
}

impl Scores {
    /// `ranks`: Rank@K for each K of [`KS`], in order.
    fn new(acc: f64, auc: f64, ranks: [f64; 4]) -> Scores {
        let [rank1, rank5, rank10, rank100] = ranks;
        Scores {
            acc,
            auc,
            rank1,
            rank5,
            rank10,
            rank100,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Compat {
    #[serde(flatten)]
    pub scores: Scores,
    /// The number of groups the buggy grouping makes (about twice the queries).
    pub groups: usize,
    pub batch_size: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    #[serde(flatten)]
    pub scores: Scores,
    pub mrr: f64,
    pub queries: usize,
    pub candidates_per_query: f64,
    pub easytransfer_compatible: Compat,
}

/// The per-query outcome under the corrected metric.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRank {
    pub query: String,
    pub candidates: usize,
    /// Candidates scored strictly higher than the ground truth.
    pub higher: usize,
    /// Other candidates scored equal to the ground truth.
    pub ties: usize,
    /// Expected rank (1-based).
    pub rank: f64,
    /// Expected reciprocal rank.
    pub rr: f64,
}

impl QueryRank {
    /// A ground truth with `higher` candidates scored above it and `ties` others equal: its
    /// expected rank and reciprocal rank under uniform random tie-breaking.
    pub fn new(query: String, candidates: usize, higher: usize, ties: usize) -> QueryRank {
        let rr = (higher + 1..=higher + ties + 1)
            .map(|r| 1.0 / r as f64)
            .sum::<f64>()
            / (ties + 1) as f64;
        QueryRank {
            query,
            candidates,
            higher,
            ties,
            rank: higher as f64 + 1.0 + ties as f64 / 2.0,
            rr,
        }
    }
}

/// P(rank ≤ k) for a ground truth with `g` higher and `e` tied others.
pub fn hit_at(k: usize, g: usize, e: usize) -> f64 {
    ((k as f64 - g as f64) / (e as f64 + 1.0)).clamp(0.0, 1.0)
}

/// Groups pairs by query (first-seen order) and ranks each query's ground truth.
pub fn rank_queries(pairs: &[Scored]) -> Vec<QueryRank> {
    let mut order: Vec<&str> = Vec::new();
    let mut groups: HashMap<&str, Vec<&Scored>> = HashMap::new();
    for p in pairs {
        groups
            .entry(p.query.as_str())
            .or_insert_with(|| {
                order.push(p.query.as_str());
                Vec::new()
            })
            .push(p);
    }
    order
        .into_iter()
        .filter_map(|q| {
            let docs = &groups[q];
            // The best-scored positive is the ground truth (there is normally exactly one).
            let gt = docs
                .iter()
                .filter(|d| d.label)
                .map(|d| d.score())
                .fold(None, |a: Option<f64>, s| Some(a.map_or(s, |a| a.max(s))))?;
            let higher = docs.iter().filter(|d| d.score() > gt).count();
            let ties = docs.iter().filter(|d| d.score() == gt).count() - 1;
            Some(QueryRank::new(q.to_string(), docs.len(), higher, ties))
        })
        .collect()
}

/// Area under the ROC curve (Mann–Whitney U; ties ½). `None` without both classes.
pub fn auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| {
        scores[a]
            .partial_cmp(&scores[b])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let (mut rank_sum, mut npos) = (0f64, 0f64);
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            if labels[k] {
                rank_sum += avg;
                npos += 1.0;
            }
        }
        i = j + 1;
    }
    let nneg = scores.len() as f64 - npos;
    if npos == 0.0 || nneg == 0.0 {
        return None;
    }
    Some((rank_sum - npos * (npos + 1.0) / 2.0) / (npos * nneg))
}

fn accuracy(pairs: &[Scored]) -> f64 {
    let correct = pairs
        .iter()
        .filter(|p| (p.logits[1] > p.logits[0]) == p.label)
        .count();
    correct as f64 / pairs.len().max(1) as f64
}

/// The corrected metrics plus the compatible ones (computed as if written in batches of
/// `batch_size`, the original's predict batch).
pub fn compute(pairs: &[Scored], batch_size: usize) -> Metrics {
    let ranks = rank_queries(pairs);
    let nq = ranks.len().max(1) as f64;
    let at = |k: usize| {
        ranks
            .iter()
            .map(|r| hit_at(k, r.higher, r.ties))
            .sum::<f64>()
            / nq
    };
    let scores: Vec<f64> = pairs.iter().map(|p| p.score()).collect();
    let labels: Vec<bool> = pairs.iter().map(|p| p.label).collect();
    Metrics {
        scores: Scores::new(
            accuracy(pairs),
            auc(&scores, &labels).unwrap_or(f64::NAN),
            KS.map(at),
        ),
        mrr: ranks.iter().map(|r| r.rr).sum::<f64>() / nq,
        queries: ranks.len(),
        candidates_per_query: ranks.iter().map(|r| r.candidates).sum::<usize>() as f64 / nq,
        easytransfer_compatible: compat(pairs, batch_size),
    }
}

/// The original script's numbers on the prediction file written in batches of `batch_size`:
/// each batch line's ids as `str()` of a list of bytes gives `b'id'` for the first row and
/// ` b'id'` (leading space) for the others once split on commas.
pub fn compat(pairs: &[Scored], batch_size: usize) -> Compat {
    let lines: Vec<Vec<PredRow>> = pairs
        .chunks(batch_size.max(1))
        .map(|c| {
            c.iter()
                .enumerate()
                .map(|(i, p)| PredRow {
                    query: format!("{}b'{}'", if i == 0 { "" } else { " " }, p.query),
                    label: p.label as i64,
                    logits: p.logits,
                })
                .collect()
        })
        .collect();
    compat_from_lines(&lines, batch_size)
}

/// One row of a prediction file, reduced to what the metrics use.
#[derive(Debug, Clone, PartialEq)]
pub struct PredRow {
    /// The query id exactly as the original script splits it out of the line (image id for
    /// img2txt, text id for txt2img), leading space included.
    pub query: String,
    pub label: i64,
    pub logits: [f32; 2],
}

/// The original script's arithmetic on the rows of a prediction file, line by line.
pub fn compat_from_lines(lines: &[Vec<PredRow>], batch_size: usize) -> Compat {
    let mut groups: HashMap<&str, Vec<(f32, bool)>> = HashMap::new();
    let mut order: Vec<&str> = Vec::new();
    let (mut n, mut correct) = (0usize, 0usize);
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for r in lines.iter().flatten() {
        n += 1;
        // np.argmax: the first maximum, so a tie predicts class 0.
        let pred = if r.logits[1] > r.logits[0] { 1 } else { 0 };
        if pred == r.label {
            correct += 1;
        }
        groups
            .entry(r.query.as_str())
            .or_insert_with(|| {
                order.push(r.query.as_str());
                Vec::new()
            })
            .push((r.logits[1], r.label != 0));
        scores.push(r.logits[1] as f64);
        labels.push(r.label != 0);
    }
    let ng = order.len();
    let mut hits = [0usize; 4];
    for key in &order {
        let mut docs = groups[key].clone();
        // Stable sort by logit[1], descending (Python's sort(reverse=True) keeps the file order
        // of equal scores).
        docs.sort_by(|a, b| b.0.partial_cmp(&a.0).unwrap_or(std::cmp::Ordering::Equal));
        for (h, &k) in hits.iter_mut().zip(KS.iter()) {
            if docs.iter().take(k.min(docs.len())).any(|d| d.1) {
                *h += 1;
            }
        }
    }
    Compat {
        scores: Scores::new(
            correct as f64 / (n as f64 + 1e-5),
            auc(&scores, &labels).unwrap_or(f64::NAN),
            hits.map(|h| h as f64 / (ng as f64 + 1e-5)),
        ),
        groups: ng,
        batch_size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(q: &str, c: &str, label: bool, l1: f32) -> Scored {
        Scored {
            query: q.into(),
            candidate: c.into(),
            label,
            logits: [0.0, l1],
        }
    }

    #[test]
    fn hand_computed_ranks() {
        // q1: gt scored 0.5, one candidate higher (0.9), one lower → rank 2.
        // q2: gt best → rank 1.
        let pairs = vec![
            s("q1", "a", false, 0.9),
            s("q1", "b", true, 0.5),
            s("q1", "c", false, 0.1),
            s("q2", "a", true, 2.0),
            s("q2", "b", false, 1.0),
        ];
        let m = compute(&pairs, 64);
        assert_eq!(m.queries, 2);
        assert!((m.scores.rank1 - 0.5).abs() < 1e-12);
        assert!((m.scores.rank5 - 1.0).abs() < 1e-12);
        assert!((m.mrr - 0.75).abs() < 1e-12);
        assert!((m.candidates_per_query - 2.5).abs() < 1e-12);
        // AUC: positives 0.5, 2.0; negatives 0.9, 0.1, 1.0 → pairs won: 0.5>0.1 (1), 2.0>all (3) = 4/6.
        assert!((m.scores.auc - 4.0 / 6.0).abs() < 1e-12);
        // ACC: logit1 > logit0 (0) for all → predicts 1 everywhere → 2/5 correct.
        assert!((m.scores.acc - 0.4).abs() < 1e-12);
    }

    #[test]
    fn ties_are_expected_rank() {
        // gt tied with 3 others, none higher: rank uniformly 1..4.
        let pairs: Vec<Scored> = (0..4)
            .map(|i| s("q", &i.to_string(), i == 0, 1.0))
            .collect();
        let r = &rank_queries(&pairs)[0];
        assert_eq!((r.higher, r.ties), (0, 3));
        assert!((hit_at(1, 0, 3) - 0.25).abs() < 1e-12);
        assert!((hit_at(2, 0, 3) - 0.5).abs() < 1e-12);
        assert!((r.rr - (1.0 + 0.5 + 1.0 / 3.0 + 0.25) / 4.0).abs() < 1e-12);
        assert!((auc(&[1.0, 1.0], &[true, false]).unwrap() - 0.5).abs() < 1e-12);
    }

    #[test]
    fn perfect_scorer_is_one_corrected_and_capped_compatible() {
        let mut pairs = Vec::new();
        for q in 0..1000 {
            for c in 0..101 {
                pairs.push(s(
                    &format!("q{q}"),
                    &format!("c{c}"),
                    c == 0,
                    if c == 0 { 5.0 } else { -1.0 },
                ));
            }
        }
        let m = compute(&pairs, 64);
        for v in [
            m.scores.rank1,
            m.scores.rank5,
            m.scores.rank10,
            m.scores.rank100,
            m.mrr,
            m.scores.auc,
        ] {
            assert!((v - 1.0).abs() < 1e-12, "{m:?}");
        }
        let c = &m.easytransfer_compatible;
        assert!(c.groups > 1500, "the bug splits queries: {}", c.groups);
        assert!(c.scores.rank100 <= 0.51 && c.scores.rank1 <= 0.51, "{c:?}");
    }
}
