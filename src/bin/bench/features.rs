//! The features benchmark: images/s of the features stage's work (parallel decode and cut, then
//! the folded ResNet-50, batch by batch) against `bench/peer.py features` (torchvision's
//! resnet50) on the same images.

use std::path::{Path, PathBuf};
use std::time::Instant;

use fashionbert::extract::FEATURE_DIM;
use fashionbert::models::resnet::Convention;
use fashionbert::schema::Grid;
use fashionbert::sources::synthetic::{self, SynthConfig};

use crate::report::Row;
use crate::{Args, FASHION_REAL, peer};

/// The image geometry measured: the `patches` stage's defaults (256² images, an 8×8 grid of 32²
/// patches; the masked count plays no part here), which are also the defaults of
/// `bench/peer.py features` (`--image-size 256 --grid 8 --patch-input 32`).
pub const GRID: Grid = Grid {
    image_size: 256,
    grid: 8,
    patch_size: 32,
    masked_patches: 5,
    fit_pad: false,
};

/// At most this many images for the pure-Rust flex row (it is slow).
const FLEX_IMAGES: usize = 16;

/// The features rows: libtorch with both ResNet conventions and, on CPU, flex.
pub fn rows(a: &Args) -> Vec<Row> {
    let tmp = tempfile::tempdir().unwrap();
    let paths = image_list(a, tmp.path());
    let list = tmp.path().join("images.txt");
    std::fs::write(
        &list,
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let pr = peer::run(
        a,
        "features",
        &[
            "--images-list",
            list.to_str().unwrap(),
            "--batch-images",
            &a.batch_images.to_string(),
        ],
    );
    let peer_ips = pr["images_per_s"].as_f64().unwrap();
    let mut rows = Vec::new();
    for conv in [Convention::V1_5, Convention::V1] {
        let ours = images_per_s(&paths, a.tch_kind(), conv, a.batch_images);
        rows.push(Row::versus(
            format!(
                "features ({} images, ResNet-50 {}, {})",
                paths.len(),
                conv.name(),
                a.libtorch()
            ),
            ours,
            peer_ips,
            "images/s",
            if conv == Convention::V1_5 {
                "same network as the peer (torchvision resnet50)".into()
            } else {
                "the stage's default network (stride in the 1×1: fewer FLOPs)".into()
            },
        ));
        if !a.cuda() && a.flex && conv == Convention::V1_5 {
            let few = &paths[..paths.len().min(FLEX_IMAGES)];
            let ours = images_per_s(few, "flex", conv, a.batch_images);
            rows.push(Row::versus(
                format!(
                    "features ({} images, ResNet-50 v1.5, flex: pure Rust)",
                    few.len()
                ),
                ours,
                peer_ips,
                "images/s",
                "burn's pure-Rust CPU backend".into(),
            ));
        }
    }
    rows
}

/// The first `--images` images of fashion-real, or as many synthetic products rendered into
/// `dir`.
fn image_list(a: &Args, dir: &Path) -> Vec<PathBuf> {
    let real = Path::new(FASHION_REAL).join("images");
    let mut v: Vec<PathBuf> = if real.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&real)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    } else {
        let cfg = SynthConfig {
            products: a.images,
            seed: 1,
            ..SynthConfig::default()
        };
        synthetic::products(&cfg)
            .iter()
            .map(|p| {
                let path = dir.join(format!("{}.png", p.product_id));
                synthetic::render(&cfg, p).save(&path).unwrap();
                path
            })
            .collect()
    };
    v.truncate(a.images);
    v
}

/// Images/s of the stage's work on device `kind`: parallel decode + cut, then the folded
/// network, `batch` images at a time, after one warm-up batch.
fn images_per_s(paths: &[PathBuf], kind: &str, conv: Convention, batch: usize) -> f64 {
    use rayon::prelude::*;
    let dev = fashionbert::device::select(kind, 0)
        .unwrap_or_else(|e| panic!("{e}"))
        .device;
    let model = fashionbert::weights::load_resnet50("random:1", Path::new("."), conv, &dev)
        .unwrap()
        .fold();
    // The features stage's default extractor: `patches`, each patch fed at its own side
    // (patch_input 0), grid_scale 1.
    let ex = fashionbert::extract::build(
        fashionbert::extract::ExtractorKind::Patches,
        GRID,
        0,
        1,
        conv,
    )
    .unwrap();
    let run = |chunk: &[PathBuf]| {
        let px: Vec<f32> = chunk
            .par_iter()
            .map(|p| {
                let img = fashionbert::images::decode_file(p).unwrap();
                let mut v = Vec::new();
                ex.prepare(&img, &mut v);
                v
            })
            .flatten()
            .collect();
        let f = ex.features(&model, &dev, px, chunk.len()).unwrap();
        assert_eq!(f.len(), chunk.len() * ex.cells() * FEATURE_DIM);
    };
    run(&paths[..batch.min(paths.len())]); // warm-up
    let t0 = Instant::now();
    for chunk in paths.chunks(batch) {
        run(chunk);
    }
    paths.len() as f64 / t0.elapsed().as_secs_f64()
}
