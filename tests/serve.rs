//! `fashionbert serve` (issue 33): the JSON API over a tiny pipeline's store, its refusals, a
//! pipeline run writing new entries while it serves, and a real browser (Debian's headless
//! Chromium through its WebDriver) loading the page, searching, opening a record and a query.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use common::*;
use serde_json::Value;

/// A running server, killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Server {
    start_with(dir, &[])
}

fn start_with(dir: &Path, extra: &[&str]) -> Server {
    let mut child = Command::new(bin())
        .args(["serve", "--port", "0"])
        .args(extra)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fashionbert serve");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .expect("serve printed its address")
            .expect("stdout");
        if let Some(rest) = line.strip_prefix("listening on http://") {
            break rest.trim_end_matches('/').to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, addr }
}

/// One HTTP/1.1 request; returns (status, content type, body).
fn request(addr: &str, method: &str, path: &str, body: &[u8]) -> (u16, String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut body = raw[split + 4..].to_vec();
    let status: u16 = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let header = |name: &str| {
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    if header("transfer-encoding") == "chunked" {
        let mut out = Vec::new();
        let mut rest = &body[..];
        loop {
            let eol = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let n = usize::from_str_radix(std::str::from_utf8(&rest[..eol]).unwrap().trim(), 16)
                .unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&rest[eol + 2..eol + 2 + n]);
            rest = &rest[eol + 2 + n + 2..];
        }
        body = out;
    }
    (status, header("content-type"), body)
}

fn get_json(addr: &str, path: &str, want: u16) -> Value {
    let (status, ctype, body) = request(addr, "GET", path, b"");
    let text = String::from_utf8_lossy(&body);
    assert_eq!(status, want, "GET {path}: {text}");
    assert!(ctype.starts_with("application/json"), "GET {path}: {ctype}");
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {text}"))
}

fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The tiny pipeline with the contrastive recipe and an `embed` stage, run through.
fn served_pipeline(d: &Path) {
    let cfg = tiny_pipeline(d, 40, "tch");
    let mut text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace(
            "init = \"random\"",
            "init = \"random\"\nw_itc = 1.0\njoint = false",
        )
        .replace("epochs = 1", "epochs = 4");
    text.push_str("\n[stages.embed]\n");
    std::fs::write(&cfg, text).unwrap();
    ok(d, &["run"]);
}

#[test]
fn the_api_answers_refuses_and_keeps_serving_while_a_run_writes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    served_pipeline(d);
    let srv = start(d);
    let a = srv.addr.as_str();
    assert!(
        a.starts_with("127.0.0.1:"),
        "binds loopback by default: {a}"
    );

    let (s, ctype, page) = request(a, "GET", "/", b"");
    assert_eq!(s, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(String::from_utf8_lossy(&page).contains("<title>fashionbert</title>"));

    let info = get_json(a, "/api/info", 200);
    let model = info["model"].as_str().unwrap().to_string();
    assert!(model.starts_with("train/"), "{info}");
    assert_eq!(info["search_by_text"], true, "{info}");
    let n = info["catalogue"].as_u64().unwrap();
    assert_eq!(n, 40, "{info}");
    let keys = info["entries"].as_object().unwrap().clone();
    let key = |s: &str| keys[s].as_str().unwrap().to_string();

    // The DAG: every stage cached, each with its upstream and the served key.
    let st = get_json(a, "/api/stages", 200);
    let stages = st["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 10, "{st}");
    for s in stages {
        assert_eq!(s["state"], "cached", "{s}");
        assert_eq!(s["key"], s["served"], "{s}");
    }
    let train = stages.iter().find(|s| s["stage"] == "train").unwrap();
    assert!(
        train["deps"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d == "records"),
        "{train}"
    );

    // Entries, params, a page of a table with chosen columns.
    let runs = get_json(a, "/api/runs/train", 200);
    assert_eq!(runs["runs"].as_array().unwrap().len(), 1);
    assert_eq!(runs["served"], key("train").as_str());
    let e = get_json(a, &format!("/api/entries/train/{}", key("train")), 200);
    assert_eq!(e["served"], true);
    assert_eq!(e["manifest"]["params"]["values"]["w_itc"], 1.0, "{e}");
    let t = get_json(
        a,
        &format!(
            "/api/table/ingest/{}/products.parquet?offset=5&limit=3&columns=image_id,title",
            key("ingest")
        ),
        200,
    );
    assert_eq!(t["total"], 40);
    assert_eq!(t["columns"], serde_json::json!(["image_id", "title"]));
    let rows = t["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 3);
    let products = fashionbert::schema::read_products(
        &d.join("artifacts/ingest")
            .join(key("ingest"))
            .join("products.parquet"),
    )
    .unwrap();
    assert_eq!(rows[0][0], products[5].image_id.as_str());
    assert_eq!(rows[2][1], products[7].title.as_str());
    // Numbers stay numbers.
    let r = get_json(
        a,
        &format!(
            "/api/table/evaluate/{}/ranks.parquet?limit=2",
            key("evaluate")
        ),
        200,
    );
    let ci = r["columns"]
        .as_array()
        .unwrap()
        .iter()
        .position(|c| c == "candidates")
        .unwrap();
    assert!(r["rows"][0][ci].is_number(), "{r}");

    // Refusals: 4xx JSON that says what to change, never a path outside the entry.
    let ing = key("ingest");
    for (path, status, says) in [
        (
            format!("/api/table/ingest/{ing}/products.parquet?columns=nope"),
            400,
            "no column `nope`",
        ),
        (
            format!("/api/table/ingest/{ing}/products.parquet?limit=0"),
            400,
            "`limit` must be",
        ),
        (
            format!("/api/table/ingest/{ing}/products.parquet?offset=999"),
            400,
            "`offset` must be",
        ),
        (
            format!("/api/table/ingest/{ing}/..%2F..%2F..%2Fpipeline.toml"),
            404,
            "has no table",
        ),
        (
            format!("/api/table/ingest/{ing}/manifest.json"),
            404,
            "has no table",
        ),
        (
            "/api/table/ingest/zz/products.parquet".to_string(),
            400,
            "not an entry key",
        ),
        (
            format!("/api/table/ingest/{}/products.parquet", "ab".repeat(10)),
            404,
            "no entry ingest/",
        ),
        ("/api/runs/nope".to_string(), 404, "stages: ingest"),
        ("/api/image/nope".to_string(), 404, "no image `nope`"),
        ("/api/search?text=dress&k=0".to_string(), 400, "`k` must be"),
        (
            "/api/search?text=dress&k=5000".to_string(),
            400,
            "`k` must be",
        ),
        (
            "/api/search?text=dress&in=shoes".to_string(),
            400,
            "`in` is",
        ),
        ("/api/search".to_string(), 400, "give one query"),
        ("/api/search?product=no-such".to_string(), 404, "no-such"),
        ("/api/record/p:nope".to_string(), 404, "no record"),
        (
            "/api/evaluation/query?direction=img2txt&query=nope".to_string(),
            404,
            "no img2txt query",
        ),
        (
            "/api/evaluation/query?direction=sideways&query=x".to_string(),
            400,
            "`direction`",
        ),
        (
            "/api/evaluation/plot/..%2Fmanifest.json".to_string(),
            404,
            "no plot",
        ),
        ("/api/nothing".to_string(), 404, "no such route"),
    ] {
        let v = get_json(a, &path, status);
        let msg = v["error"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "GET {path}: {msg}");
    }

    // Images: a catalogue image as a JPEG within the asked size.
    let (s, ctype, jpg) = request(
        a,
        "GET",
        &format!("/api/image/{}?size=32", products[0].image_id),
        b"",
    );
    assert_eq!((s, ctype.as_str()), (200, "image/jpeg"));
    let img = image::load_from_memory(&jpg).unwrap();
    assert!(img.width() <= 32 && img.height() <= 32);

    // Search: by text (ranked images, the filter kept), by product (itself left out), by an
    // uploaded image (ranked texts).
    let sub = &products[3].subcategory;
    let r = get_json(
        a,
        &format!(
            "/api/search?text={}&k=5&subcategory={}",
            enc(&products[3].title),
            enc(sub)
        ),
        200,
    );
    let hits = r["hits"].as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= 5, "{r}");
    assert!(hits.iter().all(|h| h["subcategory"] == sub.as_str()), "{r}");
    let scores: Vec<f64> = hits.iter().map(|h| h["score"].as_f64().unwrap()).collect();
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert_eq!(r["model"], model.as_str());
    let r = get_json(
        a,
        &format!("/api/search?product={}&k=3", enc(&products[0].product_id)),
        200,
    );
    assert_eq!(r["hits"].as_array().unwrap().len(), 3);
    assert!(
        r["hits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|h| h["product_id"] != products[0].product_id.as_str())
    );
    let png = std::fs::read(
        d.join("artifacts/ingest")
            .join(key("ingest"))
            .join(products[0].image.trim_start_matches("entry:")),
    )
    .unwrap();
    let (s, _, body) = request(a, "POST", "/api/search/image?k=4", &png);
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ranked"], "texts");
    assert_eq!(v["hits"].as_array().unwrap().len(), 4);
    let (s, _, body) = request(a, "POST", "/api/search/image", b"not an image");
    assert_eq!(s, 400, "{}", String::from_utf8_lossy(&body));
    // Through the HNSW index (--index-above 0): on 40 products it finds what the exact pass
    // finds, with the exact scores.
    assert_eq!(
        get_json(a, "/api/info", 200)["index"],
        serde_json::json!([])
    );
    let ix = start_with(d, &["--index-above", "0"]);
    let info = get_json(&ix.addr, "/api/info", 200);
    assert_eq!(info["index"].as_array().unwrap().len(), 2, "{info}");
    for p in &products[..5] {
        let q = format!("/api/search?product={}&k=6", enc(&p.product_id));
        let (e, h) = (get_json(a, &q, 200), get_json(&ix.addr, &q, 200));
        assert_eq!(
            (e["method"].as_str(), h["method"].as_str()),
            (Some("exact"), Some("hnsw"))
        );
        assert_eq!(e["hits"], h["hits"], "{q}");
    }
    drop(ix);

    // A record as `show` draws it; the training curves; the evaluation and one query.
    let (s, ctype, rec) = request(
        a,
        "GET",
        &format!("/api/record/p:{}", enc(&products[0].image_id)),
        b"",
    );
    assert_eq!(
        (s, ctype.as_str()),
        (200, "image/png"),
        "{}",
        String::from_utf8_lossy(&rec)
    );
    assert!(rec.starts_with(b"\x89PNG"));
    let c = get_json(a, &format!("/api/curves/{}", key("train")), 200);
    let steps = c["curves"]["train"]["step"].as_array().unwrap().len();
    assert!(
        steps > 0 && c["curves"]["train"]["loss"].as_array().unwrap().len() == steps,
        "{c}"
    );
    let ev = get_json(a, "/api/evaluation", 200);
    assert!(ev["metrics"]["img2txt"]["rank@1"].is_number(), "{ev}");
    assert!(
        ev["plots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == "rank_at_k.png"),
        "{ev}"
    );
    let (s, _, plot) = request(a, "GET", "/api/evaluation/plot/rank_at_k.png", b"");
    assert!(s == 200 && plot.starts_with(b"\x89PNG"));
    let qs = get_json(
        a,
        "/api/evaluation/queries?direction=txt2img&limit=500",
        200,
    );
    let cols: Vec<String> = qs["columns"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect();
    let col = |n: &str| cols.iter().position(|c| c == n).unwrap();
    let qrows = qs["rows"].as_array().unwrap();
    assert_eq!(qrows.len() as u64, qs["total"].as_u64().unwrap());
    // Each query's candidates: one true match, at the rank ranks.parquet gives it.
    for q in qrows.iter().filter(|q| q[col("ties")] == 0).take(5) {
        let id = q[col("query")].as_str().unwrap();
        let c = get_json(
            a,
            &format!("/api/evaluation/query?direction=txt2img&query={}", enc(id)),
            200,
        );
        let cands = c["candidates"].as_array().unwrap();
        assert_eq!(
            cands.len() as u64,
            q[col("candidates")].as_u64().unwrap(),
            "{c}"
        );
        let matches: Vec<&Value> = cands.iter().filter(|x| x["match"] == true).collect();
        assert_eq!(matches.len(), 1, "{c}");
        assert_eq!(
            matches[0]["rank"].as_f64().unwrap(),
            q[col("rank")].as_f64().unwrap(),
            "{c}"
        );
    }

    // A run writing new train/evaluate/embed entries into the store while the server answers.
    let d2 = d.to_path_buf();
    let run = std::thread::spawn(move || {
        ok(&d2, &["run", "--set", "train.max_steps=2"]);
    });
    let mut answered = 0;
    while !run.is_finished() {
        for path in [
            format!("/api/search?product={}&k=5", enc(&products[1].product_id)),
            "/api/stages".to_string(),
            format!("/api/table/ingest/{ing}/products.parquet?limit=5"),
        ] {
            let (s, _, body) = request(a, "GET", &path, b"");
            assert_eq!(
                s,
                200,
                "GET {path} during a run: {}",
                String::from_utf8_lossy(&body)
            );
            answered += 1;
        }
    }
    run.join().unwrap();
    assert!(answered >= 3);
    let runs = get_json(a, "/api/runs/train", 200);
    assert_eq!(
        runs["runs"].as_array().unwrap().len(),
        2,
        "the run's entry is listed: {runs}"
    );
    assert_eq!(
        get_json(a, "/api/info", 200)["model"],
        model.as_str(),
        "still serving the config's model"
    );
    let r = get_json(
        a,
        &format!("/api/search?text={}&k=3", enc(&products[2].title)),
        200,
    );
    assert_eq!(r["hits"].as_array().unwrap().len(), 3);
}

#[test]
fn a_browser_loads_the_page_searches_and_opens_a_record_and_a_query() {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is absent: `make sysdeps` installs Debian's chromium and chromium-driver"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    served_pipeline(d);
    let srv = start(d);
    let a = srv.addr.as_str();
    // A product whose title finds its own image among the first 5 (through the API): the page
    // must show that image among its first 5 results for the same text.
    let ingest = get_json(a, "/api/info", 200)["entries"]["ingest"]
        .as_str()
        .unwrap()
        .to_string();
    let products = fashionbert::schema::read_products(
        &d.join("artifacts/ingest")
            .join(&ingest)
            .join("products.parquet"),
    )
    .unwrap();
    let p = products
        .iter()
        .find(|p| {
            let r = get_json(a, &format!("/api/search?text={}&k=5", enc(&p.title)), 200);
            r["hits"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["image_id"] == p.image_id.as_str())
        })
        .expect("some product's title finds its image in the top 5");
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = Command::new(python())
        .args([
            &script("browser_check.py"),
            &format!("http://{a}/"),
            shots.to_str().unwrap(),
            &p.title,
            &p.image_id,
        ])
        .output()
        .expect("python");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "browser check failed:\n{text}");
    let v: Value = serde_json::from_str(
        text.lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .unwrap_or("{}"),
    )
    .unwrap();
    assert_eq!(v["stages_cached"], 10, "{v}");
    let top: Vec<&str> = v["search_top"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    assert!(top.iter().take(5).any(|i| *i == p.image_id), "{v}");
    assert_eq!(v["search_images_loaded"], true, "{v}");
    assert!(v["record_width"].as_u64().unwrap() > 100, "{v}");
    assert_eq!(v["query_has_true_match"], true, "{v}");
    assert!(v["table_thumbs_loaded"].as_u64().unwrap() > 0, "{v}");
    assert!(v["training_lines"].as_u64().unwrap() > 0, "{v}");
    for page in [
        "pipeline",
        "search",
        "record",
        "evaluation",
        "tables",
        "training",
    ] {
        let f = shots.join(format!("{page}.png"));
        assert!(
            std::fs::metadata(&f)
                .map(|m| m.len() > 5_000)
                .unwrap_or(false),
            "{}",
            f.display()
        );
    }
}

/// `fashionbert embed --model … --csv …` (issue 33): a catalogue given as a CSV and its images,
/// prepared as the model's recipe says, gets the same image embeddings as the pipeline's own
/// `embed` stage gives the same images; only the rows of `--split`, stored as asked (f16).
#[test]
fn embed_a_catalogue_given_as_a_csv() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    served_pipeline(d);
    let ingest = d.join("artifacts/ingest/latest");
    let products = fashionbert::schema::read_products(&ingest.join("products.parquet")).unwrap();
    let cat = d.join("shop");
    std::fs::create_dir_all(cat.join("img")).unwrap();
    let mut csv = csv::Writer::from_path(cat.join("products.csv")).unwrap();
    csv.write_record([
        "product_id",
        "image",
        "title",
        "description",
        "category",
        "subcategory",
        "split",
    ])
    .unwrap();
    for (i, p) in products.iter().enumerate() {
        let name = format!("img/{}.png", p.image_id);
        std::fs::copy(
            ingest.join(p.image.trim_start_matches("entry:")),
            cat.join(&name),
        )
        .unwrap();
        let split = if i % 3 == 0 { "test" } else { "train" };
        csv.write_record([
            &p.product_id,
            &name,
            &p.title,
            "",
            &p.category,
            &p.subcategory,
            split,
        ])
        .unwrap();
    }
    csv.flush().unwrap();
    drop(csv);
    let out = ok(
        d,
        &[
            "embed",
            "--model",
            "artifacts/train/latest",
            "--csv",
            "shop/products.csv",
            "--split",
            "test",
            "--dtype",
            "f16",
            "--out",
            "emb",
        ],
    );
    let want = products.iter().step_by(3).count();
    assert!(out.contains(&format!("wrote {want} products")), "{out}");
    let e = fashionbert::schema::embeddings::Embeddings::read(&d.join("emb")).unwrap();
    assert_eq!(e.len(), want);
    let pipeline =
        fashionbert::schema::embeddings::Embeddings::read(&d.join("artifacts/embed/latest"))
            .unwrap();
    for (i, item) in e.items.iter().enumerate() {
        let j = pipeline
            .items
            .iter()
            .position(|x| x.product_id == item.product_id)
            .unwrap();
        let diff = fashionbert_max_diff(e.image_row(i), pipeline.image_row(j));
        assert!(
            diff < 2e-3,
            "{}: image embedding differs by {diff}",
            item.product_id
        );
    }
    // The f16 file is half the f32 one.
    let bytes = std::fs::metadata(d.join("emb/image.npy")).unwrap().len();
    assert!(bytes < (want * e.dim * 4) as u64, "{bytes}");
}

fn fashionbert_max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}
