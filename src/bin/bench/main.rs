//! `make bench`: fashionbert side by side with its PyTorch peer (`bench/peer.py`) in one run, on
//! the same machine, with ratios. Appends a dated section to BENCHMARKS.md.
//!
//! One module per benchmark, each giving its rows of the table:
//!
//! - [`features`]: images/s of the features stage's work (decode, resize, cut the patch grid,
//!   ResNet-50) against torchvision's resnet50 on the same images and patches;
//! - [`train`]: samples/s of a FashionBERT training step (text + patch tokens) against the same
//!   model in PyTorch (Hugging Face BertEncoder, same heads and losses), and the peak memory of a
//!   BERT-base step (measured in a child process: `--child-peak`);
//! - [`scoring`]: pairs/s of retrieval scoring (the alignment logits of unmasked records, no
//!   autodiff) against the same model under `torch.inference_mode`;
//! - [`tokenize`]: records/s of tokenisation + BERT masking against Hugging Face `tokenizers`;
//! - [`runner`]: a no-op re-run of a pipeline and `status`;
//! - [`search`]: exact and HNSW search over synthetic embeddings, and `fashionbert serve`'s
//!   text search over a pipeline's catalogue (ours alone).
//!
//! [`peer`] runs the PyTorch side, [`report`] writes the table.

mod features;
mod peer;
mod report;
mod runner;
mod scoring;
mod search;
mod tokenize;
mod train;

use std::path::PathBuf;

use clap::Parser;

#[derive(Parser, Debug)]
#[command(about = "Benchmarks against PyTorch, side by side in one run")]
struct Args {
    /// Which benchmarks: features, train, scoring, memory, tokenize, runner, search (comma-separated) or all.
    #[arg(long, default_value = "all")]
    only: String,
    /// cpu, or cuda (libtorch CUDA and PyTorch on the GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Images for the features benchmark (fashion-real if present, else synthetic).
    #[arg(long, default_value_t = 96)]
    images: usize,
    /// FashionBERT config for the train benchmark (the peer reads the same file).
    #[arg(long, default_value = "bench/configs/fashionbert-minilm.json")]
    train_config: PathBuf,
    #[arg(long, default_value_t = 16)]
    batch: usize,
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Runs of each side of a train row, alternating with the peer's; the row gives the medians.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Batch size in images for the features benchmark.
    #[arg(long, default_value_t = 8)]
    batch_images: usize,
    /// Also run the pure-Rust flex backend (CPU only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    flex: bool,
    /// Also time a bf16 training step (bf16 matrix products, `train.precision = "bf16"`) against
    /// the peer under PyTorch's bf16 autocast: true, false, or auto (on CPUs with AVX-512 BF16
    /// or AMX, where bf16 products are native; always on CUDA).
    #[arg(long, default_value = "auto", value_parser = ["auto", "true", "false"])]
    bf16: String,
    /// Extra peer options for GPU runs (for example "--bf16 --fused").
    #[arg(long, default_value = "")]
    peer_args: String,
    /// The pipeline whose no-op re-run is timed.
    #[arg(long, default_value = "pipeline.toml")]
    pipeline: PathBuf,
    /// `--set` overrides for the pipeline whose no-op re-run is timed (repeatable).
    #[arg(long = "pipeline-set")]
    pipeline_set: Vec<String>,
    /// Synthetic embeddings for the search benchmark.
    #[arg(long, default_value_t = 1_000_000)]
    search_n: usize,
    /// The pipeline whose catalogue `fashionbert serve` searches (its `embed` entry cached).
    #[arg(long, default_value = "pipelines/fashion-real.toml")]
    search_config: PathBuf,
    /// Where to append the results.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Python with torch (default: $FB_PYTHON or python3).
    #[arg(long)]
    python: Option<String>,
    /// Internal: run BERT-base training steps (`train::PEAK_BATCH`) and print the peak memory.
    #[arg(long, hide = true)]
    child_peak: bool,
}

impl Args {
    /// Whether `--only` selects the benchmark `which`.
    fn want(&self, which: &str) -> bool {
        self.only == "all" || self.only.split(',').any(|x| x == which)
    }

    fn cuda(&self) -> bool {
        self.device == "cuda"
    }

    /// The libtorch device kind of `--device`, as [`fashionbert::device::select`] names it.
    fn tch_kind(&self) -> &'static str {
        if self.cuda() { "tch-cuda" } else { "tch" }
    }

    /// The model the train and scoring rows use, as they name it: `--train-config`'s file stem.
    fn model_name(&self) -> String {
        self.train_config
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| self.train_config.display().to_string())
    }

    /// `--train-config` as the peer is given it.
    fn train_config_arg(&self) -> &str {
        self.train_config
            .to_str()
            .expect("--train-config is a UTF-8 path")
    }

    /// Whether to add the bf16 training row (`--bf16`).
    fn bf16(&self) -> bool {
        match self.bf16.as_str() {
            "true" => true,
            "false" => false,
            // "auto" (clap allows nothing else)
            _ => self.cuda() || fashionbert::device::cpu_has_native_bf16(),
        }
    }

    /// The libtorch device of `--device`, as the rows name it.
    fn libtorch(&self) -> &'static str {
        if self.cuda() {
            "libtorch CUDA"
        } else {
            "libtorch CPU"
        }
    }
}

/// The fashion-real data set, used where present (images for `features`, texts for `tokenize`).
const FASHION_REAL: &str = "../shared/data/fashion-real";

/// CPU threads: all cores, as `fashionbert::device::set_threads(0)` gives libtorch and rayon;
/// the peers are given the same number.
fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn main() {
    let a = Args::parse();
    fashionbert::device::tune_allocator();
    fashionbert::device::set_threads(0);
    if a.child_peak {
        train::child_peak(&a);
        return;
    }
    // Checked before anything is measured: `--only runner` on a pipeline that is not cached
    // stops here.
    let runner = a.want("runner") && runner::ready(&a);
    let mut rows = Vec::new();
    if a.want("features") {
        rows.extend(features::rows(&a));
    }
    if a.want("train") {
        rows.extend(train::rows(&a));
    }
    if a.want("scoring") {
        rows.extend(scoring::rows(&a));
    }
    if a.want("memory") {
        rows.push(train::memory_row(&a));
    }
    if a.want("tokenize") {
        rows.extend(tokenize::rows(&a));
    }
    if runner {
        rows.extend(runner::rows(&a));
    }
    if a.want("search") {
        rows.extend(search::rows(&a));
    }
    report::append(&a.out, &rows);
}

#[cfg(test)]
mod tests {
    use fashionbert::dag::{Params, StageSpec};
    use fashionbert::extract::FEATURE_DIM;
    use fashionbert::models::bert::BertConfig;
    use fashionbert::models::fashionbert::FashionBertConfig;

    use super::{features, tokenize};

    fn defaults(spec: &StageSpec) -> Params {
        Params::with_defaults(spec.params, Default::default())
    }

    /// The bench's shapes are the pipeline's defaults: the `patches` and `tokenize` stages' and
    /// the model config's.
    #[test]
    fn shapes_are_the_pipeline_defaults() {
        let g = features::GRID;
        let p = defaults(&fashionbert::stages::patches::SPEC);
        assert_eq!(p.usize("image_size").unwrap(), g.image_size as usize);
        assert_eq!(p.usize("grid").unwrap(), g.grid as usize);
        assert_eq!(g.patch_size, g.image_size / g.grid);
        assert_eq!(
            p.usize("masked_patches").unwrap(),
            g.masked_patches as usize
        );
        assert_eq!(p.str("fit").unwrap() == "pad", g.fit_pad);

        let t = defaults(&fashionbert::stages::tokenize::SPEC);
        assert_eq!(t.str("vocab").unwrap(), tokenize::VOCAB);
        assert_eq!(t.usize("max_len").unwrap(), tokenize::MAX_LEN);
        assert_eq!(t.float("mask_prob").unwrap(), tokenize::MASK_PROB);
        assert_eq!(
            t.usize("max_predictions").unwrap(),
            tokenize::MAX_PREDICTIONS
        );
        assert!(!t.bool("whole_word").unwrap());

        let m = FashionBertConfig::new(BertConfig::new());
        assert_eq!(m.text_len, tokenize::MAX_LEN);
        assert_eq!(m.masked_text_num, tokenize::MAX_PREDICTIONS);
        assert_eq!(m.num_patches, g.patches());
        assert_eq!(m.masked_patch_num, g.masked_patches as usize);
        assert_eq!(m.patch_feature_size, FEATURE_DIM);
    }
}
