//! Hard negatives for the alignment head mined from the ITC similarities (as ALBEF).

use rand::SeedableRng;

use super::data::HostBatch;
use crate::error::{Error, Result};
use burn::tensor::Tensor;

/// One unmatched pair per matched record, drawn with probability ∝ softmax of its ITC
/// similarities over the unmatched candidates: even rows get a negative text for their image,
/// odd rows a negative image for their text. Returns (batch rows of the images, ITC rows of the
/// texts). Seeded by `(seed, step)`.
pub(super) fn mine_negatives(
    sim: &Tensor<2>,
    hb: &HostBatch,
    seed: u64,
    step: usize,
) -> Result<(Vec<i64>, Vec<i64>)> {
    use rand::Rng;
    let n = hb.itc_rows.len();
    let v: Vec<f32> = sim
        .clone()
        .detach()
        .try_into_vec_as::<f32>()
        .map_err(Error::read_back("ITC similarities"))?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
        seed.wrapping_mul(0x9e37_79b9).wrapping_add(step as u64),
    );
    let (mut imgs, mut txts) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        // Row i of sim (image i → texts) or column i (text i → images).
        let cand: Vec<(usize, f32)> = (0..n)
            .filter(|&j| hb.itc_products[j] != hb.itc_products[i])
            .map(|j| {
                (
                    j,
                    if i % 2 == 0 {
                        v[i * n + j]
                    } else {
                        v[j * n + i]
                    },
                )
            })
            .collect();
        if cand.is_empty() {
            continue;
        }
        let max = cand.iter().map(|c| c.1).fold(f32::MIN, f32::max);
        let w: Vec<f64> = cand.iter().map(|c| ((c.1 - max) as f64).exp()).collect();
        let mut u = rng.random::<f64>() * w.iter().sum::<f64>();
        let mut pick = cand[cand.len() - 1].0;
        for (c, wi) in cand.iter().zip(&w) {
            if u < *wi {
                pick = c.0;
                break;
            }
            u -= wi;
        }
        let (img, txt) = if i % 2 == 0 { (i, pick) } else { (pick, i) };
        imgs.push(hb.itc_rows[img]);
        txts.push(txt as i64);
    }
    Ok((imgs, txts))
}
