//! `patches`: the image geometry and the patch masks.
//!
//! Every image is resized to `image_size`² and cut into a `grid`×`grid` grid of square patches
//! of side `image_size / grid`; patch index = row·grid + col (row-major, as the original).
//! Every pair record gets `masked_patches` distinct masked positions, seeded per record.
//!
//! What a masked patch is, precisely: its pixels are set to 0 (black) in RGB *before* the
//! extractor's own preprocessing, so its feature is the feature of an all-zero patch. That
//! feature does not depend on the image, so `features` computes it once (`zero_patch.bin`) and
//! stores every image's *unmasked* patch features; the model input at a masked position is the
//! zero-patch feature, and the masked-patch-modelling target is the unmasked feature.

use rand::Rng;

use crate::dag::params::Choice;
use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, RunContext, Stage, StageError, StageSpec,
};
use crate::images::Fit;
use crate::table::{self, col_i32_lists, col_str};

use crate::schema::{Grid, read_pairs, record_rng};

impl Choice for Fit {
    const CHOICES: &'static [&'static str] = &["stretch", "pad"];
    fn from_choice(s: &str) -> Option<Self> {
        match s {
            "stretch" => Some(Fit::Stretch),
            "pad" => Some(Fit::Pad),
            _ => None,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            Fit::Stretch => "stretch",
            Fit::Pad => "pad",
        }
    }
}

crate::stage_params! {
    /// The params of `patches`.
    pub struct PatchesParams {
        image_size: u32 = (
            K::Int,
            D::Int(256),
            "images are resized to this square (Fashion-Gen: 256)",
        )
        .range(8.0, 4096.0);
        grid: u32 = (K::Int, D::Int(8), "patches per side (8 → 64 patches)").range(1.0, 64.0);
        fit: Fit = (
            K::Choice(Fit::CHOICES),
            D::Str("stretch"),
            "non-square images: stretch to the square, or pad with white",
        );
        masked_patches: usize = (
            K::Int,
            D::Int(5),
            "masked positions per record",
        )
        .range(1.0, 4096.0);
        seed: u64 = (K::Int, D::Int(13), "masking seed").min(0.0);
    }
}

pub const SPEC: StageSpec = StageSpec {
    name: "patches",
    version: 1,
    about: "patch grid geometry and seeded masked-patch positions per record",
    inputs: &[Input::all("pairs"), Input::all("negatives")],
    params: PatchesParams::SPECS,
    outputs: &["patch_masks.parquet", "grid.json"],
};

/// `k` distinct positions out of `n`, ascending.
pub fn sample_positions(n: usize, k: usize, rng: &mut impl Rng) -> Vec<u32> {
    let mut all: Vec<u32> = (0..n as u32).collect();
    for i in 0..k.min(n) {
        let j = rng.random_range(i..n);
        all.swap(i, j);
    }
    let mut out = all[..k.min(n)].to_vec();
    out.sort_unstable();
    out
}

pub struct Patches;

impl Stage for Patches {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let p: PatchesParams = ctx.typed_params()?;
        let image_size = p.image_size;
        let grid = p.grid;
        if grid == 0 || image_size % grid != 0 {
            return Err(format!(
                "image_size {image_size} must be a multiple of grid {grid} (patches are square, no pixels dropped)"
            )
            .into());
        }
        let k = p.masked_patches;
        let n = (grid * grid) as usize;
        if k >= n {
            return Err(
                format!("masked_patches {k} must be below the number of patches {n}").into(),
            );
        }
        let g = Grid {
            image_size,
            grid,
            patch_size: image_size / grid,
            masked_patches: k as u32,
            fit_pad: p.fit == Fit::Pad,
        };
        std::fs::write(
            ctx.out("grid.json"),
            serde_json::to_string_pretty(&g).unwrap(),
        )?;

        let seed = p.seed;
        let mut pairs = read_pairs(&ctx.input("pairs", "pairs.parquet")?)?;
        pairs.extend(read_pairs(&ctx.input("negatives", "negatives.parquet")?)?);
        let mut flat = Vec::with_capacity(pairs.len() * k);
        for pair in &pairs {
            let mut rng = record_rng(seed, &pair.pair_id);
            flat.extend(
                sample_positions(n, k, &mut rng)
                    .into_iter()
                    .map(|v| v as i32),
            );
        }
        let ids: Vec<&str> = pairs.iter().map(|p| p.pair_id.as_str()).collect();
        let imgs: Vec<&str> = pairs.iter().map(|p| p.image_id.as_str()).collect();
        let mut df = table::frame(vec![
            col_str("pair_id", &ids),
            col_str("image_id", &imgs),
            col_i32_lists("masked_patch_positions", &flat, k),
        ])?;
        table::write_parquet(&mut df, &ctx.out("patch_masks.parquet"))?;
        ctx.count("records", pairs.len() as u64);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn positions_are_distinct_sorted_and_uniform() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut hist = [0u32; 64];
        for _ in 0..20000 {
            let v = sample_positions(64, 5, &mut rng);
            assert_eq!(v.len(), 5);
            assert!(v.windows(2).all(|w| w[0] < w[1]));
            for x in v {
                hist[x as usize] += 1;
            }
        }
        let expect = 20000.0 * 5.0 / 64.0;
        assert!(
            hist.iter()
                .all(|&h| (h as f64 - expect).abs() < expect * 0.1),
            "{hist:?}"
        );
    }
}
