//! A linear two-tower probe: the simple baseline `evaluate` reports beside the model, on exactly
//! the same eval sets.
//!
//! Text: TF-IDF of the text's WordPiece ids (specials dropped; idf `ln((1+n)/(1+df)) + 1` over the
//! fit products, as scikit-learn), L2-normalised. Image: `log1p` of the mean of its cell features,
//! standardised with the fit products' mean and deviation. A ridge map from image to text is fitted
//! on up to `fit_products` train products in its dual (kernel) form, so it works in the full
//! 2048-d and vocabulary-sized spaces without an SVD: with `X` the fit images and `B` their texts,
//! `p(x) = Bᵀ (X Xᵀ + λI)⁻¹ X x`, `λ = ridge · mean(diag X Xᵀ)`. The score of (image, text) is
//! the cosine of `p(image)` and the text's vector. Deterministic: f64 arithmetic, fixed orders.

use std::collections::HashMap;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::featstore;
use crate::sources::Product;

use super::scoring::Texts;

/// Token ids at or below this are BERT's specials (`[PAD]`, `[unusedN]`, `[UNK]`, `[CLS]`,
/// `[SEP]`, `[MASK]` in the bert-base-uncased layout).
const LAST_SPECIAL_ID: i32 = 103;

/// Settings of the probe.
#[derive(Debug, Clone, Copy)]
pub struct ProbeConfig {
    /// Train products the ridge map is fitted on (fewer if the split has fewer).
    pub fit_products: usize,
    /// λ relative to the mean squared norm of the standardised images.
    pub ridge: f64,
    pub seed: u64,
}

/// A fitted probe.
pub struct Probe {
    idf: HashMap<i32, f64>,
    mean: Vec<f64>,
    std: Vec<f64>,
    /// `[n, d]` standardised fit images.
    x: Vec<Vec<f64>>,
    /// Fit texts (sparse, unit norm).
    b: Vec<Vec<(i32, f64)>>,
    /// Cholesky factor `L` of `X Xᵀ + λI` (row-major lower triangle, `n × n`) and its
    /// transpose (row-major upper triangle), so both solves read rows.
    chol: Vec<f64>,
    chol_t: Vec<f64>,
    /// `B Bᵀ` (`n × n`).
    gram_b: Vec<f64>,
}

fn dot_sparse(a: &[(i32, f64)], b: &[(i32, f64)]) -> f64 {
    let (mut i, mut j, mut s) = (0, 0, 0.0);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                s += a[i].1 * b[j].1;
                i += 1;
                j += 1;
            }
        }
    }
    s
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Term counts of a text's non-special ids, sorted by id.
fn counts(ids: &[i32], mask: &[i32]) -> Vec<(i32, f64)> {
    let mut v: Vec<i32> = ids
        .iter()
        .zip(mask)
        .filter(|&(&id, &m)| m != 0 && id > LAST_SPECIAL_ID)
        .map(|(&id, _)| id)
        .collect();
    v.sort_unstable();
    let mut out: Vec<(i32, f64)> = Vec::new();
    for id in v {
        match out.last_mut() {
            Some((last, c)) if *last == id => *c += 1.0,
            _ => out.push((id, 1.0)),
        }
    }
    out
}

/// In-place Cholesky of a symmetric positive definite `n × n` matrix (lower triangle).
fn cholesky(a: &mut [f64], n: usize) -> Result<()> {
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= a[j * n + k] * a[j * n + k];
        }
        if d <= 0.0 {
            return Err(Error::msg(
                "probe: the ridge system is not positive definite",
            ));
        }
        let d = d.sqrt();
        a[j * n + j] = d;
        let (head, tail) = a.split_at_mut((j + 1) * n);
        let row_j = &head[j * n..j * n + j];
        tail.par_chunks_mut(n).for_each(|row_i| {
            let s = row_i[j] - dot(&row_i[..j], row_j);
            row_i[j] = s / d;
        });
    }
    Ok(())
}

/// The transpose of an `n × n` row-major matrix.
fn transpose(a: &[f64], n: usize) -> Vec<f64> {
    (0..n * n).map(|ij| a[(ij % n) * n + ij / n]).collect()
}

/// Solves `L Lᵀ u = k` for `u`, given `L` and `Lᵀ`.
fn chol_solve(l: &[f64], lt: &[f64], n: usize, k: &[f64]) -> Vec<f64> {
    let mut y = vec![0.0; n];
    for i in 0..n {
        y[i] = (k[i] - dot(&l[i * n..i * n + i], &y[..i])) / l[i * n + i];
    }
    let mut u = vec![0.0; n];
    for i in (0..n).rev() {
        u[i] = (y[i] - dot(&lt[i * n + i + 1..(i + 1) * n], &u[i + 1..])) / lt[i * n + i];
    }
    u
}

impl Probe {
    /// Fits the probe on train products that have features and tokens.
    pub fn fit(
        products: &[Product],
        texts: &Texts,
        store: &featstore::Store,
        cfg: ProbeConfig,
    ) -> Result<Probe> {
        let mut seen = std::collections::HashSet::new();
        let mut fit: Vec<&Product> = products
            .iter()
            .filter(|p| {
                p.split == "train"
                    && store.contains(&p.image_id)
                    && texts.get(&p.product_id).is_some()
                    && seen.insert(p.product_id.as_str())
            })
            .collect();
        fit.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed));
        fit.truncate(cfg.fit_products);
        let n = fit.len();
        if n < 2 {
            return Err(Error::msg(format!(
                "probe: {n} train product(s) with features; it needs at least 2"
            )));
        }
        // Text side: idf over the fit texts.
        let tf: Vec<Vec<(i32, f64)>> = fit
            .iter()
            .map(|p| {
                let (ids, mask) = texts.get(&p.product_id).expect("filtered");
                counts(ids, mask)
            })
            .collect();
        let mut df: HashMap<i32, f64> = HashMap::new();
        for t in &tf {
            for &(id, _) in t {
                *df.entry(id).or_default() += 1.0;
            }
        }
        let idf: HashMap<i32, f64> = df
            .into_iter()
            .map(|(id, d)| (id, ((1.0 + n as f64) / (1.0 + d)).ln() + 1.0))
            .collect();
        let mut probe = Probe {
            idf,
            mean: vec![],
            std: vec![],
            x: vec![],
            b: vec![],
            chol: vec![],
            chol_t: vec![],
            gram_b: vec![],
        };
        probe.b = tf.iter().map(|t| probe.tfidf(t)).collect();
        // Image side: standardised log1p means.
        let raw: Vec<Vec<f64>> = fit
            .iter()
            .map(|p| image_mean(store, &p.image_id))
            .collect::<Result<_>>()?;
        let d = raw[0].len();
        let mut mean = vec![0.0; d];
        for r in &raw {
            for (m, v) in mean.iter_mut().zip(r) {
                *m += v / n as f64;
            }
        }
        let mut std = vec![0.0; d];
        for r in &raw {
            for ((s, v), m) in std.iter_mut().zip(r).zip(&mean) {
                *s += (v - m) * (v - m) / n as f64;
            }
        }
        probe.std = std.into_iter().map(|s| s.sqrt().max(1e-6)).collect();
        probe.mean = mean;
        probe.x = raw.iter().map(|r| probe.standardise(r)).collect();
        // Kernel and its Cholesky factor.
        let x = &probe.x;
        let mut k: Vec<f64> = (0..n * n)
            .into_par_iter()
            .map(|ij| dot(&x[ij / n], &x[ij % n]))
            .collect();
        let mean_diag = (0..n).map(|i| k[i * n + i]).sum::<f64>() / n as f64;
        let lambda = cfg.ridge * mean_diag.max(1e-12);
        for i in 0..n {
            k[i * n + i] += lambda;
        }
        cholesky(&mut k, n)?;
        // Keep only the lower triangle, so the transpose is exactly upper triangular.
        for i in 0..n {
            for j in i + 1..n {
                k[i * n + j] = 0.0;
            }
        }
        probe.chol_t = transpose(&k, n);
        probe.chol = k;
        let b = &probe.b;
        probe.gram_b = (0..n * n)
            .into_par_iter()
            .map(|ij| dot_sparse(&b[ij / n], &b[ij % n]))
            .collect();
        Ok(probe)
    }

    /// Products the map was fitted on.
    pub fn fit_products(&self) -> usize {
        self.x.len()
    }

    fn tfidf(&self, tf: &[(i32, f64)]) -> Vec<(i32, f64)> {
        // Ids unseen in the fit texts have no idf: they cannot match anything and are dropped.
        let v: Vec<(i32, f64)> = tf
            .iter()
            .filter_map(|&(id, c)| self.idf.get(&id).map(|w| (id, c * w)))
            .collect();
        let norm = v.iter().map(|x| x.1 * x.1).sum::<f64>().sqrt().max(1e-12);
        v.into_iter().map(|(id, w)| (id, w / norm)).collect()
    }

    fn standardise(&self, raw: &[f64]) -> Vec<f64> {
        raw.iter()
            .zip(&self.mean)
            .zip(&self.std)
            .map(|((v, m), s)| (v - m) / s)
            .collect()
    }

    /// Scores `(image_id, text_id)` pairs: the cosine of the mapped image and the text.
    pub fn score_pairs(
        &self,
        texts: &Texts,
        store: &featstore::Store,
        pairs: &[(String, String)],
    ) -> Result<HashMap<(String, String), f32>> {
        let n = self.x.len();
        let mut images: Vec<&str> = pairs.iter().map(|p| p.0.as_str()).collect();
        images.sort_unstable();
        images.dedup();
        let mut text_ids: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
        text_ids.sort_unstable();
        text_ids.dedup();
        // Per image: u = (K + λI)⁻¹ k(x) and ‖p(x)‖ = √(uᵀ B Bᵀ u).
        let img: HashMap<&str, (Vec<f64>, f64)> = images
            .par_iter()
            .map(|&id| -> Result<(&str, (Vec<f64>, f64))> {
                let x = self.standardise(&image_mean(store, id)?);
                let k: Vec<f64> = self.x.iter().map(|xi| dot(xi, &x)).collect();
                let u = chol_solve(&self.chol, &self.chol_t, n, &k);
                let gu: Vec<f64> = (0..n)
                    .map(|i| dot(&self.gram_b[i * n..(i + 1) * n], &u))
                    .collect();
                let norm = dot(&u, &gu).max(0.0).sqrt().max(1e-12);
                Ok((id, (u, norm)))
            })
            .collect::<Result<_>>()?;
        // Per text: b = B t.
        let txt: HashMap<&str, Vec<f64>> = text_ids
            .par_iter()
            .map(|&id| -> Result<(&str, Vec<f64>)> {
                let (ids, mask) = texts
                    .get(id)
                    .ok_or_else(|| Error::msg(format!("probe: no tokens for text `{id}`")))?;
                let t = self.tfidf(&counts(ids, mask));
                Ok((id, self.b.iter().map(|bi| dot_sparse(bi, &t)).collect()))
            })
            .collect::<Result<_>>()?;
        Ok(pairs
            .iter()
            .map(|(i, t)| {
                let (u, norm) = &img[i.as_str()];
                (
                    (i.clone(), t.clone()),
                    (dot(u, &txt[t.as_str()]) / norm) as f32,
                )
            })
            .collect())
    }
}

/// `log1p` of the mean cell feature of an image.
fn image_mean(store: &featstore::Store, image_id: &str) -> Result<Vec<f64>> {
    let mut v = Vec::new();
    store.read_into(image_id, &mut v)?;
    let (p, d) = (store.meta.patches, store.meta.dim);
    let mut m = vec![0.0f64; d];
    for c in 0..p {
        for (j, mj) in m.iter_mut().enumerate() {
            *mj += v[c * d + j] as f64;
        }
    }
    Ok(m.into_iter()
        .map(|s| (s / p as f64).max(0.0).ln_1p())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cholesky_solves_a_small_system() {
        // A = [[4, 2], [2, 3]], A u = [2, 1] → u = [0.5, 0].
        let mut a = vec![4.0, 2.0, 2.0, 3.0];
        cholesky(&mut a, 2).unwrap();
        a[1] = 0.0;
        let u = chol_solve(&a, &transpose(&a, 2), 2, &[2.0, 1.0]);
        assert!((u[0] - 0.5).abs() < 1e-12 && u[1].abs() < 1e-12, "{u:?}");
        let mut bad = vec![1.0, 2.0, 2.0, 1.0];
        assert!(cholesky(&mut bad, 2).is_err());
    }

    #[test]
    fn counts_drop_specials_and_padding() {
        let c = counts(&[101, 2000, 2001, 2000, 102, 0], &[1, 1, 1, 1, 1, 0]);
        assert_eq!(c, vec![(2000, 2.0), (2001, 1.0)]);
        assert_eq!(dot_sparse(&c, &[(2000, 1.0), (2002, 5.0)]), 2.0);
    }
}
