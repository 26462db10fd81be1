//! Feature extractors: how an image becomes `cells × 2048` ResNet-50 features. One trait, two
//! implementations, used by the `features` stage, `fashionbert rank`/`evaluate --csv` and the
//! benchmarks alike (the network is set up once, in [`crate::weights::load_resnet50`]).
//!
//! - [`PatchExtractor`] (`extractor = "patches"`, the guide's recipe): the image is resized to
//!   `image_size`², cut into `grid`×`grid` square patches, each resized to `patch_input` and
//!   passed through ResNet-50 on its own; a cell's feature is its patch's global average pool.
//!   A masked patch is an all-zero RGB patch: its feature does not depend on the image.
//! - [`GridExtractor`] (`extractor = "grid"`): one ResNet-50 pass over the whole image resized
//!   to `32·grid·grid_scale`²; the cells are the `grid`×`grid` cells of the stride-32 map
//!   (average-pooled `grid_scale`×`grid_scale` when `grid_scale > 1`). A cell sees its
//!   neighbours, so a masked cell cannot be zeroed in pixels per record without one pass per
//!   record: the masked input is the zero vector, and the masked-patch target stays the unmasked
//!   cell feature.

use burn::tensor::{Tensor, TensorData};

use crate::dag::params::Choice;
use crate::error::{Error, Result};
use crate::images::{Fit, square};
use crate::models::resnet::{Convention, FoldedResNet50};
use crate::schema::Grid;

/// The width of a ResNet-50 feature.
pub const FEATURE_DIM: usize = 2048;

/// Turns decoded images into per-cell features.
pub trait FeatureExtractor: Send + Sync {
    /// Cells (patches) per image.
    fn cells(&self) -> usize;
    /// Preprocessed network input of one image, appended to `out`.
    fn prepare(&self, img: &image::RgbImage, out: &mut Vec<f32>);
    /// Length of one image's [`FeatureExtractor::prepare`] output.
    fn pixels_per_image(&self) -> usize;
    /// `[n_images, cells, 2048]` features, row-major, of `n_images` prepared images.
    fn features(
        &self,
        net: &FoldedResNet50,
        device: &burn::tensor::Device,
        pixels: Vec<f32>,
        n_images: usize,
    ) -> Result<Vec<f32>>;
    /// The feature a masked cell is given (written as the store's `zero_patch.bin`).
    fn masked_feature(
        &self,
        net: &FoldedResNet50,
        device: &burn::tensor::Device,
    ) -> Result<Vec<f32>>;
    /// What the extractor is, for the feature store's metadata (`extractor` object).
    fn describe(&self) -> serde_json::Value;
}

crate::param_choice! {
    /// The feature extractors (`features.extractor`).
    pub enum ExtractorKind {
        /// Each of the grid's patches through ResNet-50 (the guide's recipe).
        Patches = "patches",
        /// One pass over the whole image, the cells of its stride-32 map.
        Grid = "grid",
    }
}

/// The extractor of `kind`.
pub fn build(
    kind: ExtractorKind,
    grid: Grid,
    patch_input: u32,
    grid_scale: u32,
    convention: Convention,
) -> Result<Box<dyn FeatureExtractor>> {
    match kind {
        ExtractorKind::Patches => Ok(Box::new(PatchExtractor {
            grid,
            input: if patch_input == 0 {
                grid.patch_size
            } else {
                patch_input
            },
            convention,
        })),
        ExtractorKind::Grid => {
            if grid_scale == 0 {
                return Err(Error::msg("features.grid_scale must be at least 1"));
            }
            Ok(Box::new(GridExtractor {
                grid,
                scale: grid_scale,
                convention,
            }))
        }
    }
}

/// The extractor a feature store was made with (its `meta.json` `extractor` object), so a
/// model is always fed features made the way its training features were.
pub fn from_meta(ex: &serde_json::Value, grid: Grid) -> Result<Box<dyn FeatureExtractor>> {
    let convention = Convention::parse(ex["convention"].as_str().unwrap_or("v1"))
        .ok_or_else(|| Error::msg(format!("feature store: unknown convention in {ex}")))?;
    let name = ex["extractor"].as_str().unwrap_or("patches");
    let kind = ExtractorKind::from_choice(name).ok_or_else(|| {
        Error::msg(format!(
            "feature store: unknown extractor `{name}` (patches, grid): made by a newer fashionbert?"
        ))
    })?;
    build(
        kind,
        grid,
        ex["patch_input"].as_u64().unwrap_or(0) as u32,
        ex["grid_scale"].as_u64().unwrap_or(1) as u32,
        convention,
    )
}

/// Runs the network on `n` preprocessed `side`² inputs; returns `[n, 2048]` row-major.
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
        .map_err(Error::read_back("features"))
}

/// Cuts an image into preprocessed patch tensors (the `patches` extractor).
#[derive(Debug, Clone, Copy)]
pub struct PatchExtractor {
    pub grid: Grid,
    /// Side of each patch as fed to the network.
    pub input: u32,
    pub convention: Convention,
}

impl PatchExtractor {
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

impl FeatureExtractor for PatchExtractor {
    fn cells(&self) -> usize {
        self.grid.patches()
    }

    fn prepare(&self, img: &image::RgbImage, out: &mut Vec<f32>) {
        self.cut_into(img, out)
    }

    fn pixels_per_image(&self) -> usize {
        self.cells() * 3 * (self.input * self.input) as usize
    }

    fn features(
        &self,
        net: &FoldedResNet50,
        device: &burn::tensor::Device,
        pixels: Vec<f32>,
        n_images: usize,
    ) -> Result<Vec<f32>> {
        run_net(net, device, pixels, n_images * self.cells(), self.input)
    }

    fn masked_feature(
        &self,
        net: &FoldedResNet50,
        device: &burn::tensor::Device,
    ) -> Result<Vec<f32>> {
        run_net(net, device, self.zero_patch(), 1, self.input)
    }

    fn describe(&self) -> serde_json::Value {
        let g = &self.grid;
        serde_json::json!({
            "model": "resnet50",
            "extractor": "patches",
            "convention": self.convention.name(),
            "patch_size": g.patch_size,
            "patch_input": self.input,
            "image_size": g.image_size,
            "grid": g.grid,
            "feature": "global average pool (2048) of each patch",
            "masked_patch": "all-zero RGB pixels before preprocessing",
        })
    }
}

/// One pass over the whole image; the cells of the stride-32 map (the `grid` extractor).
#[derive(Debug, Clone, Copy)]
pub struct GridExtractor {
    pub grid: Grid,
    /// The input side is `32 · grid · scale`; the map is average-pooled by `scale`.
    pub scale: u32,
    pub convention: Convention,
}

impl GridExtractor {
    /// The side the whole image is resized to.
    pub fn input_side(&self) -> u32 {
        32 * self.grid.grid * self.scale
    }
}

impl FeatureExtractor for GridExtractor {
    fn cells(&self) -> usize {
        self.grid.patches()
    }

    fn prepare(&self, img: &image::RgbImage, out: &mut Vec<f32>) {
        let side = self.input_side();
        let sq = square(img, side, self.grid.fit());
        self.convention
            .preprocess_into(sq.as_raw(), (side * side) as usize, out);
    }

    fn pixels_per_image(&self) -> usize {
        3 * (self.input_side() * self.input_side()) as usize
    }

    fn features(
        &self,
        net: &FoldedResNet50,
        device: &burn::tensor::Device,
        pixels: Vec<f32>,
        n_images: usize,
    ) -> Result<Vec<f32>> {
        let s = self.input_side() as usize;
        let g = self.grid.grid as usize;
        let x = Tensor::<4>::from_data(TensorData::new(pixels, [n_images, 3, s, s]), device);
        let map = net.feature_map(x); // [N, 2048, g·scale, g·scale]
        let map = if self.scale > 1 {
            let k = self.scale as usize;
            burn::tensor::module::avg_pool2d(map, burn::tensor::ops::AvgPoolOptions::new([k, k]))
        } else {
            map
        };
        let [n, c, h, w] = map.dims();
        if h != g || w != g {
            return Err(Error::Model(format!(
                "grid extractor: the feature map is {h}×{w}, expected {g}×{g}"
            )));
        }
        map.reshape([n, c, h * w])
            .swap_dims(1, 2)
            .try_into_vec_as::<f32>()
            .map_err(Error::read_back("features"))
    }

    fn masked_feature(
        &self,
        _net: &FoldedResNet50,
        _device: &burn::tensor::Device,
    ) -> Result<Vec<f32>> {
        Ok(vec![0.0; FEATURE_DIM])
    }

    fn describe(&self) -> serde_json::Value {
        let g = &self.grid;
        serde_json::json!({
            "model": "resnet50",
            "extractor": "grid",
            "convention": self.convention.name(),
            "image_input": self.input_side(),
            "grid_scale": self.scale,
            "grid": g.grid,
            "feature": "cells of the stride-32 layer4 map (2048), average-pooled by grid_scale",
            "masked_patch": "the zero vector (a cell's pixels cannot be zeroed without a pass per record)",
        })
    }
}
