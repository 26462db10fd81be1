//! CPU kernels over raw f32 memory for the fused ops ([`super::fused`]): dropout masks from a
//! counter-based generator, and a layer norm's backward. Each splits its work over rayon's
//! threads and, on x86-64 CPUs with AVX-512, runs a copy of its loop compiled for AVX-512
//! (chosen at run time). The copies give the same bits: the masks are integer arithmetic, and
//! every float sum runs in the same order on either path (explicit lanes; Rust never fuses a
//! multiply and an add on its own).

use rayon::prelude::*;

/// φ = 2⁶⁴ / golden ratio: consecutive elements' counters are φ apart.
const PHI: u64 = 0x9E37_79B9_7F4A_7C15;
/// Elements per rayon task.
const CHUNK: usize = 1 << 16;
/// Mask values computed at a time, in a buffer on the stack.
const BLOCK: usize = 512;

/// Whether this CPU runs the AVX-512 copies (AVX-512 F and DQ: 64-bit lane multiplies).
#[cfg(target_arch = "x86_64")]
fn avx512() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512dq")
}

/// What a masked pass does with element `i`'s mask value `m_i`.
#[derive(Clone, Copy)]
enum MaskOp<'a> {
    /// `out[i] = m_i`.
    Set,
    /// `out[i] = src[i] · m_i`.
    Mul(&'a [f32]),
    /// `out[i] *= m_i`.
    MulInPlace,
}

/// The dropout mask of `key` as [`mask_values`] defines it, applied to `out` by `op`, on every
/// core.
fn masked(key: u64, keep: f64, out: &mut [f32], op: MaskOp<'_>) {
    if let MaskOp::Mul(src) = op {
        assert_eq!(src.len(), out.len(), "mask_mul: lengths differ");
    }
    out.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let base = c * CHUNK;
            let op = match op {
                MaskOp::Mul(src) => MaskOp::Mul(&src[base..base + chunk.len()]),
                other => other,
            };
            let args = MaskArgs::new(key, keep, base as u64);
            #[cfg(target_arch = "x86_64")]
            if avx512() {
                // SAFETY: the CPU has AVX-512 F and DQ (checked just above).
                return unsafe { masked_chunk_avx512(args, chunk, op) };
            }
            masked_chunk(args, chunk, op);
        });
}

/// A mask's parameters for one chunk of elements.
#[derive(Clone, Copy)]
struct MaskArgs {
    key: u64,
    threshold: u64,
    scale: f32,
    /// The index of the chunk's first element.
    base: u64,
}

impl MaskArgs {
    /// Element `i` is kept when the top 24 bits of its hash are below `keep · 2²⁴`, and then
    /// scaled by `1 / keep`.
    fn new(key: u64, keep: f64, base: u64) -> Self {
        MaskArgs {
            key,
            threshold: (keep * (1u64 << 24) as f64).round() as u64,
            scale: (1.0 / keep) as f32,
            base,
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn masked_chunk_avx512(a: MaskArgs, out: &mut [f32], op: MaskOp<'_>) {
    masked_chunk(a, out, op);
}

#[inline(always)]
fn masked_chunk(a: MaskArgs, out: &mut [f32], op: MaskOp<'_>) {
    let mut buf = [0f32; BLOCK];
    for (b, out) in out.chunks_mut(BLOCK).enumerate() {
        let m = &mut buf[..out.len()];
        let start = a.base + (b * BLOCK) as u64;
        for (j, v) in m.iter_mut().enumerate() {
            let mut z = a.key.wrapping_add((start + j as u64).wrapping_mul(PHI));
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^= z >> 31;
            *v = if (z >> 40) < a.threshold {
                a.scale
            } else {
                0.0
            };
        }
        match op {
            MaskOp::Set => out.copy_from_slice(m),
            MaskOp::Mul(src) => {
                let src = &src[b * BLOCK..b * BLOCK + out.len()];
                for ((o, s), m) in out.iter_mut().zip(src).zip(m.iter()) {
                    *o = s * m;
                }
            }
            MaskOp::MulInPlace => {
                for (o, m) in out.iter_mut().zip(m.iter()) {
                    *o *= m;
                }
            }
        }
    }
}

/// Fills `out` with a dropout mask: element `i` is `1 / keep` with probability `keep`, else 0,
/// decided by the top 24 bits of `splitmix64(key + i · φ)` (φ = 2⁶⁴ / golden ratio) — the same
/// values for a key whatever the number of threads or the CPU.
pub fn mask_values(key: u64, keep: f64, out: &mut [f32]) {
    masked(key, keep, out, MaskOp::Set);
}

/// `out[i] = src[i] · mask_i` for the dropout mask of `key` ([`mask_values`]), without
/// materialising the mask.
pub fn mask_mul(key: u64, keep: f64, src: &[f32], out: &mut [f32]) {
    masked(key, keep, out, MaskOp::Mul(src));
}

/// `data[i] *= mask_i` for the dropout mask of `key` ([`mask_values`]).
pub fn mask_mul_in_place(key: u64, keep: f64, data: &mut [f32]) {
    masked(key, keep, data, MaskOp::MulInPlace);
}

/// What a layer norm's forward keeps for its backward: the input rows (`h` values each, the
/// length of `gamma`), gamma, and each row's mean and 1 / std.
pub struct LayerNormSaved<'a> {
    pub x: &'a [f32],
    pub gamma: &'a [f32],
    pub mean: &'a [f32],
    pub rstd: &'a [f32],
}

/// Rows per rayon task of the layer-norm backward: the sums over rows run in a fixed order
/// per task, whatever the number of threads.
const LN_ROWS: usize = 32;
/// Independent accumulators of a row's sums, so that the loop vectorises.
const LANES: usize = 16;

/// A layer norm's backward from the output gradient `g`, one pass over each row, rows split
/// over every core: `dx = rstd · (ĝ − mean(ĝ) − x̂ · mean(ĝ · x̂))` with `ĝ = g · gamma` and
/// `x̂ = (x − mean) · rstd`; `dgamma = Σ_rows g · x̂`, `dbeta = Σ_rows g`.
pub fn layer_norm_backward(
    s: LayerNormSaved<'_>,
    g: &[f32],
    dx: &mut [f32],
    dgamma: &mut [f32],
    dbeta: &mut [f32],
) {
    let h = s.gamma.len();
    let rows = s.mean.len();
    assert!(
        h > 0 && s.x.len() == rows * h && g.len() == rows * h && dx.len() == rows * h,
        "layer_norm_backward: {rows} rows of {h} values"
    );
    assert!(s.rstd.len() == rows && dgamma.len() == h && dbeta.len() == h);
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(LN_ROWS * h)
        .enumerate()
        .map(|(c, dx)| {
            let mut sums = (vec![0f32; h], vec![0f32; h]);
            #[cfg(target_arch = "x86_64")]
            if avx512() {
                // SAFETY: the CPU has AVX-512 F (checked just above).
                unsafe { ln_rows_avx512(&s, g, c * LN_ROWS, dx, &mut sums) };
                return sums;
            }
            ln_rows(&s, g, c * LN_ROWS, dx, &mut sums);
            sums
        })
        .collect();
    dgamma.fill(0.0);
    dbeta.fill(0.0);
    for (pg, pb) in &partials {
        for j in 0..h {
            dgamma[j] += pg[j];
            dbeta[j] += pb[j];
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn ln_rows_avx512(
    s: &LayerNormSaved<'_>,
    g: &[f32],
    first: usize,
    dx: &mut [f32],
    sums: &mut (Vec<f32>, Vec<f32>),
) {
    ln_rows(s, g, first, dx, sums);
}

/// The rows `first..` that `dx` covers; their `g · x̂` and `g` added into `sums`.
#[inline(always)]
fn ln_rows(
    s: &LayerNormSaved<'_>,
    g: &[f32],
    first: usize,
    dx: &mut [f32],
    (dgamma, dbeta): &mut (Vec<f32>, Vec<f32>),
) {
    let h = s.gamma.len();
    let inv_h = 1.0 / h as f32;
    for (r, dx) in dx.chunks_mut(h).enumerate() {
        let row = first + r;
        let (x, g) = (&s.x[row * h..][..h], &g[row * h..][..h]);
        let (mean, rstd) = (s.mean[row], s.rstd[row]);
        let (mut a, mut b) = ([0f32; LANES], [0f32; LANES]);
        for j0 in (0..h).step_by(LANES) {
            for l in 0..LANES.min(h - j0) {
                let j = j0 + l;
                let xhat = (x[j] - mean) * rstd;
                let gx = g[j] * s.gamma[j];
                a[l] += gx;
                b[l] += gx * xhat;
                dgamma[j] += g[j] * xhat;
                dbeta[j] += g[j];
            }
        }
        let (a, b) = (a.iter().sum::<f32>() * inv_h, b.iter().sum::<f32>() * inv_h);
        for j in 0..h {
            let xhat = (x[j] - mean) * rstd;
            dx[j] = (g[j] * s.gamma[j] - a - xhat * b) * rstd;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scalar loops, as on a CPU without AVX-512.
    fn masked_scalar(key: u64, keep: f64, out: &mut [f32], op: MaskOp<'_>) {
        masked_chunk(MaskArgs::new(key, keep, 0), out, op);
    }

    #[test]
    fn the_simd_copies_give_the_scalar_loops_bits() {
        let n = 3 * CHUNK + 777;
        let src: Vec<f32> = (0..n).map(|i| (i % 1000) as f32 * 0.37 - 100.0).collect();
        for keep in [0.9, 0.5] {
            let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
            mask_values(42, keep, &mut a);
            masked_scalar(42, keep, &mut b, MaskOp::Set);
            assert_eq!(a, b, "mask values, keep {keep}");
            mask_mul(43, keep, &src, &mut a);
            masked_scalar(43, keep, &mut b, MaskOp::Mul(&src));
            assert_eq!(a, b, "mask_mul, keep {keep}");
            mask_mul_in_place(44, keep, &mut a);
            masked_scalar(44, keep, &mut b, MaskOp::MulInPlace);
            assert_eq!(a, b, "mask_mul_in_place, keep {keep}");
        }
        // The layer-norm backward: the dispatched path against the scalar rows, 2 tasks + a
        // partial one, a row length that is not a multiple of the lanes.
        let (rows, h) = (2 * LN_ROWS + 5, 40);
        let x: Vec<f32> = (0..rows * h)
            .map(|i| ((i * 7919) % 1013) as f32 / 300.0 - 1.5)
            .collect();
        let g: Vec<f32> = (0..rows * h)
            .map(|i| ((i * 104_729) % 997) as f32 / 400.0 - 1.2)
            .collect();
        let gamma: Vec<f32> = (0..h).map(|j| 0.5 + j as f32 / 50.0).collect();
        let mean: Vec<f32> = (0..rows).map(|r| r as f32 / 100.0).collect();
        let rstd: Vec<f32> = (0..rows).map(|r| 1.0 + r as f32 / 70.0).collect();
        let saved = || LayerNormSaved {
            x: &x,
            gamma: &gamma,
            mean: &mean,
            rstd: &rstd,
        };
        let (mut dx, mut dg, mut db) = (vec![0f32; rows * h], vec![0f32; h], vec![0f32; h]);
        layer_norm_backward(saved(), &g, &mut dx, &mut dg, &mut db);
        let mut dx0 = vec![0f32; rows * h];
        let (mut dg0, mut db0) = (vec![0f32; h], vec![0f32; h]);
        for (c, dx) in dx0.chunks_mut(LN_ROWS * h).enumerate() {
            let mut sums = (vec![0f32; h], vec![0f32; h]);
            ln_rows(&saved(), &g, c * LN_ROWS, dx, &mut sums);
            for j in 0..h {
                dg0[j] += sums.0[j];
                db0[j] += sums.1[j];
            }
        }
        assert_eq!((dx, dg, db), (dx0, dg0, db0));
    }
}
