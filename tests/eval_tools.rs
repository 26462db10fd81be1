//! Evaluation and the tools around it, on the tiny pipeline: the compatible metrics equal the
//! original script's (re-implemented in Python) on our prediction files; the original's TSV
//! formats round-trip exactly and score the same as the stage; bad models, missing features and
//! malformed files fail with messages that name them.

mod common;

use common::*;

#[test]
fn evaluation_tsv_round_trips_and_failures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_pipeline(d, 60, "tch");
    ok(d, &["run"]);
    let eval = d.join("artifacts/evaluate/latest");
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(eval.join("metrics.json")).unwrap()).unwrap();

    // 1. The compatible figures are what the original script computes on our prediction file.
    for dirn in ["img2txt", "txt2img"] {
        let out = std::process::Command::new(python())
            .args([
                &script("easytransfer_metrics.py"),
                "eval",
                eval.join(format!("predictions_{dirn}.txt"))
                    .to_str()
                    .unwrap(),
                "--task",
                dirn,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let theirs: serde_json::Value = serde_json::from_slice(
            out.stdout
                .split(|b| *b == b'\n')
                .find(|l| l.starts_with(b"{"))
                .unwrap(),
        )
        .unwrap();
        let ours = &metrics[dirn]["easytransfer_compatible"];
        for k in ["acc", "auc", "rank@1", "rank@5", "rank@10", "rank@100"] {
            let (a, b) = (ours[k].as_f64().unwrap(), theirs[k].as_f64().unwrap());
            assert!((a - b).abs() < 1e-6, "{dirn} {k}: ours {a}, original {b}");
        }
        assert_eq!(ours["groups"], theirs["groups"]);
    }

    // 2. Training records → the original's TSV → back: identical.
    ok(
        d,
        &[
            "export-tsv",
            "--split",
            "train",
            "--out",
            "tsv",
            "--per-file",
            "25",
        ],
    );
    let list = std::fs::read_to_string(d.join("tsv/train.list_csv")).unwrap();
    assert!(
        list.lines().count() >= 3,
        "count line and several files: {list}"
    );
    ok(
        d,
        &[
            "import-tsv",
            "tsv/train.list_csv",
            "--out",
            "imported",
            "--text-len",
            "32",
        ],
    );
    let a = fashionbert::training::data::Records::read(
        &d.join("artifacts/records/latest/train.parquet"),
        32,
        10,
        5,
    )
    .unwrap();
    let b =
        fashionbert::training::data::Records::read(&d.join("imported/records.parquet"), 32, 10, 5)
            .unwrap();
    assert_eq!(a.len(), b.len());
    assert_eq!(a.input_ids, b.input_ids);
    assert_eq!(a.input_mask, b.input_mask);
    assert_eq!(a.segment_ids, b.segment_ids);
    assert_eq!(a.masked_lm_positions, b.masked_lm_positions);
    assert_eq!(a.masked_lm_ids, b.masked_lm_ids);
    assert_eq!(a.masked_lm_weights, b.masked_lm_weights);
    assert_eq!(a.masked_patch_positions, b.masked_patch_positions);
    assert_eq!(a.label, b.label);
    let sa = fashionbert::featstore::Store::open(&d.join("artifacts/features/latest")).unwrap();
    let sb = fashionbert::featstore::Store::open(&d.join("imported/features")).unwrap();
    for i in 0..a.len() {
        assert_eq!(
            sa.get(&a.image_id[i]).unwrap(),
            sb.get(&b.image_id[i]).unwrap(),
            "features of record {i}"
        );
    }
    let distinct: std::collections::HashSet<&String> = a.image_id.iter().collect();
    assert_eq!(
        sb.len(),
        distinct.len(),
        "an image shared by a positive and a negative is stored once"
    );

    // 3. The eval set in the original's eval format, scored by `eval-tsv`: the stage's numbers.
    let model = d.join("artifacts/train/latest");
    for dirn in ["img2txt", "txt2img"] {
        ok(
            d,
            &[
                "export-tsv",
                "--split",
                &format!("eval-{dirn}"),
                "--out",
                "evaltsv",
            ],
        );
        let out = d.join(format!("scored-{dirn}"));
        ok(
            d,
            &[
                "eval-tsv",
                &format!("evaltsv/eval-{dirn}.list_csv"),
                "--model",
                model.to_str().unwrap(),
                "--type",
                dirn,
                "--out",
                out.to_str().unwrap(),
                "--device",
                "tch",
            ],
        );
        let m: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap())
                .unwrap();
        for k in ["rank@1", "rank@5", "rank@10", "mrr", "auc", "acc"] {
            let (x, y) = (
                m[dirn][k].as_f64().unwrap(),
                metrics[dirn][k].as_f64().unwrap(),
            );
            assert!(
                (x - y).abs() < 1e-3,
                "{dirn} {k}: eval-tsv {x} vs evaluate {y}"
            );
        }
        assert!(out.join(format!("eval_{dirn}_results.txt")).is_file());
    }

    // 4. Failures name what is wrong.
    let bad = d.join("badmodel");
    std::fs::create_dir(&bad).unwrap();
    std::fs::copy(
        model.join("model.safetensors"),
        bad.join("model.safetensors"),
    )
    .unwrap();
    std::fs::copy(model.join("fashionbert.json"), bad.join("fashionbert.json")).unwrap();
    let cfg = std::fs::read_to_string(model.join("config.json"))
        .unwrap()
        .replace("\"hidden_size\": 32", "\"hidden_size\": 48");
    std::fs::write(bad.join("config.json"), cfg).unwrap();
    let eval_img2txt = |file: &str, model: &std::path::Path| {
        run(
            d,
            &[
                "eval-tsv",
                file,
                "--model",
                model.to_str().unwrap(),
                "--type",
                "img2txt",
                "--device",
                "tch",
            ],
        )
    };
    let o = eval_img2txt("evaltsv/eval-img2txt.list_csv", &bad);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("model.safetensors") && err.contains("config.json"),
        "{err}"
    );

    let first = std::fs::read_dir(d.join("evaltsv"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.extension().is_some_and(|x| x == "tsv")
                && p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("eval-img2txt")
        })
        .unwrap();
    let text = std::fs::read_to_string(&first).unwrap();
    let broken: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 1 {
                l.replacen('\t', "\tx", 2)
            } else {
                l.to_string()
            }
        })
        .collect();
    std::fs::write(&first, broken.join("\n")).unwrap();
    let o = eval_img2txt(first.to_str().unwrap(), &model);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains(first.file_name().unwrap().to_str().unwrap())
            && err.contains("row 2"),
        "{err}"
    );

    // A txt2img eval set scored as img2txt: the files' structure says which it is.
    let o = eval_img2txt("evaltsv/eval-txt2img.list_csv", &model);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("look like an eval set of type txt2img"),
        "{err}"
    );

    // A token id beyond the model's vocabulary (and a negative one): a named error, not a
    // libtorch index panic.
    for bad_id in ["999999", "-5"] {
        let lines: Vec<String> = text
            .lines()
            .map(|l| {
                let mut cols: Vec<String> = l.split('\t').map(String::from).collect();
                let mut ids: Vec<&str> = cols[2].split(',').collect();
                ids[1] = bad_id;
                cols[2] = ids.join(",");
                cols.join("\t")
            })
            .collect();
        std::fs::write(&first, lines.join("\n")).unwrap();
        let o = eval_img2txt(first.to_str().unwrap(), &model);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.code() == Some(1)
                && err.contains("input_ids")
                && err.contains(&format!("value {bad_id} (position 1) is outside")),
            "{err}"
        );
    }

    // Empty inputs are errors with a reason, not a 0-record success (issue 31, item 11):
    // an empty data file, a list naming none, and a list whose files hold no record.
    std::fs::write(d.join("empty.tsv"), "").unwrap();
    let o = eval_img2txt("empty.tsv", &model);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.code() == Some(1) && err.contains("holds no record"),
        "{err}"
    );
    std::fs::write(d.join("none.list_csv"), "0\n").unwrap();
    let o = run(d, &["import-tsv", "none.list_csv", "--out", "imp0"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("names no data file"),
        "{err}"
    );
    std::fs::write(d.join("empty.list_csv"), "0\nempty.tsv\n").unwrap();
    let o = run(d, &["import-tsv", "empty.list_csv", "--out", "imp1"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("hold no record"),
        "{err}"
    );

    // A feature store without one of the records' images.
    let store = fashionbert::featstore::Store::open(&d.join("artifacts/features/latest")).unwrap();
    let e = store.get("no-such-image").unwrap_err().to_string();
    assert!(e.contains("no-such-image") && e.contains("features"), "{e}");
}
