//! The real-data alignment recipe end to end on tiny data: negatives drawn afresh each round
//! with a strategy and a curriculum, the contrastive loss (ITC) in training, separate learning
//! rates, the `grid` extractor and the three ranking scores of `evaluate`.

mod common;

use std::collections::HashMap;

use common::*;
use fashionbert::schema::{read_pairs, read_products};

/// Checks the rules every round of negatives must keep; returns the share of train negatives
/// drawn from their positive's subcategory, per round (valid ones are always same-subcategory).
fn check_rounds(d: &std::path::Path, rounds: usize) -> Vec<f64> {
    let a = d.join("artifacts");
    let products = read_products(&a.join("ingest/latest/products.parquet")).unwrap();
    let pos = read_pairs(&a.join("pairs/latest/pairs.parquet")).unwrap();
    let neg = read_pairs(&a.join("negatives/latest/negatives.parquet")).unwrap();
    let by_pid: HashMap<&str, &fashionbert::sources::Product> = products
        .iter()
        .map(|p| (p.product_id.as_str(), p))
        .collect();
    assert_eq!(neg.len(), pos.len() * rounds, "1:1 per round");
    let mut shares = Vec::new();
    for r in 0..rounds as i32 {
        let this: Vec<_> = neg.iter().filter(|n| n.round == r).collect();
        for split in ["train", "valid"] {
            assert_eq!(
                this.iter().filter(|n| n.split == split).count(),
                pos.iter().filter(|p| p.split == split).count(),
                "round {r}: one negative per positive in {split}"
            );
        }
        let mut same = 0usize;
        for n in &this {
            let img = by_pid[n.image_product_id.as_str()];
            let txt = by_pid[n.text_product_id.as_str()];
            assert_ne!(img.product_id, txt.product_id, "never the same product");
            assert_ne!(img.title_key, txt.title_key, "never the same title");
            assert_eq!(img.split, txt.split, "never across splits");
            assert_eq!(n.label, 0);
            if n.split == "valid" {
                assert!(
                    img.subcategory == txt.subcategory || !n.fallback.is_empty(),
                    "valid negatives stay same-subcategory"
                );
            } else if img.subcategory == txt.subcategory {
                same += 1;
            }
        }
        let train = this.iter().filter(|n| n.split == "train").count();
        shares.push(same as f64 / train as f64);
    }
    shares
}

#[test]
fn negatives_rounds_strategies_and_curriculum() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 120, "flex");

    // The original: one same-subcategory round. Round ids of round 0 do not depend on `rounds`.
    ok(d, &["run", "negatives"]);
    let one = read_pairs(&d.join("artifacts/negatives/latest/negatives.parquet")).unwrap();
    let s1 = check_rounds(d, 1);
    assert!(s1[0] > 0.9, "{s1:?}");

    ok(d, &["run", "negatives", "--set", "negatives.rounds=4"]);
    let shares = check_rounds(d, 4);
    assert!(shares.iter().all(|&s| s > 0.9), "{shares:?}");
    let four = read_pairs(&d.join("artifacts/negatives/latest/negatives.parquet")).unwrap();
    let round0: Vec<_> = four.iter().filter(|n| n.round == 0).cloned().collect();
    assert_eq!(round0, one, "round 0 is the single-round draw");
    // Rounds differ from each other.
    let r1: Vec<&str> = four
        .iter()
        .filter(|n| n.round == 1)
        .map(|n| n.text_product_id.as_str())
        .collect();
    let r0: Vec<&str> = round0.iter().map(|n| n.text_product_id.as_str()).collect();
    assert_ne!(r0, r1, "a fresh draw each round");

    // Random negatives: mostly from other subcategories (the synthetic data has many).
    ok(
        d,
        &[
            "run",
            "negatives",
            "--set",
            "negatives.strategy=random",
            "--set",
            "negatives.rounds=2",
        ],
    );
    let shares = check_rounds(d, 2);
    assert!(shares.iter().all(|&s| s < 0.5), "random: {shares:?}");

    // Curriculum: random first, all same-subcategory in the last round.
    let sets = [
        "--set",
        "negatives.strategy=curriculum",
        "--set",
        "negatives.rounds=3",
    ];
    let mut args = vec!["run", "negatives"];
    args.extend(sets);
    ok(d, &args);
    let shares = check_rounds(d, 3);
    assert!(shares[0] < 0.5 && shares[2] > 0.9, "curriculum: {shares:?}");
    let first = std::fs::read(d.join("artifacts/negatives/latest/negatives.parquet")).unwrap();
    let shown = ok(d, &["inspect", "negatives"]);
    assert!(shown.contains("round"), "{shown}");

    // Byte-identical in a fresh store.
    let other = tempfile::tempdir().unwrap();
    tiny_pipeline(other.path(), 120, "flex");
    ok(other.path(), &args);
    let second = std::fs::read(
        other
            .path()
            .join("artifacts/negatives/latest/negatives.parquet"),
    )
    .unwrap();
    assert_eq!(first, second, "negatives are reproducible byte for byte");

    // A bad share is refused with the param's name.
    let out = run(
        d,
        &[
            "run",
            "negatives",
            "--set",
            "negatives.strategy=curriculum",
            "--set",
            "negatives.hard_end=1.5",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("hard_end"));
}

#[test]
fn itc_training_grid_features_and_every_score() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 60, "auto");
    let sets = [
        "--set",
        "negatives.rounds=2",
        "--set",
        "negatives.strategy=curriculum",
        "--set",
        "features.extractor=grid",
        "--set",
        "train.epochs=2",
        "--set",
        "train.w_itc=1.0",
        "--set",
        "train.lr_new=1e-3",
        "--set",
        "evaluate.score=itc_then_itm",
        "--set",
        "evaluate.rerank_k=3",
    ];
    let mut args = vec!["run"];
    args.extend(sets);
    ok(d, &args);
    let a = d.join("artifacts");
    let meta: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(a.join("features/latest/meta.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["extractor"]["extractor"], "grid", "{meta}");

    // Records carry the round; training follows it and logs the ITC loss.
    let recs = polars_read(&a.join("records/latest/train.parquet"));
    let rounds = fashionbert::table::i32s(&recs, "round").unwrap();
    assert_eq!(rounds.iter().max(), Some(&1));
    assert_eq!(rounds.iter().min(), Some(&-1));
    let log = polars_read(&a.join("train/latest/train_log.parquet"));
    let itc: Vec<f32> = fashionbert::table::f32s(&log, "loss_itc").unwrap();
    // A batch of 8 records with fewer than two matched ones has no ITC loss (logged as 0).
    assert!(itc.iter().all(|v| v.is_finite() && *v >= 0.0), "{itc:?}");
    assert!(
        itc.iter().filter(|v| **v > 0.0).count() * 2 > itc.len(),
        "{itc:?}"
    );
    let valid = polars_read(&a.join("train/latest/valid_log.parquet"));
    assert!(valid.column("itc_accuracy").is_ok());
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(a.join("train/latest/fashionbert.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["itc_dim"], 256);

    let metrics = |d: &std::path::Path| -> serde_json::Value {
        serde_json::from_str(
            &std::fs::read_to_string(d.join("artifacts/evaluate/latest/metrics.json")).unwrap(),
        )
        .unwrap()
    };
    let m = metrics(d);
    assert!(
        m["eval_set"]["score"]
            .as_str()
            .unwrap()
            .starts_with("itc_then_itm")
    );
    // Re-ranking puts exactly the top k of each query above the rest.
    let pairs = polars_read(&a.join("evaluate/latest/pairs.parquet"));
    let l1: Vec<f32> = fashionbert::table::f32s(&pairs, "logit1").unwrap();
    let reranked = l1.iter().filter(|&&v| v > 500.0).count();
    assert_eq!(reranked, 2 * 8 * 3, "top 3 of 8 queries in both directions");

    // The other scores re-run only `evaluate`.
    for score in ["itc", "itm"] {
        let mut a2 = args.clone();
        let s = format!("evaluate.score={score}");
        a2.extend(["--set", &s]);
        let out = ok(d, &a2);
        assert_eq!(stages_run(&out), ["evaluate"], "{out}");
        let m = metrics(d);
        assert!(m["eval_set"]["score"].as_str().unwrap().starts_with(score));
        for dir in ["img2txt", "txt2img"] {
            let r1 = m[dir]["rank@1"].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&r1));
            // The harder views: per subcategory and same-subcategory queries add up to the
            // queries; the full gallery ranks every query against every valid product (ITC only).
            let q = m[dir]["queries"].as_u64().unwrap();
            let subs = m["by_subcategory"][dir].as_object().unwrap();
            let per_sub: u64 = subs.values().map(|v| v["queries"].as_u64().unwrap()).sum();
            assert_eq!(per_sub, q, "{m}");
            assert!(m["same_subcategory"][dir]["queries"].as_u64().unwrap() <= q);
            if score == "itc" {
                let g = &m["gallery"];
                assert_eq!(g[dir]["queries"].as_u64(), Some(q), "{m}");
                let n = g["products"].as_f64().unwrap();
                let c = g[dir]["candidates"].as_f64().unwrap();
                assert!(c > 1.0 && c <= n, "{g}");
            } else {
                assert!(m.get("gallery").is_none(), "no gallery for itm: {m}");
            }
        }
        let ranks = polars_read(&a.join("evaluate/latest/ranks.parquet"));
        assert!(ranks.column("subcategory").is_ok() && ranks.column("same_subcategory").is_ok());
        let report = std::fs::read_to_string(a.join("evaluate/latest/report.md")).unwrap();
        assert!(report.contains("By subcategory"), "{report}");
        assert_eq!(report.contains("Full gallery"), score == "itc", "{report}");
    }

    // A model without an ITC head cannot be scored by ITC: a clear error.
    let out = run(d, &["run", "--set", "evaluate.score=itc"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("w_itc"), "{err}");
}

fn polars_read(p: &std::path::Path) -> polars::prelude::DataFrame {
    fashionbert::table::read_parquet(p).unwrap()
}

/// `fashionbert evaluate --model … --csv …` on the catalogue a pipeline was trained on
/// reproduces the `evaluate` stage's metrics, and rejects bad rows as `ingest` does.
#[test]
fn evaluate_command_reproduces_the_stage_on_the_same_catalogue() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Images and texts from the synthetic generator, written out as a CSV catalogue.
    tiny_pipeline(d, 60, "auto");
    ok(d, &["run", "ingest"]);
    let ing = d.join("artifacts/ingest/latest");
    let products = read_products(&ing.join("products.parquet")).unwrap();
    let imgs = d.join("imgs");
    std::fs::create_dir(&imgs).unwrap();
    let mut csv = String::from("product_id,image,title,description,category,subcategory,split\n");
    for p in &products {
        let file = format!("{}.png", p.product_id);
        std::fs::copy(ing.join("images").join(&file), imgs.join(&file)).unwrap();
        csv.push_str(&format!(
            "{},{file},\"{}\",\"{}\",{},{},{}\n",
            p.product_id, p.title, p.text, p.category, p.subcategory, p.split
        ));
    }
    // Two bad rows: a missing image and a missing category.
    csv.push_str("bad1,nope.png,A title,A text,Topwear,Shirts,valid\n");
    csv.push_str("bad2,x.png,A title,A text,,Shirts,valid\n");
    std::fs::write(d.join("catalogue.csv"), &csv).unwrap();

    // A pipeline on that CSV.
    let cat = d.join("cat");
    std::fs::create_dir(&cat).unwrap();
    let cfg = std::fs::read_to_string(tiny_pipeline(&cat, 60, "auto")).unwrap();
    let a = cfg.find("[stages.ingest.params]").unwrap();
    let b = cfg.find("[stages.pairs]").unwrap();
    let cfg = format!(
        "{}[stages.ingest.params]\nsource = \"csv\"\ncsv = \"../catalogue.csv\"\nimage_root = \"../imgs\"\n\n{}",
        &cfg[..a],
        &cfg[b..]
    );
    std::fs::write(cat.join("pipeline.toml"), cfg).unwrap();
    ok(&cat, &["run"]);
    let stage_metrics: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(cat.join("artifacts/evaluate/latest/metrics.json")).unwrap(),
    )
    .unwrap();
    let model = cat.join("artifacts/train/latest");
    assert!(model.join("recipe.json").is_file());

    let out = d.join("eval-out");
    let printed = ok(
        d,
        &[
            "evaluate",
            "--model",
            model.to_str().unwrap(),
            "--csv",
            "catalogue.csv",
            "--images",
            "imgs",
            "--split",
            "valid",
            "--queries",
            "8",
            "--negatives",
            "10",
            "--batch-size",
            "32",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(printed.contains("img2txt: Rank@1"), "{printed}");
    for f in ["metrics.json", "ranks.parquet", "report.md"] {
        assert!(out.join(f).is_file(), "missing {f}");
    }
    let cli: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    for dir in ["img2txt", "txt2img"] {
        assert_eq!(
            cli[dir], stage_metrics[dir],
            "{dir}: the command and the stage disagree"
        );
    }
    // Rejects: the same two rows, for the same reasons, as the pipeline's ingest.
    let rejects = |root: &std::path::Path| -> Vec<String> {
        let df =
            fashionbert::table::read_parquet(&root.join("ingest/latest/rejects.parquet")).unwrap();
        // The kind of each reason (its paths are relative to each run's config).
        let mut v: Vec<String> = fashionbert::table::strings(&df, "reason")
            .unwrap()
            .iter()
            .map(|r| r.split(':').next().unwrap().to_string())
            .collect();
        v.sort();
        v
    };
    let stage_rejects = rejects(&cat.join("artifacts"));
    assert_eq!(stage_rejects.len(), 2, "{stage_rejects:?}");
    assert_eq!(rejects(&out.join(".store")), stage_rejects);

    // Any split name, or all.
    let all = d.join("eval-all");
    ok(
        d,
        &[
            "evaluate",
            "--model",
            model.to_str().unwrap(),
            "--csv",
            "catalogue.csv",
            "--images",
            "imgs",
            "--split",
            "all",
            "--queries",
            "5",
            "--negatives",
            "10",
            "--out",
            all.to_str().unwrap(),
        ],
    );
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(all.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(m["img2txt"]["queries"], 5);
}
