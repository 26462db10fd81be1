//! `make bench`: fashionbert side by side with its PyTorch peer (`bench/peer.py`) in one run, on
//! the same machine, with ratios. Appends a dated section to BENCHMARKS.md.
//!
//! - features: images/s of the features stage's work (decode, resize, cut 64 patches, ResNet-50)
//!   against torchvision's resnet50 on the same images and patches;
//! - train: samples/s of a FashionBERT training step (64 + 64 tokens) against the same model in
//!   PyTorch (Hugging Face BertEncoder, same heads and losses);
//! - tokenize: records/s of tokenisation + BERT masking against Hugging Face `tokenizers`;
//! - runner: a no-op re-run of a pipeline and `status`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Int, Tensor, TensorData};
use clap::Parser;
use fashionbert::extract::{FeatureExtractor, PatchExtractor};
use fashionbert::models::bert::BertConfig;
use fashionbert::models::fashionbert::{
    Batch, FashionBertConfig, LossWeighting, MaskedPatchInput, losses,
};
use fashionbert::models::resnet::Convention;
use fashionbert::stages::patches::Grid;
use fashionbert::training::clip_global_norm;

#[derive(Parser, Debug)]
#[command(about = "Benchmarks against PyTorch, side by side in one run")]
struct Args {
    /// Which benchmarks: features, train, tokenize, runner (comma-separated) or all.
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
    /// Batch size in images for the features benchmark.
    #[arg(long, default_value_t = 8)]
    batch_images: usize,
    /// Also run the pure-Rust flex backend (CPU only).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    flex: bool,
    /// Extra peer options for GPU runs (for example "--bf16 --fused").
    #[arg(long, default_value = "")]
    peer_args: String,
    /// The pipeline whose no-op re-run is timed.
    #[arg(long, default_value = "pipeline.toml")]
    pipeline: PathBuf,
    /// `--set` overrides for the pipeline whose no-op re-run is timed (repeatable).
    #[arg(long = "pipeline-set")]
    pipeline_set: Vec<String>,
    /// Where to append the results.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
    /// Python with torch (default: $FB_PYTHON or python3).
    #[arg(long)]
    python: Option<String>,
    /// Internal: run two BERT-base training steps at batch 32 and print the peak memory.
    #[arg(long, hide = true)]
    child_peak: bool,
}

struct Row {
    bench: String,
    ours: String,
    peer: String,
    ratio: f64,
    unit: &'static str,
    note: String,
}

impl Row {
    /// A row that sets ours beside the peer's number (both "more is better").
    fn versus(bench: String, ours: f64, peer: f64, unit: &'static str, note: String) -> Self {
        let digits = if ours.max(peer) >= 1000.0 { 0 } else { 2 };
        Row {
            bench,
            ours: format!("{ours:.digits$}"),
            peer: format!("{peer:.digits$}"),
            ratio: ours / peer,
            unit,
            note,
        }
    }
}

fn python(a: &Args) -> String {
    a.python
        .clone()
        .or_else(|| std::env::var("FB_PYTHON").ok())
        .unwrap_or_else(|| "python3".into())
}

/// Runs `bench/peer.py BENCH ARGS --threads N [--device cuda] PEER_ARGS` and returns its JSON.
fn peer(a: &Args, bench: &str, args: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(python(a));
    cmd.args(["bench/peer.py", bench])
        .args(args)
        .args(["--threads", &threads().to_string()]);
    if a.device == "cuda" {
        cmd.args(["--device", "cuda"]);
    }
    cmd.args(a.peer_args.split_whitespace());
    last_json_line(cmd)
}

/// Runs a command that prints its result as JSON on its last line of stdout.
fn last_json_line(mut cmd: Command) -> serde_json::Value {
    eprintln!("running {cmd:?}");
    let out = cmd.output().expect("start the command");
    if !out.status.success() {
        panic!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("{}")).expect("JSON on the last line")
}

#[allow(deprecated)]
fn device(kind: &str) -> Device {
    match kind {
        "flex" => Device::flex(),
        "tch-cuda" => Device::libtorch_cuda(0),
        _ => Device::libtorch(),
    }
}

fn threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

fn image_list(a: &Args, dir: &Path) -> Vec<PathBuf> {
    let real = PathBuf::from("../shared/data/fashion-real/images");
    let mut v: Vec<PathBuf> = if real.is_dir() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&real)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        v.sort();
        v
    } else {
        let cfg = fashionbert::sources::synthetic::SynthConfig {
            products: a.images,
            seed: 1,
            image_size: 256,
            valid_fraction: 0.1,
        };
        fashionbert::sources::synthetic::products(&cfg)
            .iter()
            .map(|p| {
                let path = dir.join(format!("{}.png", p.product_id));
                fashionbert::sources::synthetic::render(&cfg, p)
                    .save(&path)
                    .unwrap();
                path
            })
            .collect()
    };
    v.truncate(a.images);
    v
}

/// Images/s of the stage's work: parallel decode + cut, then the folded network, batch by batch.
fn ours_features(paths: &[PathBuf], kind: &str, conv: Convention, batch: usize) -> f64 {
    use rayon::prelude::*;
    let dev = device(kind);
    let model = fashionbert::weights::load_resnet50("random:1", Path::new("."), conv, &dev)
        .unwrap()
        .fold();
    let grid = Grid {
        image_size: 256,
        grid: 8,
        patch_size: 32,
        masked_patches: 5,
        fit_pad: false,
    };
    let cut = PatchExtractor {
        grid,
        input: 32,
        convention: conv,
    };
    let run = |chunk: &[PathBuf]| {
        let px: Vec<f32> = chunk
            .par_iter()
            .map(|p| {
                let img = fashionbert::images::decode_file(p).unwrap();
                let mut v = Vec::new();
                cut.prepare(&img, &mut v);
                v
            })
            .flatten()
            .collect();
        let f = cut.features(&model, &dev, px, chunk.len()).unwrap();
        assert_eq!(f.len(), chunk.len() * 64 * 2048);
    };
    run(&paths[..batch.min(paths.len())]); // warm-up
    let t0 = Instant::now();
    for chunk in paths.chunks(batch) {
        run(chunk);
    }
    paths.len() as f64 / t0.elapsed().as_secs_f64()
}

fn train_config(path: &Path) -> (FashionBertConfig, serde_json::Value) {
    let text = std::fs::read_to_string(path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let bert = BertConfig::from_hf_json(&text).unwrap();
    let mut c = FashionBertConfig::new(bert);
    c.bert.hidden_act = "gelu_new".into();
    (c, json)
}

/// Samples/s of full training steps (forward, three losses, backward, global-norm clip, Adam).
fn ours_train(cfg: &FashionBertConfig, kind: &str, b: usize, steps: usize) -> f64 {
    let dev = device(kind).autodiff();
    dev.seed(0);
    let mut model = cfg.init(&dev);
    let mut optim = AdamConfig::new()
        .with_beta_2(0.98)
        .with_epsilon(1e-6)
        .init();
    let (t, p, f, v) = (64usize, 64usize, 2048usize, cfg.bert.vocab_size as i64);
    let mut rng = 7u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let ids: Vec<i64> = (0..b * t).map(|_| (next() % v as u64) as i64).collect();
    let feats: Vec<f32> = (0..b * p * f)
        .map(|_| (next() % 1000) as f32 / 250.0)
        .collect();
    let pos: Vec<i64> = (0..b * 10).map(|i| 1 + (i % 10) as i64 * 5).collect();
    let ppos: Vec<i64> = (0..b * 5).map(|i| (i % 5) as i64 * 11).collect();
    let mut masked = vec![0f32; b * p];
    for r in 0..b {
        for j in 0..5 {
            masked[r * p + j * 11] = 1.0;
        }
    }
    let labels: Vec<i64> = (0..b).map(|i| (i % 2) as i64).collect();
    let zero: Vec<f32> = vec![0.1; f];
    let mut step = |model: fashionbert::models::fashionbert::FashionBert| {
        let batch = Batch {
            input_ids: Tensor::<2, Int>::from_data(TensorData::new(ids.clone(), [b, t]), &dev),
            input_mask: Tensor::<2>::ones([b, t], &dev),
            segment_ids: Tensor::<2, Int>::zeros([b, t], &dev),
            image_feature: Tensor::<3>::from_data(TensorData::new(feats.clone(), [b, p, f]), &dev),
            image_mask: Tensor::<2>::ones([b, p], &dev),
            patch_masked: Tensor::<3>::from_data(TensorData::new(masked.clone(), [b, p, 1]), &dev),
            masked_patch_positions: Tensor::<2, Int>::from_data(
                TensorData::new(ppos.clone(), [b, 5]),
                &dev,
            ),
            masked_patch_weights: Tensor::<2>::ones([b, 5], &dev),
            masked_lm_positions: Tensor::<2, Int>::from_data(
                TensorData::new(pos.clone(), [b, 10]),
                &dev,
            ),
            masked_lm_ids: Tensor::<2, Int>::from_data(
                TensorData::new(ids[..b * 10].to_vec(), [b, 10]),
                &dev,
            ),
            masked_lm_weights: Tensor::<2>::ones([b, 10], &dev),
            labels: Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [b]), &dev),
            itc: None,
        };
        let out = model.forward(&batch, &MaskedPatchInput::ZeroPatch(zero.clone()));
        let l = losses(&out, &batch, &LossWeighting::Adaptive { detach: true });
        let grads = GradientsParams::from_grads(l.total.backward(), &model);
        let (grads, norm) = clip_global_norm(&model, grads, 1.0);
        let model = optim.step(1e-4, model, grads);
        let _: f32 = (l.total.detach() + norm * 0.0).into_scalar(); // one sync per step, as training does
        model
    };
    model = step(model);
    model = step(model);
    let t0 = Instant::now();
    for _ in 0..steps {
        model = step(model);
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = model.num_params();
    (b * steps) as f64 / secs
}

fn median_secs(mut f: impl FnMut()) -> f64 {
    let mut v: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[2]
}

fn main() {
    let a = Args::parse();
    if a.child_peak {
        fashionbert::device::set_threads(0);
        let (cfg, _) = train_config(Path::new("bench/configs/fashionbert-base.json"));
        let kind = if a.device == "cuda" {
            "tch-cuda"
        } else {
            "tch"
        };
        let sps = ours_train(&cfg, kind, 32, 1);
        let peak = fashionbert::dag::runner::peak_rss_mib().unwrap_or(f64::NAN);
        println!("{{\"peak_rss_mib\": {peak}, \"samples_per_s\": {sps}}}");
        return;
    }
    let want = |w: &str| a.only == "all" || a.only.split(',').any(|x| x == w);
    let cuda = a.device == "cuda";
    let tch_kind = if cuda { "tch-cuda" } else { "tch" };
    let n = threads();
    fashionbert::device::set_threads(0);
    let tmp = tempfile::tempdir().unwrap();
    let mut rows: Vec<Row> = Vec::new();
    // A "no-op" re-run of a pipeline that is not fully cached would train a model: with `--only
    // runner` that is an error, with `all` the runner rows are left out.
    let mut runner = want("runner") && a.pipeline.is_file();
    if runner {
        let pending = not_cached(&a);
        if !pending.is_empty() {
            eprintln!(
                "{}: the runner benchmark times a no-op re-run of {}, but these stages would run: {}. \
                 Run the pipeline first, or pick another with --pipeline / --pipeline-set.",
                if a.only == "all" {
                    "skipping `runner`"
                } else {
                    "error"
                },
                a.pipeline.display(),
                pending.join(", ")
            );
            if a.only != "all" {
                std::process::exit(2);
            }
            runner = false;
        }
    }

    if want("features") {
        let paths = image_list(&a, tmp.path());
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
        let pr = peer(
            &a,
            "features",
            &[
                "--images-list",
                list.to_str().unwrap(),
                "--batch-images",
                &a.batch_images.to_string(),
            ],
        );
        let peer_ips = pr["images_per_s"].as_f64().unwrap();
        for conv in [Convention::V1_5, Convention::V1] {
            let ours = ours_features(&paths, tch_kind, conv, a.batch_images);
            rows.push(Row::versus(
                format!(
                    "features ({} images, ResNet-50 {}, libtorch{})",
                    paths.len(),
                    conv.name(),
                    if cuda { " CUDA" } else { " CPU" }
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
            if !cuda && a.flex && conv == Convention::V1_5 {
                let few = &paths[..paths.len().min(16)];
                let ours = ours_features(few, "flex", conv, a.batch_images);
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
    }

    if want("train") {
        let (cfg, _) = train_config(&a.train_config);
        let pr = peer(
            &a,
            "train",
            &[
                "--config",
                a.train_config.to_str().unwrap(),
                "--batch",
                &a.batch.to_string(),
                "--steps",
                &a.steps.to_string(),
            ],
        );
        let peer_sps = pr["samples_per_s"].as_f64().unwrap();
        let name = a
            .train_config
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .to_string();
        let ours = ours_train(&cfg, tch_kind, a.batch, a.steps);
        rows.push(Row::versus(
            format!(
                "train step ({name}, batch {}, libtorch{})",
                a.batch,
                if cuda { " CUDA" } else { " CPU" }
            ),
            ours,
            peer_sps,
            "samples/s",
            format!(
                "peer: {} on {}, bf16 {}, fused AdamW {}, compile {}",
                pr["torch"].as_str().unwrap_or("torch"),
                pr["device"].as_str().unwrap_or("?"),
                pr["bf16"],
                pr["fused"],
                pr["compile"]
            ),
        ));
        if !cuda && a.flex {
            let ours = ours_train(&cfg, "flex", a.batch, a.steps.min(3));
            rows.push(Row::versus(
                format!("train step ({name}, batch {}, flex: pure Rust)", a.batch),
                ours,
                peer_sps,
                "samples/s",
                String::new(),
            ));
        }
    }

    if want("memory") {
        let mut child = Command::new(std::env::current_exe().unwrap());
        child.args(["--child-peak", "--device", &a.device]);
        let v = last_json_line(child);
        rows.push(Row {
            bench: format!("peak memory of a BERT-base (12×768) FashionBERT training step, batch 32, libtorch {}", if cuda { "CUDA (host memory)" } else { "CPU" }),
            ours: format!("{:.0}", v["peak_rss_mib"].as_f64().unwrap()),
            peer: "—".into(),
            ratio: f64::NAN,
            unit: "MiB resident (VmHWM)",
            note: format!("{:.2} samples/s in that run", v["samples_per_s"].as_f64().unwrap()),
        });
    }

    if want("tokenize") {
        let csv = PathBuf::from("../shared/data/fashion-real/products.csv");
        let vocab = PathBuf::from("weights/minilm/vocab.txt");
        if csv.is_file() && vocab.is_file() {
            let mut rdr = csv::Reader::from_path(&csv).unwrap();
            let headers = rdr.headers().unwrap().clone();
            let col = |name: &str| {
                headers
                    .iter()
                    .position(|h| h == name)
                    .unwrap_or_else(|| panic!("{}: no `{name}` column", csv.display()))
            };
            let (title, description) = (col("title"), col("description"));
            let texts: Vec<String> = rdr
                .records()
                .map(|r| {
                    let r = r.unwrap();
                    format!("{} {}", &r[title], &r[description])
                })
                .collect();
            let tok = fashionbert::text::BertTokenizer::from_vocab(&vocab).unwrap();
            let cfg = fashionbert::text::MaskConfig {
                prob: 0.15,
                max_predictions: 10,
                whole_word: false,
                vocab_size: tok.vocab_size() as u32,
            };
            let t0 = Instant::now();
            let enc = tok.encode_all(&texts, 64).unwrap();
            {
                use rayon::prelude::*;
                let _m: Vec<_> = enc
                    .par_iter()
                    .enumerate()
                    .map(|(i, e)| {
                        fashionbert::text::mask_tokens(
                            e,
                            &cfg,
                            &mut fashionbert::stages::tokenize::record_rng(1, &i.to_string()),
                        )
                    })
                    .collect();
            }
            let ours = texts.len() as f64 / t0.elapsed().as_secs_f64();
            let mut cmd = Command::new(python(&a));
            cmd.args([
                "tests/python/tokenize_reference.py",
                "--vocab",
                vocab.to_str().unwrap(),
                "--csv",
                csv.to_str().unwrap(),
                "--max-len",
                "64",
                "--impl",
                "fast",
                "--bench",
                "--threads",
                &n.to_string(),
            ]);
            let pr = last_json_line(cmd);
            let theirs = pr["records_per_s"].as_f64().unwrap();
            rows.push(Row::versus(
                format!(
                    "tokenize + BERT masking ({} fashion-real texts)",
                    texts.len()
                ),
                ours,
                theirs,
                "records/s",
                "peer: Hugging Face BertTokenizerFast (Rust tokenizers) + masking in Python".into(),
            ));
        } else {
            eprintln!(
                "skip tokenize: needs ../shared/data/fashion-real and weights/minilm/vocab.txt"
            );
        }
    }

    if runner {
        let noop = median_secs(|| {
            fashionbert_cli(&a, "run", &[]);
        });
        let status = median_secs(|| {
            fashionbert_cli(&a, "status", &[]);
        });
        for (what, s) in [
            ("no-op `run` (all stages cached)", noop),
            ("`status`", status),
        ] {
            rows.push(Row {
                bench: format!(
                    "runner: {what}, {}{}",
                    a.pipeline.display(),
                    a.pipeline_set
                        .iter()
                        .map(|s| format!(" --set {s}"))
                        .collect::<String>()
                ),
                ours: format!("{s:.3}"),
                peer: "—".into(),
                ratio: f64::NAN,
                unit: "seconds (median of 5)",
                note: "goal < 2 s".into(),
            });
        }
    }

    let machine = machine();
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut md = format!(
        "\n## {date} — {machine}\n\n`{}`\n\n| benchmark | fashionbert | PyTorch peer | ratio | unit | note |\n|---|---|---|---|---|---|\n",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    for r in &rows {
        let ratio = if r.ratio.is_nan() {
            "—".into()
        } else {
            format!("{:.2}×", r.ratio)
        };
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            r.bench, r.ours, r.peer, ratio, r.unit, r.note
        ));
    }
    println!("{md}");
    let mut all = std::fs::read_to_string(&a.out).unwrap_or_else(|_| "# Benchmarks\n\nAppended by `make bench` (`target/release/bench`): each section is one run, fashionbert and its PyTorch peer side by side on the same machine. Ratios > 1 mean fashionbert is faster.\n".into());
    all.push_str(&md);
    std::fs::write(&a.out, all).unwrap();
}

/// Runs `fashionbert VERB --config <pipeline> [--set ...] EXTRA` and returns its stdout.
fn fashionbert_cli(a: &Args, verb: &str, extra: &[&str]) -> Vec<u8> {
    let bin = std::env::current_exe()
        .unwrap()
        .with_file_name("fashionbert");
    let mut cmd = Command::new(bin);
    cmd.arg(verb).arg("--config").arg(&a.pipeline);
    for set in &a.pipeline_set {
        cmd.args(["--set", set]);
    }
    let o = cmd.args(extra).output().unwrap();
    assert!(
        o.status.success(),
        "fashionbert {verb}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// The stages of the benchmarked pipeline that are not cached.
fn not_cached(a: &Args) -> Vec<String> {
    let plan: serde_json::Value =
        serde_json::from_slice(&fashionbert_cli(a, "status", &["--json"])).unwrap();
    plan.as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] != "cached")
        .map(|s| s["stage"].as_str().unwrap_or("?").to_string())
        .collect()
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default();
    let gpu = if fashionbert::device::cuda_available() {
        Command::new("nvidia-smi")
            .args(["--query-gpu=name", "--format=csv,noheader"])
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_else(|| "CUDA GPU".into())
    } else {
        String::new()
    };
    format!(
        "{} cores, {cpu}{}",
        threads(),
        if gpu.is_empty() {
            String::new()
        } else {
            format!(", {gpu}")
        }
    )
}
