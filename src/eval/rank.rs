//! `fashionbert rank`: the pipeline's trained model applied to raw images and texts (decoded,
//! featurised with the extractor the pipeline used, tokenized with its vocabulary).

use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::dag::Latest;
use crate::error::{Error, IoContext, Result};
use crate::featstore;
use crate::models::fashionbert::FashionBert;
use crate::models::io;
use crate::models::resnet::Convention;
use crate::schema::Grid;
use crate::text::BertTokenizer;
use crate::training::data::HostBatch;

/// Everything needed to turn raw images and texts into model inputs, from a pipeline's latest
/// entries.
pub struct Scorer {
    pub model: FashionBert,
    pub device: Device,
    resnet: crate::models::resnet::FoldedResNet50,
    ex: Box<dyn crate::extract::FeatureExtractor>,
    tokenizer: BertTokenizer,
    t: usize,
    zero: Vec<f32>,
}

impl Scorer {
    pub fn from_pipeline(l: &Latest) -> Result<Scorer> {
        let compute = crate::device::from_runtime(&l.config.runtime)?;
        let (model, cfg) = io::load(&l.dir("train")?, &compute.device)?;
        let feat_dir = l.dir("features")?;
        let store = featstore::Store::open(&feat_dir)?;
        let ex = &store.meta.extractor;
        let fm = l.manifest("features")?;
        let convention =
            Convention::parse(ex["convention"].as_str().unwrap_or("v1")).unwrap_or(Convention::V1);
        let resnet = crate::weights::load_resnet50(
            fm.params.str("weights")?,
            &l.config.base_dir,
            convention,
            &compute.device,
        )?
        .fold();
        let grid = Grid::read(&l.dir("patches")?)?;
        let ex = crate::extract::from_meta(ex, grid)?;
        let tokenizer = BertTokenizer::from_vocab(&l.path_param("tokenize", "vocab")?)?;
        Ok(Scorer {
            model,
            device: compute.device,
            resnet,
            ex,
            tokenizer,
            t: cfg.text_len,
            zero: store.zero_patch().to_vec(),
        })
    }

    pub fn image_features(&self, img: &image::RgbImage) -> Result<Vec<f32>> {
        let mut px = Vec::with_capacity(self.ex.pixels_per_image());
        self.ex.prepare(img, &mut px);
        self.ex.features(&self.resnet, &self.device, px, 1)
    }

    /// The ITC embedding (L2-normalised) of a text, tokenized as the pipeline's texts were.
    pub fn itc_text(&self, text: &str) -> Result<Vec<f32>> {
        use burn::tensor::{Int, Tensor, TensorData};
        let e = self.tokenizer.encode(text, self.t)?;
        let t = self.t;
        let ids: Vec<i64> = e.ids.iter().map(|&i| i as i64).collect();
        let mask: Vec<f32> = e.mask.iter().map(|&m| m as f32).collect();
        let v = self.model.itc_text(
            Tensor::<2, Int>::from_data(TensorData::new(ids, [1, t]), &self.device),
            Tensor::<2>::from_data(TensorData::new(mask, [1, t]), &self.device),
            Tensor::<2, Int>::zeros([1, t], &self.device),
        );
        v.try_into_vec_as::<f32>()
            .map_err(Error::read_back("an ITC embedding"))
    }

    /// The ITC embedding (L2-normalised) of an image, featurised as the pipeline's images were.
    pub fn itc_image(&self, img: &image::RgbImage) -> Result<Vec<f32>> {
        use burn::tensor::{Tensor, TensorData};
        let f = self.image_features(img)?;
        let (p, d) = (self.ex.cells(), self.zero.len());
        let v = self.model.itc_image(Tensor::<3>::from_data(
            TensorData::new(f, [1, p, d]),
            &self.device,
        ));
        v.try_into_vec_as::<f32>()
            .map_err(Error::read_back("an ITC embedding"))
    }

    /// Log-odds of "matched" for each (features, text).
    pub fn score(&self, items: &[(&[f32], &str)]) -> Result<Vec<f64>> {
        let p = self.ex.cells();
        let segments = vec![0; self.t];
        let mut out = Vec::new();
        for chunk in items.chunks(64) {
            let mut hb = HostBatch::new(self.t, p, self.zero.len(), 1, 1);
            for (feats, text) in chunk {
                let e = self.tokenizer.encode(text, self.t)?;
                let ids: Vec<i32> = e.ids.iter().map(|&i| i as i32).collect();
                let mask: Vec<i32> = e.mask.iter().map(|&m| m as i32).collect();
                hb.push_with_features(&ids, &mask, &segments, feats, None, None, 0);
            }
            let logits = crate::eval::scoring::align_logits(&self.model, &hb, &self.device)?;
            out.extend(logits.iter().map(|l| l[1] as f64 - l[0] as f64));
        }
        Ok(out)
    }
}

fn image_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .at(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| {
                    f.extension()
                        .map(|x| {
                            matches!(
                                x.to_string_lossy().to_lowercase().as_str(),
                                "jpg" | "jpeg" | "png" | "webp" | "bmp"
                            )
                        })
                        .unwrap_or(false)
                })
                .collect();
            v.sort();
            out.extend(v);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// One image against several texts, or one text against several images.
pub enum Query {
    Image { image: PathBuf, texts: Vec<String> },
    Text { text: String, images: Vec<PathBuf> },
}

impl Query {
    /// Builds a query from the command line's images (files or folders of images) and texts
    /// (given, plus the non-empty lines of `texts_file`).
    pub fn new(images: &[PathBuf], texts: &[String], texts_file: Option<&Path>) -> Result<Query> {
        let mut texts = texts.to_vec();
        if let Some(f) = texts_file {
            texts.extend(
                std::fs::read_to_string(f)
                    .at(f)?
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from),
            );
        }
        let mut images = image_files(images)?;
        if images.is_empty() || texts.is_empty() {
            return Err(Error::msg(
                "give one image and several texts (--text/--texts-file), or one text and several images (files or folders)",
            ));
        }
        match (images.len(), texts.len()) {
            (1, _) => Ok(Query::Image {
                image: images.remove(0),
                texts,
            }),
            (_, 1) => Ok(Query::Text {
                text: texts.remove(0),
                images,
            }),
            _ => Err(Error::msg(
                "rank either texts for one image, or images for one text",
            )),
        }
    }

    /// Scores every candidate and returns `(candidate index, log-odds of matched)`, best first.
    pub fn rank(&self, scorer: &Scorer) -> Result<Vec<(usize, f64)>> {
        let features = |p: &Path| -> Result<Vec<f32>> {
            scorer.image_features(&crate::images::decode_file(p)?)
        };
        let scores = match self {
            Query::Image { image, texts } => {
                let f = features(image)?;
                let items: Vec<(&[f32], &str)> =
                    texts.iter().map(|t| (f.as_slice(), t.as_str())).collect();
                scorer.score(&items)?
            }
            Query::Text { text, images } => {
                let feats: Vec<Vec<f32>> =
                    images.iter().map(|p| features(p)).collect::<Result<_>>()?;
                let items: Vec<(&[f32], &str)> = feats
                    .iter()
                    .map(|f| (f.as_slice(), text.as_str()))
                    .collect();
                scorer.score(&items)?
            }
        };
        let mut ranked: Vec<(usize, f64)> = scores.into_iter().enumerate().collect();
        ranked.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
        Ok(ranked)
    }
}
