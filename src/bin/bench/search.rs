//! `--only search`: catalogue search, ours alone (no peer asked for).
//!
//! - Over `--search-n` synthetic embeddings (256-d, clustered as a catalogue's are): the exact
//!   pass and the HNSW index — build time and memory, latency p50/p99 of one client, queries/s
//!   of 16 concurrent clients, recall@10 of the index against the exact pass.
//! - Text → images through `fashionbert serve` over `--search-config`'s catalogue (its `embed`
//!   entry must be cached): the whole request (HTTP, the model encoding the text, ranking),
//!   latency p50/p99 and queries/s at 16 concurrent clients; and the `embed` stage's
//!   throughput from its manifest.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Instant;

use fashionbert::schema::embeddings::Embeddings;
use fashionbert::search::index::{Index, IndexParams, clustered, recall};
use fashionbert::search::{Filter, Side, top_k};

use crate::Args;
use crate::report::Row;

const CLIENTS: usize = 16;
const K: usize = 10;

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// Latencies (ms) of `queries` one after another, then queries/s of 16 threads sharing them.
fn load(queries: usize, f: &(dyn Fn(usize) + Sync)) -> (f64, f64, f64) {
    let mut lat: Vec<f64> = (0..queries)
        .map(|q| {
            let t = Instant::now();
            f(q);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let (p50, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));
    let t = Instant::now();
    std::thread::scope(|s| {
        for c in 0..CLIENTS {
            s.spawn(move || {
                for q in (c..queries).step_by(CLIENTS) {
                    f(q);
                }
            });
        }
    });
    (p50, p99, queries as f64 / t.elapsed().as_secs_f64())
}

/// The two rows of a [`load`]: latency of one client, queries/s of 16.
fn latency_rows(
    what: &str,
    (p50, p99, qps): (f64, f64, f64),
    note: &str,
    qps_note: String,
) -> [Row; 2] {
    [
        Row::alone(
            format!("{what}, 1 client"),
            format!("{p50:.2} / {p99:.2}"),
            "ms p50 / p99",
            note.into(),
        ),
        Row::alone(
            format!("{what}, {CLIENTS} clients"),
            format!("{qps:.1}"),
            "queries/s",
            qps_note,
        ),
    ]
}

pub fn rows(a: &Args) -> Vec<Row> {
    let mut rows = Vec::new();
    let n = a.search_n;
    let e = clustered(n, 256, 2000, 11);
    let queries = 400;
    let query = |q: usize| e.text_row((q * 7919) % n).to_vec();
    let (p50, p99, qps) = load(queries, &|q| {
        std::hint::black_box(top_k(
            &e,
            &query(q),
            Side::Images,
            &Filter::default(),
            K,
            None,
        ));
    });
    let what = format!("search: exact top-{K} over {n} synthetic 256-d embeddings");
    rows.extend(latency_rows(
        &what,
        (p50, p99, qps),
        "one pass over the matrix per query",
        format!("{} threads", crate::threads()),
    ));
    let before = rss_mib();
    let ix = Index::build(&e, Side::Images, IndexParams::default());
    let mem = rss_mib() - before;
    let p = IndexParams::default();
    let mut ix = ix;
    let what = format!(
        "search: HNSW top-{K} over {n} (M {}, efC {})",
        p.links, p.ef_construction
    );
    rows.push(Row::alone(
        format!("{what}: build"),
        format!("{:.1} s, {mem:.0} MiB", ix.build_seconds),
        "seconds, RSS added",
        format!("{} threads", crate::threads()),
    ));
    // efSearch trades latency for recall; the default is `IndexParams::default().ef_search`.
    for ef in [64, 128, 256, 512] {
        ix.params.ef_search = ef;
        let recall10: f64 = (0..200)
            .map(|q| {
                let exact = top_k(&e, &query(q), Side::Images, &Filter::default(), K, None);
                recall(
                    &exact,
                    &ix.search(&e, &query(q), &Filter::default(), K, None),
                )
            })
            .sum::<f64>()
            / 200.0;
        let (hp50, hp99, hqps) = load(queries * 5, &|q| {
            std::hint::black_box(ix.search(&e, &query(q), &Filter::default(), K, None));
        });
        rows.push(Row::alone(
            format!(
                "{what}, efS {ef}{}",
                if ef == p.ef_search { " (default)" } else { "" }
            ),
            format!("recall@{K} {recall10:.4}; {hp50:.3} / {hp99:.3} ms; {hqps:.0} q/s"),
            "recall vs exact (200 queries); ms p50 / p99, 1 client; queries/s, 16 clients",
            "scores recomputed exactly".into(),
        ));
    }
    drop(ix);
    drop(e);
    rows.extend(served(a));
    rows
}

/// One GET; the body must be a 200.
fn get(addr: &str, path: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    assert!(
        raw.starts_with(b"HTTP/1.1 200"),
        "{path}: {}",
        String::from_utf8_lossy(&raw)
    );
    raw
}

fn served(a: &Args) -> Vec<Row> {
    let bin = std::env::current_exe()
        .unwrap()
        .with_file_name("fashionbert");
    let cfg = &a.search_config;
    let status = Command::new(&bin)
        .args(["status", "--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let plan: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_default();
    let embed = plan
        .as_array()
        .and_then(|p| p.iter().find(|s| s["stage"] == "embed"))
        .cloned();
    let Some(embed) = embed.filter(|s| s["state"] == "cached") else {
        eprintln!(
            "search: {} has no cached `embed` entry (`fashionbert run embed -c {}`): the served rows are left out",
            cfg.display(),
            cfg.display()
        );
        return Vec::new();
    };
    let dir = std::path::PathBuf::from(embed["dir"].as_str().unwrap());
    let e = Embeddings::read(&dir).unwrap();
    let m = fashionbert::dag::Manifest::read(&dir).unwrap();
    let mut rows = vec![Row::alone(
        format!("embed: {} products of {}", e.len(), cfg.display()),
        format!("{:.1}", e.len() as f64 / m.seconds),
        "products/s",
        format!(
            "{:.1} s (the stage's manifest: text and image ITC passes, features read from the store)",
            m.seconds
        ),
    )];
    let mut child = Command::new(&bin)
        .args(["serve", "--port", "0", "--config"])
        .arg(cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let l = lines.next().expect("serve's address").unwrap();
        if let Some(r) = l.strip_prefix("listening on http://") {
            break r.trim_end_matches('/').to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let enc = |s: &str| -> String {
        s.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    };
    let titles: Vec<String> = e.items.iter().map(|i| enc(&i.title)).collect();
    get(&addr, &format!("/api/search?text={}&k={K}", titles[0])); // loads the model
    let n = 200;
    let (p50, p99, qps) = load(n, &|q| {
        get(
            &addr,
            &format!("/api/search?text={}&k={K}", titles[(q * 37) % titles.len()]),
        );
    });
    let _ = child.kill();
    let _ = child.wait();
    let what = format!(
        "serve: text → images over {} products ({}), whole HTTP request",
        e.len(),
        cfg.display()
    );
    rows.extend(latency_rows(
        &what,
        (p50, p99, qps),
        "the model encodes the text on its own thread; exact ranking",
        format!("{n} titles as queries"),
    ));
    rows
}
