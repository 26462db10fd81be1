//! `features`: ResNet-50 features of every image's 64 cells, once per image, by the extractor
//! `extractor` names ([`crate::extract`]: `patches`, the guide's 64 patches each through the
//! network, or `grid`, the cells of one pass over the whole image).
//!
//! Decoding, resizing and cutting run in parallel on the CPU one batch ahead of the network
//! (a bounded channel keeps memory at a few batches); the network runs on the configured device
//! with BatchNorm folded into the convolutions; features stream into memory-mappable shards.

use std::path::{Path, PathBuf};

use rayon::prelude::*;

use crate::dag::params::Choice;
use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, Params, RawInput, RunContext, ShardId, Stage,
    StageError, StageParams, StageSpec,
};
use crate::error::Result;
use crate::extract::{ExtractorKind, FEATURE_DIM, FeatureExtractor};
use crate::featstore::{self, FeatDType, Writer};
use crate::images::{ImageLoader, ImageRef};
use crate::models::resnet::{Convention, FoldedResNet50};
use crate::progress::Progress;
use crate::table::{self, col_str};

use crate::schema::{Grid, read_images};

impl Choice for Convention {
    const CHOICES: &'static [&'static str] = &["v1", "v1.5"];
    fn from_choice(s: &str) -> Option<Self> {
        Convention::parse(s)
    }
    fn as_str(self) -> &'static str {
        self.name()
    }
}

impl Choice for FeatDType {
    const CHOICES: &'static [&'static str] = &["f16", "f32"];
    fn from_choice(s: &str) -> Option<Self> {
        FeatDType::parse(s)
    }
    fn as_str(self) -> &'static str {
        match self {
            FeatDType::F16 => "f16",
            FeatDType::F32 => "f32",
        }
    }
}

crate::stage_params! {
    /// The params of `features`.
    pub struct FeaturesParams {
        weights: String = (
            K::Path,
            D::Str("weights/resnet50-imagenet-v1.safetensors"),
            "torchvision-named ResNet-50 weights (.safetensors or .pth), or random:<seed>",
        );
        convention: Convention = (
            K::Choice(Convention::CHOICES),
            D::Str("v1"),
            "v1: Caffe/Keras/tf-slim ResNet (the npm weights); v1.5: torchvision",
        );
        extractor: ExtractorKind = (
            K::Choice(ExtractorKind::CHOICES),
            D::Str("patches"),
            "patches: each of the 8×8 patches through ResNet-50 (the guide); grid: one pass over the whole image, its 8×8 stride-32 cells",
        );
        grid_scale: u32 = (
            K::Int,
            D::Int(1),
            "grid: feed the image at 32·grid·grid_scale px and average-pool the map down to grid×grid",
        )
        .range(1.0, 8.0);
        patch_input: u32 = (
            K::Int,
            D::Int(0),
            "patches: resize each patch to this side before the network (0 = native patch size)",
        )
        .range(0.0, 1024.0);
        batch_images: usize = (
            K::Int,
            D::Int(8),
            "images per network batch (× 64 patches)",
        )
        .min(1.0);
        dtype: FeatDType = (K::Choice(FeatDType::CHOICES), D::Str("f16"), "storage precision");
        shard_images: usize = (K::Int, D::Int(1024), "images per shard file").min(1.0);
    }
}

pub const SPEC: StageSpec = StageSpec {
    name: "features",
    version: 2,
    about: "ResNet-50 2048-d features of each image's patches, and of an all-zero patch",
    inputs: &[
        // Only the images (ids, references, content hashes): a change to the products' texts
        // leaves the features cached.
        Input::files("ingest", &["images.parquet"]),
        Input::files("patches", &["grid.json"]),
    ],
    params: FeaturesParams::SPECS,
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
        let p = FeaturesParams::from_params(p)?;
        let w = p.weights.as_str();
        Ok(if w.starts_with("random") {
            vec![]
        } else {
            vec![RawInput::File(crate::dag::stage::resolve_path(base, w))]
        })
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let images = image_list(ctx)?;
        compute(ctx, &images)
    }

    fn shardable(&self) -> bool {
        true
    }

    /// The network batches (`batch_images` consecutive images in ingest order) whose first
    /// image id hashes to this shard: the same batches an unsharded run forms, so every image's
    /// features come out bit for bit the same.
    fn run_shard(&self, ctx: &mut RunContext, shard: ShardId) -> Result<(), StageError> {
        let images = image_list(ctx)?;
        let mine: Vec<(String, ImageRef)> = images
            .chunks(batch_images(ctx)?)
            .filter(|batch| batch_shard(batch, shard.count) == shard.index)
            .flatten()
            .cloned()
            .collect();
        tracing::info!(
            "features: shard {shard} has {} of {} images",
            mine.len(),
            images.len()
        );
        compute(ctx, &mine)
    }

    /// Copies each image's features out of its batch's part, in ingest order, into fresh
    /// shards: byte for byte what `run` writes.
    fn merge(&self, ctx: &mut RunContext, parts: &[PathBuf]) -> Result<(), StageError> {
        let images = image_list(ctx)?;
        let stores = parts
            .iter()
            .map(|d| featstore::Store::open(d))
            .collect::<Result<Vec<_>>>()?;
        let first = stores.first().ok_or("no parts to merge")?;
        for (s, d) in stores.iter().zip(parts) {
            let same = s.meta.dtype == first.meta.dtype
                && s.meta.patches == first.meta.patches
                && s.meta.dim == first.meta.dim
                && s.meta.extractor == first.meta.extractor
                && s.zero_patch() == first.zero_patch();
            if !same {
                return Err(format!(
                    "part {} was made differently from {} (dtype, shape, extractor or masked-cell feature differ): the parts come from different builds; remove {} and run again",
                    d.display(),
                    parts[0].display(),
                    d.parent().map(|p| p.display().to_string()).unwrap_or_default()
                )
                .into());
            }
        }
        let mut part_rejects = std::collections::HashMap::new();
        for d in parts {
            let df = table::read_parquet(&d.join("rejects.parquet"))?;
            let ids = table::strings(&df, "image_id")?;
            let why = table::strings(&df, "reason")?;
            part_rejects.extend(ids.into_iter().zip(why));
        }
        let mut writer = Writer::create(
            ctx.out_dir(),
            first.meta.dtype,
            first.meta.patches,
            first.meta.dim,
            ctx.typed_params::<FeaturesParams>()?.shard_images,
            first.meta.extractor.clone(),
        )?;
        let mut rejects = Vec::new();
        let mut buf = Vec::with_capacity(first.meta.patches * first.meta.dim);
        for batch in images.chunks(batch_images(ctx)?) {
            let s = &stores[batch_shard(batch, parts.len())];
            for (id, r) in batch {
                if s.contains(id) {
                    buf.clear();
                    s.read_into(id, &mut buf)?;
                    writer.push(id, &buf)?;
                } else if let Some(why) = part_rejects.remove(id) {
                    rejects.push((id.clone(), r.clone(), why));
                } else {
                    return Err(format!(
                        "image `{id}` is missing from its part {}: the parts were made from another ingest; remove {} and run again",
                        s.dir().display(),
                        parts[0].parent().map(|p| p.display().to_string()).unwrap_or_default()
                    )
                    .into());
                }
            }
        }
        let n = writer.len();
        writer.finish(first.zero_patch())?;
        write_rejects(ctx, &rejects)?;
        ctx.count("images", n as u64);
        ctx.count("rejected", rejects.len() as u64);
        ctx.note("merged_parts", serde_json::json!(parts.len()));
        Ok(())
    }
}

/// The network batch size, and the unit of work a shard takes.
fn batch_images(ctx: &RunContext) -> Result<usize, StageError> {
    Ok(ctx.typed_params::<FeaturesParams>()?.batch_images.max(1))
}

/// The shard (of `count`) a network batch belongs to: the hash of its first image id.
fn batch_shard(batch: &[(String, ImageRef)], count: usize) -> usize {
    ShardId::of_key(&batch[0].0, count)
}

/// Every distinct image of `ingest`'s products, in product order.
fn image_list(ctx: &RunContext) -> Result<Vec<(String, ImageRef)>, StageError> {
    let images = read_images(&ctx.input("ingest", "images.parquet")?)?;
    Ok(images
        .into_iter()
        .map(|r| {
            let image = ImageRef::parse(&r.image);
            (r.image_id, image)
        })
        .collect())
}

/// Extracts the features of `images` into `ctx.out_dir()`: the feature store and the
/// rejects. `run` gives it every image, `run_shard` its shard's.
fn compute(ctx: &mut RunContext, images: &[(String, ImageRef)]) -> Result<(), StageError> {
    let p: FeaturesParams = ctx.typed_params()?;
    let grid = Grid::read(ctx.input_dir("patches")?)?;
    let convention = p.convention;
    let compute = crate::device::from_runtime(ctx.runtime())?;
    let model = crate::weights::load_resnet50(
        p.weights.as_str(),
        &ctx.base_dir,
        convention,
        &compute.device,
    )?
    .fold();
    let loader = ImageLoader::new(&ctx.base_dir, ctx.input_dir("ingest")?);
    let ex = crate::extract::build(p.extractor, grid, p.patch_input, p.grid_scale, convention)?;
    let mut extractor = ex.describe();
    extractor["weights"] = serde_json::json!(p.weights.as_str());
    let dtype = p.dtype;
    let mut writer = Writer::create(
        ctx.out_dir(),
        dtype,
        grid.patches(),
        FEATURE_DIM,
        p.shard_images,
        extractor,
    )?;
    let batch = batch_images(ctx)?;
    let (rejects, seconds) = extract(
        &model,
        &compute.device,
        &loader,
        ex.as_ref(),
        images,
        batch,
        &mut writer,
    )?;
    let zero_feat = ex.masked_feature(&model, &compute.device)?;
    let n = writer.len();
    writer.finish(&zero_feat)?;
    write_rejects(ctx, &rejects)?;
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

fn write_rejects(ctx: &RunContext, rejects: &Rejects) -> Result<()> {
    let ids: Vec<&str> = rejects.iter().map(|r| r.0.as_str()).collect();
    let imgs: Vec<String> = rejects.iter().map(|r| r.1.to_string()).collect();
    let why: Vec<&str> = rejects.iter().map(|r| r.2.as_str()).collect();
    let mut df = table::frame(vec![
        col_str("image_id", &ids),
        col_str("image", &imgs),
        col_str("reason", &why),
    ])?;
    table::write_parquet(&mut df, &ctx.out("rejects.parquet"))?;
    Ok(())
}

type Rejects = Vec<(String, ImageRef, String)>;

/// The extraction loop: a producer thread prepares batch k+1 while the network runs batch k.
fn extract(
    model: &FoldedResNet50,
    device: &burn::tensor::Device,
    loader: &ImageLoader,
    ex: &dyn FeatureExtractor,
    images: &[(String, ImageRef)],
    batch: usize,
    writer: &mut Writer,
) -> Result<(Rejects, f64)> {
    let patches = ex.cells();
    let per_image = ex.pixels_per_image();
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
                            ex.prepare(&img, &mut v);
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
        // The receiver is owned here, so an error below drops it before the scope joins the
        // producer: its next `send` fails and it returns (a full disk must end the run, not
        // leave the producer blocked on a channel nobody reads).
        let rx = rx;
        for (ids, pixels, bad) in rx.iter() {
            let n = ids.len();
            if n > 0 {
                let feats = ex.features(model, device, pixels, n)?;
                let per = patches * FEATURE_DIM;
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
