//! The data stages on real and on deliberately broken input: fashion-real end to end through
//! `tokenize` (counts, negatives' rules, tokenizer parity with Hugging Face, masking statistics),
//! the Fashion-Gen HDF5 reader on files in the official layout, and bad CSVs and images.

mod common;

use std::collections::HashMap;
use std::path::Path;

use common::*;

fn strings(df: &polars::prelude::DataFrame, c: &str) -> Vec<String> {
    fashionbert::table::strings(df, c).unwrap()
}

#[test]
fn fashion_real_products_pairs_negatives_tokens() {
    let Some(data) = fashion_real() else {
        return;
    };
    let weights = weights_dir();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(
        d.join("pipeline.toml"),
        format!(
            r#"
[runtime]
artifacts = "artifacts"
[stages.ingest]
[stages.ingest.params]
source = "csv"
csv = "{data}/products.csv"
groups_csv = "{data}/products_extra.csv"
text = "title_description"
[stages.pairs]
deps = ["ingest"]
[stages.negatives]
deps = ["ingest", "pairs"]
[stages.tokenize]
deps = ["ingest", "pairs", "negatives"]
[stages.tokenize.params]
vocab = "{vocab}"
"#,
            data = data.display(),
            vocab = weights.join("minilm/vocab.txt").display()
        ),
    )
    .unwrap();
    ok(d, &["run", "tokenize"]);
    let a = d.join("artifacts");
    let m = fashionbert::dag::Manifest::read(&a.join("ingest/latest")).unwrap();
    assert_eq!(m.counts["products"], 10_000);
    assert_eq!(m.counts["rejected"], 0);

    let products =
        fashionbert::table::read_parquet(&a.join("ingest/latest/products.parquet")).unwrap();
    let pid = strings(&products, "product_id");
    let subs = strings(&products, "subcategory");
    let sub: HashMap<&str, &str> = pid
        .iter()
        .map(String::as_str)
        .zip(subs.iter().map(String::as_str))
        .collect();
    let titles: Vec<String> = strings(&products, "title");
    let title_of: HashMap<&str, String> = pid
        .iter()
        .map(String::as_str)
        .zip(titles.iter().map(|t| t.to_lowercase()))
        .collect();
    let key_of: HashMap<&str, String> = pid
        .iter()
        .map(String::as_str)
        .zip(strings(&products, "title_key"))
        .collect();

    let pos = fashionbert::schema::read_pairs(&a.join("pairs/latest/pairs.parquet")).unwrap();
    let neg =
        fashionbert::schema::read_pairs(&a.join("negatives/latest/negatives.parquet")).unwrap();
    assert_eq!(pos.len(), 10_000);
    assert_eq!(neg.len(), 10_000);
    for split in ["train", "valid"] {
        let p = pos
            .iter()
            .filter(|x| x.split == split && x.label == 1)
            .count();
        let n = neg
            .iter()
            .filter(|x| x.split == split && x.label == 0)
            .count();
        assert_eq!(p, n, "1:1 in {split}");
    }
    let mut fallbacks = 0;
    for n in &neg {
        assert_ne!(n.text_product_id, n.image_product_id, "{}", n.pair_id);
        assert_ne!(
            title_of[n.text_product_id.as_str()],
            title_of[n.image_product_id.as_str()],
            "{}: same title",
            n.pair_id
        );
        assert_ne!(
            key_of[n.text_product_id.as_str()],
            key_of[n.image_product_id.as_str()],
            "{}: same title group",
            n.pair_id
        );
        if n.fallback.is_empty() {
            assert_eq!(
                sub[n.text_product_id.as_str()],
                sub[n.image_product_id.as_str()],
                "{}",
                n.pair_id
            );
        } else {
            fallbacks += 1;
        }
    }
    assert_eq!(
        fallbacks, 0,
        "every fashion-real subcategory has enough products"
    );

    // Token ids equal Hugging Face's BertTokenizerFast on every product text.
    let texts = fashionbert::table::read_parquet(&a.join("tokenize/latest/texts.parquet")).unwrap();
    let tp = strings(&texts, "product_id");
    let ids = fashionbert::table::i32_lists(&texts, "input_ids", 64).unwrap();
    let lens = fashionbert::table::i32s(&texts, "length").unwrap();
    let text_of: HashMap<String, String> = pid
        .iter()
        .cloned()
        .zip(strings(&products, "text"))
        .collect();
    let input = d.join("texts.txt");
    std::fs::write(
        &input,
        tp.iter()
            .map(|p| text_of[p].replace('\n', " "))
            .collect::<Vec<_>>()
            .join("\n")
            + "\n",
    )
    .unwrap();
    let out = d.join("ids.jsonl");
    py(&[
        &script("tokenize_reference.py"),
        "--vocab",
        weights.join("minilm/vocab.txt").to_str().unwrap(),
        "--input",
        input.to_str().unwrap(),
        "--max-len",
        "64",
        "--output",
        out.to_str().unwrap(),
    ]);
    let theirs: Vec<Vec<i32>> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(theirs.len(), tp.len());
    let mut differ = 0;
    for (i, t) in theirs.iter().enumerate() {
        let ours = &ids[i * 64..i * 64 + lens[i] as usize];
        if ours != t.as_slice() {
            differ += 1;
            eprintln!("{}: ours {ours:?}\ntheirs {t:?}", tp[i]);
        }
    }
    assert_eq!(
        differ, 0,
        "token ids differ from Hugging Face on {differ} texts"
    );

    // Masking statistics over 20,000 records.
    let tm = fashionbert::dag::Manifest::read(&a.join("tokenize/latest")).unwrap();
    let s = &tm.notes["masking"];
    let f = |k: &str| s[k].as_f64().unwrap();
    assert!((f("masked_share_of_eligible") - 0.15).abs() < 0.01, "{s}");
    assert!((f("share_mask_token") - 0.8).abs() < 0.02, "{s}");
    assert!((f("share_random_token") - 0.1).abs() < 0.02, "{s}");
    assert!((f("share_kept") - 0.1).abs() < 0.02, "{s}");
    let tokens =
        fashionbert::table::read_parquet(&a.join("tokenize/latest/tokens.parquet")).unwrap();
    let pos_ = fashionbert::table::i32_lists(&tokens, "masked_lm_positions", 10).unwrap();
    let w = fashionbert::table::f32_lists(&tokens, "masked_lm_weights", 10).unwrap();
    let labels = fashionbert::table::i32_lists(&tokens, "masked_lm_ids", 10).unwrap();
    for (j, (&p, &wt)) in pos_.iter().zip(&w).enumerate() {
        if wt > 0.0 {
            assert!(p >= 1, "never [CLS]");
            assert!(
                ![0, 101, 102].contains(&labels[j]),
                "never [PAD], [CLS] or [SEP]"
            );
        }
    }
    eprintln!("fashion-real: 10,000 products, 0 rejects, 10,000 + 10,000 pairs, masking {s}");
}

#[test]
fn fashiongen_hdf5_reader_on_the_official_layout() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let h5 = d.join("fashiongen_256_256_validation.h5");
    // Product 7 has two poses; product 9 has no name and no description (rejected); ids are ints.
    py(&[
        "-c",
        r#"
import sys, h5py, numpy as np
rows = [(7, b"Shirt A", b"Navy cotton shirt. Button closure.", b"TOPS", b"SHIRTS", b"id_gridfs_1"),
        (7, b"Shirt A", b"Navy cotton shirt. Button closure.", b"TOPS", b"SHIRTS", b"id_gridfs_2"),
        (8, b"Jeans B", b"Blue denim jeans with rips \xc3\xa9t\xc3\xa9.", b"PANTS", b"JEANS", b"id_gridfs_1"),
        (9, b"", b"", b"JACKETS & COATS", b"COATS", b"id_gridfs_1"),
        (10, b"Dress D", b"Red midi dress.", b"DRESSES", b"DRESSES", b"id_gridfs_1")]
with h5py.File(sys.argv[1], "w") as f:
    img = np.zeros((len(rows), 256, 256, 3), np.uint8)
    for i in range(len(rows)): img[i, :, :, i % 3] = 40 * (i + 1)
    f.create_dataset("input_image", data=img)
    f.create_dataset("input_productID", data=np.array([[r[0]] for r in rows], np.int32))
    for j, name in enumerate(["input_name", "input_description", "input_category", "input_subcategory", "input_pose"], 1):
        f.create_dataset(name, data=np.array([[r[j]] for r in rows], dtype="S400"))
"#,
        h5.to_str().unwrap(),
    ]);
    std::fs::write(
        d.join("pipeline.toml"),
        r#"
[stages.ingest]
[stages.ingest.params]
source = "fashiongen"
train_h5 = "fashiongen_256_256_validation.h5"
[stages.patches]
deps = ["pairs", "negatives"]
[stages.pairs]
deps = ["ingest"]
[stages.negatives]
deps = ["ingest", "pairs"]
[stages.features]
deps = ["ingest", "patches"]
[stages.features.params]
weights = "random:3"
"#,
    )
    .unwrap();
    ok(d, &["run", "features"]);
    let a = d.join("artifacts");
    let products =
        fashionbert::schema::read_products(&a.join("ingest/latest/products.parquet")).unwrap();
    assert_eq!(products.len(), 4);
    let ids: Vec<&str> = products.iter().map(|p| p.image_id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "train:7_id_gridfs_1",
            "train:7_id_gridfs_2",
            "train:8_id_gridfs_1",
            "train:10_id_gridfs_1"
        ]
    );
    assert_eq!(products[0].product_id, "7");
    assert_eq!(
        products[0].text,
        "Shirt A. Navy cotton shirt. Button closure."
    );
    assert!(
        products[2].text.contains("été"),
        "UTF-8 kept: {}",
        products[2].text
    );
    assert_eq!(products[1].image, "h5:fashiongen_256_256_validation.h5#1");
    let rejects =
        fashionbert::table::read_parquet(&a.join("ingest/latest/rejects.parquet")).unwrap();
    assert_eq!(strings(&rejects, "reason"), ["empty text"]);
    assert_eq!(strings(&rejects, "product_id"), ["9"]);
    // Images come straight from the file: four feature matrices, none rejected.
    let store = fashionbert::featstore::Store::open(&a.join("features/latest")).unwrap();
    assert_eq!(store.len(), 4);
    assert_ne!(
        store.get("train:7_id_gridfs_1").unwrap(),
        store.get("train:8_id_gridfs_1").unwrap()
    );
}

fn write_image(path: &Path, mode: &str) {
    py(&[
        "-c",
        &format!(
            "from PIL import Image; im = Image.new('{mode}', (40, 30)); im.paste({}, (0, 0, 20, 30)); im.save('{}')",
            match mode {
                "L" => "128",
                "RGBA" => "(200, 10, 10, 128)",
                "CMYK" => "(0, 255, 255, 0)",
                _ => "(10, 200, 10)",
            },
            path.display()
        ),
    ]);
}

#[test]
fn bad_csv_rows_and_images_are_rejected_with_reasons_never_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join("img")).unwrap();
    write_image(&d.join("img/rgb.jpg"), "RGB");
    write_image(&d.join("img/grey.png"), "L");
    write_image(&d.join("img/rgba.png"), "RGBA");
    write_image(&d.join("img/cmyk.jpg"), "CMYK");
    let good = std::fs::read(d.join("img/rgb.jpg")).unwrap();
    std::fs::write(d.join("img/truncated.jpg"), &good[..good.len() / 3]).unwrap();
    std::fs::write(d.join("img/garbage.jpg"), b"this is not a jpeg").unwrap();
    let csv = "product_id,image,title,description,category,subcategory,split\n\
1,img/rgb.jpg,Red shirt,A red shirt,Topwear,Shirts,train\n\
2,img/grey.png,Grey shirt,A grey shirt,Topwear,Shirts,train\n\
3,img/rgba.png,Clear top,A top,Topwear,Tops,valid\n\
4,img/cmyk.jpg,Print tee,A tee,Topwear,Tshirts,train\n\
5,img/truncated.jpg,Broken,Truncated file,Topwear,Shirts,train\n\
6,img/garbage.jpg,Garbage,Not an image,Topwear,Shirts,train\n\
7,img/missing.jpg,Missing,No file,Topwear,Shirts,train\n\
8,img/rgb.jpg,,,Topwear,Shirts,train\n\
9,img/rgb.jpg,No category,Text,,Shirts,train\n\
10,img/rgb.jpg,Extra,field,Topwear,Shirts,train,surplus\n\
1,img/rgb.jpg,Dup,Duplicate id,Topwear,Shirts,train\n\
11,img/rgb.jpg,Odd split,Text,Topwear,Shirts,holdout\n";
    std::fs::write(d.join("products.csv"), csv).unwrap();
    std::fs::write(
        d.join("pipeline.toml"),
        "[stages.ingest]\n[stages.ingest.params]\nsource = \"csv\"\ncsv = \"products.csv\"\n",
    )
    .unwrap();
    let out = ok(d, &["run", "ingest"]);
    assert!(out.contains("rejected: 8"), "{out}");
    let a = d.join("artifacts/ingest/latest");
    let products = fashionbert::schema::read_products(&a.join("products.parquet")).unwrap();
    let kept: Vec<&str> = products.iter().map(|p| p.product_id.as_str()).collect();
    assert_eq!(
        kept,
        ["1", "2", "3", "4"],
        "greyscale, RGBA and CMYK images are converted, not rejected"
    );
    let rejects = fashionbert::table::read_parquet(&a.join("rejects.parquet")).unwrap();
    let reasons: Vec<String> = strings(&rejects, "reason");
    let lines = fashionbert::table::i64s(&rejects, "line").unwrap();
    let all = reasons.join("\n");
    for want in [
        "malformed row: 8 fields, expected 7",
        "empty text",
        "missing category",
        "duplicate product_id: first seen at line 2",
        "unknown split",
        "undecodable image",
        "missing image",
    ] {
        assert!(all.contains(want), "no reject for {want:?}:\n{all}");
    }
    assert_eq!(
        reasons.len(),
        8,
        "5 bad rows + truncated, garbage and missing images:\n{all}"
    );
    assert!(
        lines.contains(&11),
        "the malformed row is named by its line: {lines:?}"
    );
    // Every input row is either kept or rejected.
    assert_eq!(products.len() + reasons.len(), 12);
    // The CMYK red image really is red after conversion.
    let loader = fashionbert::images::ImageLoader::new(d, &a);
    let img = loader
        .load(&fashionbert::images::ImageRef::parse(&products[3].image))
        .unwrap();
    let px = img.get_pixel(5, 5).0;
    assert!(
        px[0] > 180 && px[1] < 80 && px[2] < 80,
        "CMYK (0,255,255,0) is red, got {px:?}"
    );

    // The image root here is the config's directory, which also holds `artifacts/`: the new
    // store entry must not count as a changed input.
    let again = ok(d, &["status"]);
    assert!(
        again.contains("cached") && !again.contains("will run"),
        "{again}"
    );

    // A missing column fails before any work, naming the file and the column.
    std::fs::write(
        d.join("products.csv"),
        "product_id,image,title,description,category,split\n1,img/rgb.jpg,a,b,c,train\n",
    )
    .unwrap();
    let out = run(d, &["run", "ingest"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("products.csv") && err.contains("`subcategory`"),
        "{err}"
    );
}
