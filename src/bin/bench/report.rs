//! The table: one row per measurement, printed and appended to BENCHMARKS.md as a dated section.

use std::path::Path;
use std::process::Command;

use crate::threads;

pub struct Row {
    pub bench: String,
    pub ours: String,
    pub peer: String,
    pub ratio: f64,
    pub unit: &'static str,
    pub note: String,
}

impl Row {
    /// A row that sets ours beside the peer's number (both "more is better").
    pub fn versus(bench: String, ours: f64, peer: f64, unit: &'static str, note: String) -> Self {
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

    /// A row of ours alone: no peer, no ratio.
    pub fn alone(bench: String, ours: String, unit: &'static str, note: String) -> Self {
        Row {
            bench,
            ours,
            peer: "—".into(),
            ratio: f64::NAN,
            unit,
            note,
        }
    }
}

/// What a new BENCHMARKS.md starts with.
const TITLE: &str = "# Benchmarks\n\nAppended by `make bench` (`target/release/bench`): each section is one run, fashionbert and its PyTorch peer side by side on the same machine. Ratios > 1 mean fashionbert is faster.\n";

/// Prints `rows` as a dated section (machine, command line, table) and appends it to `out`.
pub fn append(out: &Path, rows: &[Row]) {
    let md = section(rows);
    println!("{md}");
    let mut all = std::fs::read_to_string(out).unwrap_or_else(|_| TITLE.into());
    all.push_str(&md);
    std::fs::write(out, all).unwrap();
}

fn section(rows: &[Row]) -> String {
    let machine = machine();
    let date = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let mut md = format!(
        "\n## {date} — {machine}\n\n`{}`\n\n| benchmark | fashionbert | PyTorch peer | ratio | unit | note |\n|---|---|---|---|---|---|\n",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    for r in rows {
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
    md
}

/// "N cores, CPU model[, GPU name]".
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
