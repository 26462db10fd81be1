//! Verbs that use a pipeline's latest artefacts: `show` a record, `rank` with the trained model,
//! move records to and from the original's TSV format, and score original-format eval files.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;

use crate::dag::{DagError, Manifest, PipelineConfig, Store};
use crate::error::{Error, IoContext, Result};
use crate::eval::metrics::{self, PredRow, Scored};
use crate::featstore;
use crate::images::{ImageLoader, ImageRef};
use crate::models::fashionbert::FashionBert;
use crate::models::io;
use crate::models::resnet::Convention;
use crate::stages::patches::Grid;
use crate::table;
use crate::text::BertTokenizer;
use crate::training::data::{HostBatch, Records};
use crate::tsv;

/// The latest entries of a pipeline's stages.
pub struct Latest {
    pub config: PipelineConfig,
    store: Store,
}

impl Latest {
    pub fn open(config_file: &Path) -> Result<Latest> {
        let registry = crate::stages::registry();
        let config = PipelineConfig::load(config_file, &registry).map_err(DagError::from)?;
        let store =
            Store::open(&config.artifacts).map_err(|e| DagError::io(&config.artifacts, e))?;
        Ok(Latest { config, store })
    }

    pub fn dir(&self, stage: &str) -> Result<PathBuf> {
        let key = self.store.latest(stage).ok_or_else(|| {
            Error::msg(format!(
                "stage `{stage}` has no outputs in {}: run `fashionbert run {stage} --config {}` first",
                self.config.artifacts.display(),
                self.config.file.display()
            ))
        })?;
        Ok(self.store.entry_dir(stage, &key))
    }

    pub fn manifest(&self, stage: &str) -> Result<Manifest> {
        let d = self.dir(stage)?;
        Manifest::read(&d).map_err(|e| Error::io(&d, e))
    }

    pub fn device(&self) -> Result<crate::device::Compute> {
        crate::device::from_runtime(&self.config.runtime)
    }
}

// ---- show -----------------------------------------------------------------------------------

/// Draws a record: its image with the patch grid and masked patches blacked out, its text with
/// masked tokens marked, and its label.
pub fn show(config_file: &Path, record: &str, out: &Path) -> Result<()> {
    let l = Latest::open(config_file)?;
    let mut pairs = crate::stages::pairs::read_pairs(&l.dir("pairs")?.join("pairs.parquet"))?;
    pairs.extend(crate::stages::pairs::read_pairs(
        &l.dir("negatives")?.join("negatives.parquet"),
    )?);
    let pair = pairs.iter().find(|p| p.pair_id == record).ok_or_else(|| {
        Error::msg(format!(
            "no record `{record}`; record ids look like {} (positives p:<image id>, negatives n:<image id>)",
            pairs.iter().take(3).map(|p| p.pair_id.as_str()).collect::<Vec<_>>().join(", ")
        ))
    })?;
    let ingest = l.dir("ingest")?;
    let products = crate::stages::ingest::read_products(&ingest.join("products.parquet"))?;
    let product = products
        .iter()
        .find(|p| p.image_id == pair.image_id)
        .ok_or_else(|| {
            Error::msg(format!(
                "image {} is not in ingest's products",
                pair.image_id
            ))
        })?;
    let grid = Grid::read(&l.dir("patches")?)?;
    let masks = table::read_parquet(&l.dir("patches")?.join("patch_masks.parquet"))?;
    let ids = table::strings(&masks, "pair_id")?;
    let row = ids
        .iter()
        .position(|i| i == record)
        .ok_or_else(|| Error::msg("record has no patch mask"))?;
    let m = grid.masked_patches as usize;
    let masked =
        table::i32_lists(&masks, "masked_patch_positions", m)?[row * m..(row + 1) * m].to_vec();

    let tok_dir = l.dir("tokenize")?;
    let tm = Manifest::read(&tok_dir).map_err(|e| Error::io(&tok_dir, e))?;
    let vocab_path = crate::dag::stage::resolve_path(&l.config.base_dir, tm.params.str("vocab")?);
    let vocab: Vec<String> = std::fs::read_to_string(&vocab_path)
        .at(&vocab_path)?
        .lines()
        .map(String::from)
        .collect();
    let tokens = table::read_parquet(&tok_dir.join("tokens.parquet"))?;
    let tids = table::strings(&tokens, "pair_id")?;
    let trow = tids
        .iter()
        .position(|i| i == record)
        .ok_or_else(|| Error::msg("record has no tokens"))?;
    let t = crate::stages::records::list_width(&tokens, "input_ids")
        .map_err(|e| Error::msg(e.to_string()))?;
    let k = crate::stages::records::list_width(&tokens, "masked_lm_positions")
        .map_err(|e| Error::msg(e.to_string()))?;
    let input = &table::i32_lists(&tokens, "input_ids", t)?[trow * t..(trow + 1) * t];
    let imask = &table::i32_lists(&tokens, "input_mask", t)?[trow * t..(trow + 1) * t];
    let mpos = &table::i32_lists(&tokens, "masked_lm_positions", k)?[trow * k..(trow + 1) * k];
    let mids = &table::i32_lists(&tokens, "masked_lm_ids", k)?[trow * k..(trow + 1) * k];
    let mw = &table::f32_lists(&tokens, "masked_lm_weights", k)?[trow * k..(trow + 1) * k];
    let tok = |i: i32| {
        vocab
            .get(i as usize)
            .cloned()
            .unwrap_or_else(|| format!("<{i}>"))
    };
    let mut words: Vec<(String, bool)> = Vec::new();
    for (pos, (&id, &mk)) in input.iter().zip(imask).enumerate() {
        if mk == 0 {
            break;
        }
        let slot = (0..k).find(|&j| mw[j] > 0.0 && mpos[j] as usize == pos);
        match slot {
            Some(j) if id == mids[j] => words.push((format!("{}(kept)", tok(id)), true)),
            Some(j) if tok(id) == "[MASK]" => {
                words.push((format!("[MASK:{}]", tok(mids[j])), true))
            }
            Some(j) => words.push((format!("{}→{}", tok(mids[j]), tok(id)), true)),
            None => words.push((tok(id), false)),
        }
    }
    let img = ImageLoader::new(&l.config.base_dir, &ingest)
        .load(&ImageRef::parse(&product.image))
        .map_err(|e| Error::msg(e.to_string()))?;
    let sq = crate::images::square(&img, grid.image_size, grid.fit());
    crate::eval::report::fonts();
    draw_record(out, &sq, &grid, &masked, &words, pair)?;
    crate::progress::println(format!("wrote {}", out.display()));
    Ok(())
}

fn draw_record(
    out: &Path,
    img: &image::RgbImage,
    grid: &Grid,
    masked: &[i32],
    words: &[(String, bool)],
    pair: &crate::stages::pairs::Pair,
) -> Result<()> {
    use plotters::prelude::*;
    let scale = (512 / grid.image_size).max(1);
    let side = grid.image_size * scale;
    let (w, h) = (side + 560, side.max(520) + 20);
    let mut buf = vec![255u8; (w * h * 3) as usize];
    let ps = grid.patch_size;
    for y in 0..side {
        for x in 0..side {
            let (sx, sy) = (x / scale, y / scale);
            let patch = (sy / ps) * grid.grid + sx / ps;
            let px = if masked.contains(&(patch as i32)) {
                [0, 0, 0]
            } else {
                img.get_pixel(sx, sy).0
            };
            let o = (((y + 10) * w + x + 10) * 3) as usize;
            buf[o..o + 3].copy_from_slice(&px);
        }
    }
    let perr = |e: &dyn std::fmt::Display| Error::msg(format!("drawing {}: {e}", out.display()));
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        for i in 0..=grid.grid {
            let v = (i * ps * scale + 10) as i32;
            let s = side as i32 + 10;
            root.draw(&PathElement::new(
                vec![(v, 10), (v, s)],
                RGBColor(0, 200, 255).stroke_width(1),
            ))
            .map_err(|e| perr(&e))?;
            root.draw(&PathElement::new(
                vec![(10, v), (s, v)],
                RGBColor(0, 200, 255).stroke_width(1),
            ))
            .map_err(|e| perr(&e))?;
        }
        let x0 = side as i32 + 30;
        let label = if pair.label == 1 {
            "label 1: matched"
        } else {
            "label 0: not matched"
        };
        let head = [
            format!("record {}", pair.pair_id),
            format!("{label} ({} split)", pair.split),
            format!(
                "image: product {} · {} / {}",
                pair.image_product_id, pair.category, pair.subcategory
            ),
            format!("text: product {}", pair.text_product_id),
            format!("masked patches: {masked:?} (black)"),
        ];
        for (i, line) in head.iter().enumerate() {
            root.draw(&Text::new(
                line.clone(),
                (x0, 14 + 22 * i as i32),
                ("sans-serif", 16).into_font().color(&BLACK),
            ))
            .map_err(|e| perr(&e))?;
        }
        // Wrap tokens; masked ones in red.
        let (mut x, mut y) = (x0, 14 + 22 * head.len() as i32 + 16);
        let max_x = w as i32 - 12;
        for (word, is_masked) in words {
            let wpx = (word.chars().count() as i32) * 8 + 8;
            if x + wpx > max_x {
                x = x0;
                y += 20;
            }
            let color = if *is_masked {
                RGBColor(210, 0, 0)
            } else {
                RGBColor(30, 30, 30)
            };
            root.draw(&Text::new(
                word.clone(),
                (x, y),
                ("sans-serif", 14).into_font().color(&color),
            ))
            .map_err(|e| perr(&e))?;
            x += wpx;
        }
        root.present().map_err(|e| perr(&e))?;
    }
    image::RgbImage::from_raw(w, h, buf)
        .expect("buffer size")
        .save(out)
        .map_err(|e| Error::msg(format!("{}: {e}", out.display())))
}

// ---- rank ---------------------------------------------------------------------------------

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
        let compute = l.device()?;
        let (model, cfg) = io::load(&l.dir("train")?, &compute.device)?;
        let feat_dir = l.dir("features")?;
        let store = featstore::Store::open(&feat_dir)?;
        let ex = &store.meta.extractor;
        let fm = Manifest::read(&feat_dir).map_err(|e| Error::io(&feat_dir, e))?;
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
        let tm = l.manifest("tokenize")?;
        let tokenizer = BertTokenizer::from_vocab(&crate::dag::stage::resolve_path(
            &l.config.base_dir,
            tm.params.str("vocab")?,
        ))?;
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

    /// Log-odds of "matched" for each (features, text).
    pub fn score(&self, items: &[(&[f32], &str)]) -> Result<Vec<f64>> {
        let p = self.ex.cells();
        let mut out = Vec::new();
        for chunk in items.chunks(64) {
            let mut hb = HostBatch::new(self.t, p, self.zero.len(), 1, 1);
            for (feats, text) in chunk {
                let e = self.tokenizer.encode(text, self.t)?;
                let ids: Vec<i32> = e.ids.iter().map(|&i| i as i32).collect();
                let mask: Vec<i32> = e.mask.iter().map(|&m| m as i32).collect();
                hb.push_with_features(&ids, &mask, &vec![0; self.t], feats, None, None, 0);
            }
            let v: Vec<f32> = self
                .model
                .align_logits(&hb.to_device(&self.device))
                .try_into_vec_as::<f32>()
                .map_err(|e| Error::Model(format!("{e:?}")))?;
            out.extend(v.chunks(2).map(|l| l[1] as f64 - l[0] as f64));
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

/// Ranks texts for one image, or images for one text, with the pipeline's trained model.
pub fn rank(
    config_file: &Path,
    images: &[PathBuf],
    texts: &[String],
    texts_file: Option<&Path>,
    top: usize,
) -> Result<()> {
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
    let images = image_files(images)?;
    if images.is_empty() || texts.is_empty() {
        return Err(Error::msg(
            "give one image and several texts (--text/--texts-file), or one text and several images (files or folders)",
        ));
    }
    if images.len() > 1 && texts.len() > 1 {
        return Err(Error::msg(
            "rank either texts for one image, or images for one text",
        ));
    }
    let l = Latest::open(config_file)?;
    let scorer = Scorer::from_pipeline(&l)?;
    let feats: Vec<Vec<f32>> = images
        .iter()
        .map(|p| {
            let img = crate::images::decode_file(p).map_err(|e| Error::msg(e.to_string()))?;
            scorer.image_features(&img)
        })
        .collect::<Result<_>>()?;
    let items: Vec<(&[f32], &str)> = if images.len() == 1 {
        texts
            .iter()
            .map(|t| (feats[0].as_slice(), t.as_str()))
            .collect()
    } else {
        feats
            .iter()
            .map(|f| (f.as_slice(), texts[0].as_str()))
            .collect()
    };
    let scores = scorer.score(&items)?;
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| {
        scores[b]
            .partial_cmp(&scores[a])
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    if images.len() == 1 {
        println!(
            "texts ranked for {} (score = log-odds of matched):",
            images[0].display()
        );
        for (r, &i) in order.iter().take(top).enumerate() {
            println!("{:>3}. {:>8.3}  {}", r + 1, scores[i], texts[i]);
        }
    } else {
        println!(
            "images ranked for {:?} (score = log-odds of matched):",
            texts[0]
        );
        for (r, &i) in order.iter().take(top).enumerate() {
            println!("{:>3}. {:>8.3}  {}", r + 1, scores[i], images[i].display());
        }
    }
    Ok(())
}

// ---- TSV export / import ------------------------------------------------------------------

/// Writes a split's records in the original training format, or an eval set
/// (`eval-img2txt`, `eval-txt2img`, from the latest `evaluate`) in the original eval format,
/// with a `.list_csv`.
pub fn export_tsv(config_file: &Path, split: &str, out: &Path, per_file: usize) -> Result<PathBuf> {
    let l = Latest::open(config_file)?;
    if let Some(direction) = split.strip_prefix("eval-") {
        return export_eval_tsv(&l, direction, out, per_file);
    }
    let store = featstore::Store::open(&l.dir("features")?)?;
    let path = l.dir("records")?.join(format!("{split}.parquet"));
    let df = table::read_parquet(&path)?;
    let w =
        |c: &str| crate::stages::records::list_width(&df, c).map_err(|e| Error::msg(e.to_string()));
    let recs = Records::read(
        &path,
        w("input_ids")?,
        w("masked_lm_positions")?,
        w("masked_patch_positions")?,
    )?;
    let mut writer = tsv::Writer::create(out, split, per_file)?;
    write_records_tsv(&recs, &store, &mut writer)?;
    let list = writer.finish()?;
    let schema = tsv::train_schema(store.meta.patches, store.meta.dim, recs.t, recs.m, recs.k);
    std::fs::write(out.join(format!("{split}.schema")), &schema).at(out)?;
    crate::progress::println(format!(
        "wrote {} records → {} (schema in {split}.schema)\n{schema}",
        recs.len(),
        list.display()
    ));
    Ok(list)
}

fn export_eval_tsv(l: &Latest, direction: &str, out: &Path, per_file: usize) -> Result<PathBuf> {
    let store = featstore::Store::open(&l.dir("features")?)?;
    let texts = crate::eval::scoring::Texts::read(&l.dir("tokenize")?.join("texts.parquet"))?;
    let products =
        crate::stages::ingest::read_products(&l.dir("ingest")?.join("products.parquet"))?;
    let desc: HashMap<&str, &str> = products
        .iter()
        .map(|p| (p.product_id.as_str(), p.text.as_str()))
        .collect();
    let pairs = table::read_parquet(&l.dir("evaluate")?.join("pairs.parquet"))?;
    let dirs = table::strings(&pairs, "direction")?;
    let imgs = table::strings(&pairs, "image_id")?;
    let txts = table::strings(&pairs, "text_product_id")?;
    let labels = table::bools(&pairs, "label")?;
    let (p, t) = (store.meta.patches, texts.t);
    let ones = vec![1; p];
    let zeros = vec![0; t];
    let mut writer = tsv::Writer::create(out, &format!("eval-{direction}"), per_file)?;
    let mut feats = Vec::new();
    let mut n = 0;
    for i in (0..dirs.len()).filter(|&i| dirs[i] == direction) {
        feats.clear();
        store.read_into(&imgs[i], &mut feats)?;
        let (ids, mask) = texts
            .get(&txts[i])
            .ok_or_else(|| Error::msg(format!("no tokens for text {}", txts[i])))?;
        writer.write_record(&[
            tsv::fmt_floats(&feats),
            tsv::fmt_ints(&ones),
            tsv::fmt_ints(ids),
            tsv::fmt_ints(mask),
            tsv::fmt_ints(&zeros),
            (labels[i] as i32).to_string(),
            desc.get(txts[i].as_str())
                .copied()
                .unwrap_or("")
                .replace(['\t', '\n'], " "),
            txts[i].clone(),
            imgs[i].clone(),
            imgs[i].clone(),
        ])?;
        n += 1;
    }
    let list = writer.finish()?;
    let schema = tsv::eval_schema(p, store.meta.dim, t);
    std::fs::write(out.join(format!("eval-{direction}.schema")), &schema).at(out)?;
    crate::progress::println(format!(
        "wrote {n} eval records → {}\n{schema}",
        list.display()
    ));
    Ok(list)
}

pub fn write_records_tsv(
    recs: &Records,
    store: &featstore::Store,
    writer: &mut tsv::Writer,
) -> Result<()> {
    let (t, k, m, p) = (recs.t, recs.k, recs.m, store.meta.patches);
    let ones = vec![1; p];
    let mut feats = Vec::with_capacity(p * store.meta.dim);
    for i in 0..recs.len() {
        feats.clear();
        store.read_into(&recs.image_id[i], &mut feats)?;
        writer.write_record(&[
            tsv::fmt_floats(&feats),
            tsv::fmt_ints(&ones),
            tsv::fmt_ints(&recs.masked_patch_positions[i * m..(i + 1) * m]),
            tsv::fmt_ints(&recs.input_ids[i * t..(i + 1) * t]),
            tsv::fmt_ints(&recs.input_mask[i * t..(i + 1) * t]),
            tsv::fmt_ints(&recs.segment_ids[i * t..(i + 1) * t]),
            tsv::fmt_ints(&recs.masked_lm_positions[i * k..(i + 1) * k]),
            tsv::fmt_ints(&recs.masked_lm_ids[i * k..(i + 1) * k]),
            tsv::fmt_floats(&recs.masked_lm_weights[i * k..(i + 1) * k]),
            recs.label[i].to_string(),
        ])?;
    }
    Ok(())
}

/// Reads original-format training files into `out/records.parquet` and a feature store in
/// `out/features/` (images identified by a hash of their features, so a shared image is stored
/// once).
pub fn import_tsv(
    list: &Path,
    out: &Path,
    patches: usize,
    dim: usize,
    t: usize,
    m: usize,
    k: usize,
) -> Result<Records> {
    let (count, files) = tsv::read_list(list)?;
    let schema = tsv::train_fields(patches, dim, t, m, k)?;
    let mut writer = featstore::Writer::create(
        &out.join("features"),
        featstore::FeatDType::F32,
        patches,
        dim,
        1024,
        serde_json::json!({"imported_from": list.display().to_string()}),
    )?;
    let mut seen: HashMap<String, ()> = HashMap::new();
    let mut recs = Records {
        t,
        k,
        m,
        ..Default::default()
    };
    let n = tsv::for_each_record(&files, &schema, |file, line, v| {
        let feats = v[0].floats();
        let id = format!(
            "h:{}",
            &blake3::hash(bytemuck::cast_slice(feats)).to_hex()[..20]
        );
        if seen.insert(id.clone(), ()).is_none() {
            writer.push(&id, feats)?;
        }
        let i32s = |x: &tsv::Value| x.ints().iter().map(|&a| a as i32).collect::<Vec<i32>>();
        recs.record_id.push(format!(
            "{}:{line}",
            file.file_name().unwrap().to_string_lossy()
        ));
        recs.image_id.push(id);
        recs.text_product_id.push(String::new());
        recs.image_product_id.push(String::new());
        recs.subcategory.push(String::new());
        recs.masked_patch_positions.extend(i32s(&v[2]));
        recs.input_ids.extend(i32s(&v[3]));
        recs.input_mask.extend(i32s(&v[4]));
        recs.segment_ids.extend(i32s(&v[5]));
        recs.masked_lm_positions.extend(i32s(&v[6]));
        recs.masked_lm_ids.extend(i32s(&v[7]));
        recs.masked_lm_weights.extend_from_slice(v[8].floats());
        let label = v[9].ints()[0] as i32;
        recs.label.push(label);
        recs.round.push(if label == 1 { -1 } else { 0 });
        Ok(())
    })?;
    if let Some(c) = count {
        if c != n {
            tracing::warn!(
                "{}: the count line says {c} records, the files hold {n}",
                list.display()
            );
        }
    }
    writer.finish(&vec![0.0; dim])?;
    recs.write(&out.join("records.parquet"))?;
    crate::progress::println(format!(
        "imported {n} records, {} distinct images → {}",
        seen.len(),
        out.display()
    ));
    Ok(recs)
}

// ---- scoring original-format eval files -------------------------------------------------------

/// Checks `--type` against the files: an eval set ranks each query (the text for txt2img,
/// the image for img2txt) against many candidates, so its query column (`text_prod_id` or
/// `image_prod_id`) has fewer distinct values than its candidate column. Reads only those
/// two columns.
fn check_eval_direction(files: &[PathBuf], direction: &str) -> Result<()> {
    use std::collections::HashSet;
    use std::io::BufRead;
    let (mut texts, mut images) = (HashSet::new(), HashSet::new());
    for file in files {
        let f = std::fs::File::open(file).at(file)?;
        for line in std::io::BufReader::new(f).lines() {
            let line = line.at(file)?;
            let cols: Vec<&str> = line.rsplitn(4, '\t').collect();
            // rsplitn: prod_img_id, image_prod_id, text_prod_id, rest.
            if cols.len() == 4 {
                images.insert(cols[1].to_string());
                texts.insert(cols[2].to_string());
            }
        }
    }
    let (queries, candidates, other) = if direction == "txt2img" {
        (texts.len(), images.len(), "img2txt")
    } else {
        (images.len(), texts.len(), "txt2img")
    };
    if queries > candidates {
        return Err(Error::msg(format!(
            "--type {direction} ranks each query against its candidates, but these files hold {queries} distinct {} and only {candidates} distinct {}: they look like an eval set of type {other}; pass --type {other}",
            if direction == "txt2img" {
                "texts (text_prod_id)"
            } else {
                "images (image_prod_id)"
            },
            if direction == "txt2img" {
                "images (image_prod_id)"
            } else {
                "texts (text_prod_id)"
            },
        )));
    }
    Ok(())
}

/// Scores eval files in the original format with a trained model; writes the prediction file
/// the original would have written, and the metrics (corrected and compatible).
pub fn eval_tsv(
    model_dir: &Path,
    inputs: &[PathBuf],
    direction: &str,
    out: &Path,
    batch: usize,
    device_kind: &str,
) -> Result<serde_json::Value> {
    let compute = crate::device::select(device_kind, 0)?;
    // A model folder, or EasyTransfer's checkpoint itself (the original's predict mode).
    let (model, cfg) = crate::weights::tfload::load_model(model_dir, &compute.device)?;
    let (p, f, t) = (cfg.num_patches, cfg.patch_feature_size, cfg.text_len);
    let schema = tsv::eval_fields(p, f, t, cfg.bert.vocab_size)?;
    let mut files = Vec::new();
    for i in inputs {
        if i.extension().is_some_and(|e| e == "list_csv") {
            files.extend(tsv::read_list(i)?.1);
        } else {
            files.push(i.clone());
        }
    }
    check_eval_direction(&files, direction)?;
    std::fs::create_dir_all(out).at(out)?;
    let pred_path = out.join(format!("eval_{direction}_results.txt"));
    let mut pred = std::io::BufWriter::new(std::fs::File::create(&pred_path).at(&pred_path)?);
    let mut scored: Vec<Scored> = Vec::new();
    let mut pending: Vec<Vec<tsv::Value>> = Vec::new();
    let mut flush = |pending: &mut Vec<Vec<tsv::Value>>, scored: &mut Vec<Scored>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let mut hb = HostBatch::new(t, p, f, 1, 1);
        for v in pending.iter() {
            let i32s = |x: &tsv::Value| x.ints().iter().map(|&a| a as i32).collect::<Vec<i32>>();
            hb.push_with_features(
                &i32s(&v[2]),
                &i32s(&v[3]),
                &i32s(&v[4]),
                v[0].floats(),
                None,
                None,
                v[5].ints()[0] as i32,
            );
        }
        let logits: Vec<f32> = model
            .align_logits(&hb.to_device(&compute.device))
            .try_into_vec_as::<f32>()
            .map_err(|e| Error::Model(format!("{e:?}")))?;
        let ids = |col: usize| {
            let v: Vec<String> = pending
                .iter()
                .map(|r| format!("b'{}'", r[col].str()))
                .collect();
            format!("[{}]", v.join(", "))
        };
        let labels: Vec<String> = pending.iter().map(|r| r[5].ints()[0].to_string()).collect();
        let lg: Vec<String> = logits.iter().map(|x| x.to_string()).collect();
        use std::io::Write;
        writeln!(
            pred,
            "{}\x01{}\x01{}\x01[{}]\x01[{}]",
            ids(7),
            ids(8),
            ids(9),
            labels.join(", "),
            lg.join(", ")
        )
        .at(&pred_path)?;
        for (i, r) in pending.iter().enumerate() {
            let (q, c) = if direction == "txt2img" {
                (r[7].str(), r[8].str())
            } else {
                (r[8].str(), r[7].str())
            };
            scored.push(Scored {
                query: q.to_string(),
                candidate: c.to_string(),
                label: r[5].ints()[0] != 0,
                logits: [logits[2 * i], logits[2 * i + 1]],
            });
        }
        pending.clear();
        Ok(())
    };
    tsv::for_each_record(&files, &schema, |_, _, v| {
        pending.push(v);
        if pending.len() == batch.max(1) {
            flush(&mut pending, &mut scored)?;
        }
        Ok(())
    })?;
    flush(&mut pending, &mut scored)?;
    drop(flush);
    drop(pred);
    let lines: Vec<Vec<PredRow>> = crate::eval::predfile::read(&pred_path, direction)?;
    let mut m = metrics::compute(&scored, batch);
    m.easytransfer_compatible = metrics::compat_from_lines(&lines, batch);
    let v = serde_json::json!({ direction: m });
    std::fs::write(
        out.join("metrics.json"),
        serde_json::to_string_pretty(&v).unwrap(),
    )
    .at(out)?;
    crate::progress::println(format!("{}", serde_json::to_string_pretty(&v).unwrap()));
    Ok(v)
}
