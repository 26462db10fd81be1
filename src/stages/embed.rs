//! `embed`: every product's ITC embeddings (image and text) under the trained model, for search
//! (`fashionbert search`) and for other tools (`numpy.load("image.npy")`, pandas on
//! `items.parquet`). One row per product (its first image with features), in the products'
//! order; the format is `schema::embeddings`. Needs a model with a contrastive head
//! (`train.w_itc > 0`).

use crate::dag::params::Choice;
use crate::dag::{
    Input, ParamDefault as D, ParamKind as K, RunContext, Stage, StageError, StageSpec,
};
use crate::eval::scoring::{Texts, itc_embed};
use crate::featstore;
use crate::models::io;
use crate::schema::embeddings::{Dtype, Embeddings, Item};
use crate::schema::read_products;
use crate::sources::Product;

crate::param_choice! {
    /// Storage type of the embedding matrices (`dtype`).
    pub enum StoreDtype {
        /// 4 bytes a value.
        F32 = "f32",
        /// 2 bytes a value (half the disk; scores within ~1e-3).
        F16 = "f16",
    }
}

crate::param_choice! {
    /// Which products are embedded (`split`).
    pub enum Which {
        All = "all",
        Train = "train",
        Valid = "valid",
    }
}

crate::stage_params! {
    /// The params of `embed`.
    pub struct EmbedParams {
        split: Which = (
            K::Choice(Which::CHOICES),
            D::Str("all"),
            "the products to embed: all, or one split",
        );
        dtype: StoreDtype = (
            K::Choice(StoreDtype::CHOICES),
            D::Str("f32"),
            "storage type of image.npy / text.npy (f16 halves the disk; search reads either)",
        );
        batch_size: usize = (K::Int, D::Int(256), "texts or images per encoding batch").range(1.0, 65536.0);
    }
}

pub const SPEC: StageSpec = StageSpec {
    name: "embed",
    version: 1,
    about: "ITC embeddings of every product's image and text (for search and other tools)",
    inputs: &[
        Input::all("ingest"),
        Input::files("tokenize", &["texts.parquet"]),
        Input::all("features"),
        Input::all("train"),
    ],
    params: EmbedParams::SPECS,
    outputs: &["items.parquet", "image.npy", "text.npy", "meta.json"],
};

pub struct Embed;

impl Stage for Embed {
    fn spec(&self) -> &'static StageSpec {
        &SPEC
    }

    fn run(&self, ctx: &mut RunContext) -> Result<(), StageError> {
        let p: EmbedParams = ctx.typed_params()?;
        let products = read_products(&ctx.input("ingest", "products.parquet")?)?;
        let texts = Texts::read(&ctx.input("tokenize", "texts.parquet")?)?;
        let store = featstore::Store::open(ctx.input_dir("features")?)?;
        let model_dir = ctx.input_dir("train")?.to_path_buf();
        let compute = crate::device::from_runtime(ctx.runtime())?;
        let (model, _) = io::load(&model_dir, &compute.device)?;
        let model_key = model_dir
            .file_name()
            .map(|k| format!("train/{}", k.to_string_lossy()))
            .unwrap_or_default();
        let keep = |q: &Product| match p.split {
            Which::All => true,
            Which::Train => q.split == "train",
            Which::Valid => q.split == "valid",
        };
        let out = embed_products(
            &products,
            &texts,
            &store,
            &model,
            &compute.device,
            &keep,
            p.batch_size,
            model_key,
        )
        .map_err(|e| format!("embed: {e} (split `{}`)", p.split.as_str()))?;
        let dtype = match p.dtype {
            StoreDtype::F32 => Dtype::F32,
            StoreDtype::F16 => Dtype::F16,
        };
        out.write(ctx.out_dir(), dtype)?;
        ctx.count("products", out.len() as u64);
        ctx.note("dim", serde_json::json!(out.dim));
        Ok(())
    }
}

/// The ITC embeddings of every product `keep` keeps that has features and a text (one row per
/// product: its first image), under `model`; `model_name` is what the embeddings record as
/// their model (`train/<key>` for the stage).
#[allow(clippy::too_many_arguments)]
pub fn embed_products(
    products: &[Product],
    texts: &Texts,
    store: &featstore::Store,
    model: &crate::models::fashionbert::FashionBert,
    device: &burn::tensor::Device,
    keep: &dyn Fn(&Product) -> bool,
    batch_size: usize,
    model_name: String,
) -> crate::error::Result<Embeddings> {
    let mut seen = std::collections::HashSet::new();
    let items: Vec<Item> = products
        .iter()
        .filter(|q| keep(q))
        .filter(|q| store.contains(&q.image_id) && texts.get(&q.product_id).is_some())
        .filter(|q| seen.insert(q.product_id.clone()))
        .map(|q| Item {
            product_id: q.product_id.clone(),
            image_id: q.image_id.clone(),
            title: q.title.clone(),
            category: q.category.clone(),
            subcategory: q.subcategory.clone(),
            split: q.split.clone(),
        })
        .collect();
    if items.is_empty() {
        return Err(crate::error::Error::msg(
            "no product has both features and a text",
        ));
    }
    let text_ids: Vec<&str> = items.iter().map(|i| i.product_id.as_str()).collect();
    let image_ids: Vec<&str> = items.iter().map(|i| i.image_id.as_str()).collect();
    let emb = itc_embed(
        model, device, texts, store, &text_ids, &image_ids, batch_size, None,
    )?;
    let (mut image, mut text) = (Vec::new(), Vec::new());
    for i in &items {
        image.extend_from_slice(&emb.image[&i.image_id]);
        text.extend_from_slice(&emb.text[&i.product_id]);
    }
    Ok(Embeddings {
        model: model_name,
        dim: emb.dim,
        scale: emb.scale,
        items,
        image,
        text,
    })
}
