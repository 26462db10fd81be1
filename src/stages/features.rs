//! `features`: ResNet-50 features of every image's 64 patches, once per image.
//!
//! Decoding, resizing and cutting run in parallel on the CPU one batch ahead of the network
//! (a bounded channel keeps memory at a few batches); the network runs on the configured device
//! with BatchNorm folded into the convolutions; features stream into memory-mappable shards.

use std::collections::HashSet;
use std::path::Path;

use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, ParamSpec as P, Params, RawInput, RunContext, Stage,
    StageError, StageSpec,
};
use crate::error::{Error, Result};
use crate::featstore::{FeatDType, Writer};
use crate::images::{Fit, ImageLoader, ImageRef, square};
use crate::models::resnet::{Convention, FoldedResNet50};
use crate::progress::Progress;
use crate::table::{self, col_str};

use super::ingest::read_products;
use super::patches::Grid;

pub const SPEC: StageSpec = StageSpec {
    name: "features",
    version: 1,
    about: "ResNet-50 2048-d features of each image's patches, and of an all-zero patch",
    inputs: &[
        Input::all("ingest"),
        Input::files("patches", &["grid.json"]),
    ],
    params: &[
        P::new(
            "weights",
            K::Str,
            D::Str("weights/resnet50-imagenet-v1.safetensors"),
            "torchvision-named ResNet-50 weights (.safetensors or .pth), or random:<seed>",
        ),
        P::new(
            "convention",
            K::Choice(&["v1", "v1.5"]),
            D::Str("v1"),
            "v1: Caffe/Keras/tf-slim ResNet (the npm weights); v1.5: torchvision",
        ),
        P::new(
            "patch_input",
            K::Int,
            D::Int(0),
            "resize each patch to this side before the network (0 = native patch size)",
        ),
        P::new(
            "batch_images",
            K::Int,
            D::Int(8),
            "images per network batch (× 64 patches)",
        ),
        P::new(
            "dtype",
            K::Choice(&["f16", "f32"]),
            D::Str("f16"),
            "storage precision",
        ),
        P::new(
            "shard_images",
            K::Int,
            D::Int(1024),
            "images per shard file",
        ),
    ],
    outputs: &[
        "index.parquet",
        "meta.json",
        "zero_patch.bin",
        "shards/",
        "rejects.parquet",
    ],
};

pub struct Features;

impl Stage for Features {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn raw_inputs(&self, p: &Params, base: &Path) -> Result<Vec<RawInput>, StageError> {
        let w = p.str("weights")?;
        Ok(if w.starts_with("random") {
            vec![]
        } else {
            vec![RawInput::File(crate::dag::stage::resolve_path(base, w))]
        })
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let p = ctx.params().clone();
        let grid = Grid::read(ctx.input_dir("patches")?)?;
        let convention = Convention::parse(p.str("convention")?).expect("checked choice");
        let compute = crate::device::from_runtime(ctx.runtime())?;
        let model = crate::weights::load_resnet50(
            p.str("weights")?,
            &ctx.base_dir,
            convention,
            &compute.device,
        )?
        .fold();
        let products = read_products(&ctx.input("ingest", "products.parquet")?)?;
        let mut seen = HashSet::new();
        let images: Vec<(String, ImageRef)> = products
            .iter()
            .filter(|pr| seen.insert(pr.image_id.clone()))
            .map(|pr| (pr.image_id.clone(), ImageRef::parse(&pr.image)))
            .collect();
        let loader = ImageLoader::new(&ctx.base_dir, ctx.input_dir("ingest")?);
        let cut = PatchCutter {
            grid,
            input: match p.usize("patch_input")? {
                0 => grid.patch_size,
                n => n as u32,
            },
            convention,
        };
        let extractor = serde_json::json!({
            "model": "resnet50",
            "convention": convention.name(),
            "weights": p.str("weights")?,
            "patch_size": grid.patch_size,
            "patch_input": cut.input,
            "image_size": grid.image_size,
            "grid": grid.grid,
            "feature": "global average pool (2048)",
            "masked_patch": "all-zero RGB pixels before preprocessing",
        });
        let dtype = FeatDType::parse(p.str("dtype")?).expect("checked choice");
        let mut writer = Writer::create(
            ctx.out_dir(),
            dtype,
            grid.patches(),
            2048,
            p.usize("shard_images")?,
            extractor,
        )?;
        let batch = p.usize("batch_images")?.max(1);
        let (rejects, seconds) = extract(
            &model,
            &compute.device,
            &loader,
            &cut,
            &images,
            batch,
            &mut writer,
        )?;
        let zero = cut.zero_patch();
        let zero_feat = run_net(&model, &compute.device, zero, 1, cut.input)?;
        let n = writer.len();
        writer.finish(&zero_feat)?;

        let ids: Vec<&str> = rejects.iter().map(|r| r.0.as_str()).collect();
        let imgs: Vec<String> = rejects.iter().map(|r| r.1.to_string()).collect();
        let why: Vec<&str> = rejects.iter().map(|r| r.2.as_str()).collect();
        let mut df = table::frame(vec![
            col_str("image_id", &ids),
            col_str("image", &imgs),
            col_str("reason", &why),
        ])?;
        table::write_parquet(&mut df, &ctx.out("rejects.parquet"))?;
        for r in &rejects {
            tracing::warn!("features: rejected {} ({}): {}", r.0, r.1, r.2);
        }
        ctx.count("images", n as u64);
        ctx.count("rejected", rejects.len() as u64);
        ctx.note(
            "images_per_second",
            serde_json::json!(n as f64 / seconds.max(1e-9)),
        );
        ctx.note("device", serde_json::json!(compute.kind));
        Ok(())
    }
}

/// Cuts an image into preprocessed patch tensors.
#[derive(Debug, Clone, Copy)]
pub struct PatchCutter {
    pub grid: Grid,
    /// Side of each patch as fed to the network.
    pub input: u32,
    pub convention: Convention,
}

impl PatchCutter {
    /// Preprocessed `[patches, 3, input, input]` floats of one image, appended to `out`.
    pub fn cut_into(&self, img: &image::RgbImage, out: &mut Vec<f32>) {
        let g = &self.grid;
        let sq = square(
            img,
            g.image_size,
            if g.fit_pad { Fit::Pad } else { Fit::Stretch },
        );
        let ps = g.patch_size;
        for r in 0..g.grid {
            for c in 0..g.grid {
                let patch = image::imageops::crop_imm(&sq, c * ps, r * ps, ps, ps).to_image();
                let patch = if self.input != ps {
                    image::imageops::resize(
                        &patch,
                        self.input,
                        self.input,
                        image::imageops::FilterType::Triangle,
                    )
                } else {
                    patch
                };
                self.convention.preprocess_into(
                    patch.as_raw(),
                    (self.input * self.input) as usize,
                    out,
                );
            }
        }
    }

    /// One all-zero patch, preprocessed: what a masked patch is.
    pub fn zero_patch(&self) -> Vec<f32> {
        let n = (self.input * self.input) as usize;
        let mut out = Vec::with_capacity(3 * n);
        self.convention
            .preprocess_into(&vec![0u8; 3 * n], n, &mut out);
        out
    }
}

/// Runs the network on `n` preprocessed patches; returns `[n, 2048]` row-major.
pub fn run_net(
    model: &FoldedResNet50,
    device: &burn::tensor::Device,
    pixels: Vec<f32>,
    n: usize,
    side: u32,
) -> Result<Vec<f32>> {
    let s = side as usize;
    let x = Tensor::<4>::from_data(TensorData::new(pixels, [n, 3, s, s]), device);
    let y = model.pooled(x);
    y.try_into_vec_as::<f32>()
        .map_err(|e| Error::Model(format!("reading features back: {e:?}")))
}

type Rejects = Vec<(String, ImageRef, String)>;

/// The extraction loop: a producer thread prepares batch k+1 while the network runs batch k.
fn extract(
    model: &FoldedResNet50,
    device: &burn::tensor::Device,
    loader: &ImageLoader,
    cut: &PatchCutter,
    images: &[(String, ImageRef)],
    batch: usize,
    writer: &mut Writer,
) -> Result<(Rejects, f64)> {
    let patches = cut.grid.patches();
    let per_image = patches * 3 * (cut.input * cut.input) as usize;
    let bar = Progress::new(images.len() as u64, "images");
    let mut rejects = Vec::new();
    let (tx, rx) = crossbeam_channel::bounded::<(Vec<String>, Vec<f32>, Rejects)>(2);
    std::thread::scope(|scope| -> Result<()> {
        scope.spawn(move || {
            for chunk in images.chunks(batch) {
                let prepared: Vec<_> = chunk
                    .par_iter()
                    .map(|(id, r)| match loader.load(r) {
                        Ok(img) => {
                            let mut v = Vec::with_capacity(per_image);
                            cut.cut_into(&img, &mut v);
                            Ok((id.clone(), v))
                        }
                        Err(e) => Err((id.clone(), r.clone(), format!("{}: {e}", e.reason()))),
                    })
                    .collect();
                let mut ids = Vec::new();
                let mut pixels = Vec::with_capacity(per_image * chunk.len());
                let mut bad = Vec::new();
                for item in prepared {
                    match item {
                        Ok((id, v)) => {
                            ids.push(id);
                            pixels.extend_from_slice(&v);
                        }
                        Err(r) => bad.push(r),
                    }
                }
                if tx.send((ids, pixels, bad)).is_err() {
                    return; // the consumer failed and hung up
                }
            }
        });
        for (ids, pixels, bad) in rx.iter() {
            let n = ids.len();
            if n > 0 {
                let feats = run_net(model, device, pixels, n * patches, cut.input)?;
                let per = patches * 2048;
                for (i, id) in ids.iter().enumerate() {
                    writer.push(id, &feats[i * per..(i + 1) * per])?;
                }
            }
            bar.inc((n + bad.len()) as u64);
            rejects.extend(bad);
        }
        Ok(())
    })?;
    let secs = bar.elapsed();
    bar.finish();
    tracing::info!(
        "features: {} images in {:.1}s ({:.2} images/s)",
        writer.len(),
        secs,
        writer.len() as f64 / secs.max(1e-9)
    );
    Ok((rejects, secs))
}
