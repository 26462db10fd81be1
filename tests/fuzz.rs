//! Property tests (proptest) of the readers a user's input reaches: the products CSV, the
//! original's TSV records, the pipeline config and `--set`. Whatever the input, they return a
//! value or an error — never panic — and what they accept obeys the declared bounds; no CSV
//! record is lost (each is a row or a reject). Case counts are small so CI runs them in
//! seconds; raise PROPTEST_CASES to search longer.

use std::path::Path;

use fashionbert::dag::PipelineConfig;
use fashionbert::sources::csv::{Columns, read};
use fashionbert::tsv;
use proptest::prelude::*;

fn columns() -> Columns {
    Columns {
        id: "product_id".into(),
        image: "image".into(),
        title: "title".into(),
        description: "description".into(),
        category: "category".into(),
        subcategory: "subcategory".into(),
        split: "split".into(),
    }
}

/// A cell: anything printable, with the characters that make CSV hard.
fn cell() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9 ,\"'\\n\\r;\\t\\\\é€\u{0}-\u{8}]{0,12}").unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Well-quoted records with a random number of fields (7 is right): each record is either
    /// a row or a counted reject, never dropped, never a panic.
    #[test]
    fn csv_records_are_rows_or_rejects(
        records in proptest::collection::vec(proptest::collection::vec(cell(), 5..9), 0..12)
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        let mut w = csv::WriterBuilder::new().flexible(true).from_path(&path).unwrap();
        w.write_record(["product_id", "image", "title", "description", "category", "subcategory", "split"]).unwrap();
        for r in &records {
            w.write_record(r).unwrap();
        }
        w.flush().unwrap();
        drop(w);
        let (rows, bad) = read(&path, &columns()).unwrap();
        prop_assert_eq!(rows.len() + bad.len(), records.len());
        let good = records.iter().filter(|r| r.len() == 7).count();
        prop_assert_eq!(rows.len(), good);
        for b in &bad {
            prop_assert!(b.reason.starts_with("malformed row"), "{}", b.reason);
            prop_assert!(!b.reason.ends_with('\n'));
        }
    }

    /// Arbitrary bytes after a valid header: an error or rows and rejects, never a panic.
    #[test]
    fn csv_of_arbitrary_bytes_never_panics(body in proptest::collection::vec(any::<u8>(), 0..400)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.csv");
        let mut bytes = b"product_id,image,title,description,category,subcategory,split\n".to_vec();
        bytes.extend(body);
        std::fs::write(&path, bytes).unwrap();
        let _ = read(&path, &columns());
    }

    /// A TSV line: parsed values always have the schema's lengths and ranges.
    #[test]
    fn tsv_lines_parse_within_bounds_or_fail(
        cols in proptest::collection::vec(
            prop_oneof![
                proptest::string::string_regex("(-?[0-9]{1,12},){0,5}-?[0-9]{0,12}").unwrap(),
                proptest::string::string_regex("([0-9.eE+-]{1,8},){0,5}[0-9.eE+-]{0,8}").unwrap(),
                proptest::string::string_regex("[^\\t]{0,10}").unwrap(),
            ],
            0..12
        )
    ) {
        let schema = tsv::train_fields(4, 1, 4, 2, 2).unwrap();
        let line = cols.join("\t");
        if let Ok(vals) = tsv::parse_line(&line, &schema, Path::new("f.tsv"), 1) {
            for (f, v) in schema.iter().zip(&vals) {
                match f.kind {
                    tsv::Kind::Int => {
                        prop_assert_eq!(v.ints().len(), f.len);
                        let (lo, hi) = f.range.unwrap();
                        prop_assert!(v.ints().iter().all(|x| (lo..=hi).contains(x)));
                    }
                    tsv::Kind::Float => {
                        prop_assert_eq!(v.floats().len(), f.len);
                        prop_assert!(v.floats().iter().all(|x| x.is_finite()));
                    }
                    tsv::Kind::Str => {}
                }
            }
        }
    }

    /// Pipeline config text, valid or mangled: a config or an error, never a panic.
    #[test]
    fn config_text_never_panics(
        edits in proptest::collection::vec((0usize..2000, proptest::string::string_regex("[\\[\\]=\"a-z0-9._ \\n-]{0,6}").unwrap()), 0..6)
    ) {
        let mut text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.toml"),
        ).unwrap();
        for (at, s) in edits {
            let mut at = at.min(text.len());
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            let end = (at + s.len()).min(text.len());
            let mut end = end;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.replace_range(at..end, &s);
        }
        let reg = fashionbert::stages::registry();
        let _ = PipelineConfig::parse(&text, Path::new("p.toml"), Path::new("."), &reg);
    }

    /// `--set` with arbitrary text: applied within the declared bounds, or an error.
    #[test]
    fn set_never_panics_and_respects_bounds(
        stage in prop_oneof![Just("train"), Just("tokenize"), Just("ingest"), Just("patches"), Just("runtime"), Just("nope")],
        param in prop_oneof![Just("batch_size"), Just("epochs"), Just("max_len"), Just("valid_fraction"), Just("image_size"), Just("masked_patches"), Just("threads"), Just("lr"), Just("x")],
        value in proptest::string::string_regex("[-0-9.e\"\\[\\]a-z, ]{0,10}").unwrap(),
    ) {
        let reg = fashionbert::stages::registry();
        let text = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("pipeline.toml"),
        ).unwrap();
        let mut cfg = PipelineConfig::parse(&text, Path::new("p.toml"), Path::new("."), &reg).unwrap();
        let set = format!("{stage}.{param}={value}");
        if cfg.apply_sets(std::slice::from_ref(&set), &reg).is_ok() && stage != "runtime" {
            let spec = reg.get(stage).unwrap().spec().params.iter().find(|p| p.name == param).unwrap();
            let v = cfg.stage(stage).unwrap().params.get(param).unwrap();
            if let (Some((lo, hi)), fashionbert::dag::ParamValue::Int(x)) = (spec.range, v) {
                prop_assert!((lo..=hi).contains(&(*x as f64)), "{set} accepted outside its range");
            }
            if let (Some((lo, hi)), fashionbert::dag::ParamValue::Float(x)) = (spec.range, v) {
                prop_assert!((lo..=hi).contains(x), "{set} accepted outside its range");
            }
        }
    }
}

/// The manifest reader (issue 31): a manifest whose outputs name arbitrary paths — plain
/// names, `..`, absolute paths, empty or `.` parts, NULs — or whose bytes are damaged is read
/// only when every output is a plain relative name inside its entry; anything else is an
/// error, never a panic. Counts accepted and refused cases and fails if either never happened.
#[test]
fn manifests_name_only_paths_inside_their_entry() {
    use fashionbert::dag::Manifest;
    use fashionbert::dag::manifest::check_output_path;
    use proptest::test_runner::{Config, TestRunner};
    use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

    let part = prop_oneof![
        4 => proptest::string::string_regex("[a-z0-9_]{1,8}(\\.parquet)?").unwrap(),
        1 => Just("..".to_string()),
        1 => Just(".".to_string()),
        1 => Just(String::new()),
        1 => Just("a\u{0}b".to_string()),
    ];
    let path = (
        proptest::collection::vec(part, 1..4),
        prop_oneof![4 => Just(""), 1 => Just("/")],
    )
        .prop_map(|(parts, root)| format!("{root}{}", parts.join("/")));
    let cases = (
        proptest::collection::vec(path, 0..4),
        proptest::option::of((any::<usize>(), any::<u8>())),
    );
    let (accepted, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    TestRunner::new(Config::with_cases(400))
        .run(&cases, |(paths, flip)| {
            let outputs: Vec<serde_json::Value> = paths
                .iter()
                .map(|p| serde_json::json!({"path": p, "bytes": 1, "blake3": "00"}))
                .collect();
            let m = serde_json::json!({
                "stage": "pairs", "key": "ab12", "code_version": 1,
                "params": {"values": {}}, "upstream": {}, "deps": {}, "inputs": {},
                "outputs": outputs,
                "started_at": "2026-12-08T00:00:00Z", "finished_at": "2026-12-08T00:00:01Z",
                "seconds": 1.0, "counts": {}, "tool_version": "0.1.0",
            });
            let mut bytes = serde_json::to_vec(&m).unwrap();
            if let Some((at, x)) = flip {
                let n = bytes.len();
                bytes[at % n] ^= x;
            }
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("manifest.json"), &bytes).unwrap();
            match Manifest::read(dir.path()) {
                Ok(read) => {
                    for o in &read.outputs {
                        prop_assert!(check_output_path(&o.path).is_ok(), "{:?} accepted", o.path);
                        let inside = dir.path().join(&o.path);
                        prop_assert!(
                            inside.starts_with(dir.path()) && !o.path.split('/').any(|p| p == "..")
                        );
                    }
                    if flip.is_none() {
                        prop_assert_eq!(read.outputs.len(), paths.len());
                    }
                    accepted.fetch_add(1, Relaxed);
                }
                Err(e) => {
                    // Refused only for a reason: damaged JSON or a path that is not plain.
                    let plain = paths.iter().all(|p| check_output_path(p).is_ok());
                    prop_assert!(flip.is_some() || !plain, "a plain manifest refused: {}", e);
                    refused.fetch_add(1, Relaxed);
                }
            }
            Ok(())
        })
        .unwrap();
    let (a, r) = (accepted.into_inner(), refused.into_inner());
    eprintln!("manifests: {a} accepted and checked, {r} refused");
    assert!(
        a > 0 && r > 0,
        "accepted {a}, refused {r}: a case kind never happened"
    );
}
