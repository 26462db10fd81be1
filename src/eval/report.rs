//! PNG plots (plotters, with an embedded DejaVu font so no system fonts are needed) and the
//! markdown report.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use super::metrics::Metrics;
use crate::error::{Error, Result};

static FONT: Once = Once::new();

/// Registers the embedded font as "sans-serif" (once).
pub fn fonts() {
    FONT.call_once(|| {
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

/// One named line of (x, y) points.
pub struct Series<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
}

/// A line chart with a legend.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    y_range: Option<(f64, f64)>,
) -> Result<()> {
    fonts();
    let root = BitMapBackend::new(path, (900, 520)).into_drawing_area();
    root.fill(&WHITE).map_err(Error::render(path))?;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x0, x1) = xs.fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    let (y0, y1) = y_range.unwrap_or_else(|| {
        let ys = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
        let (a, b) = ys.fold((f64::MAX, f64::MIN), |(a, b), y| (a.min(y), b.max(y)));
        let pad = ((b - a) * 0.05).max(1e-6);
        (a - pad, b + pad)
    });
    let (x0, x1) = if x0 < x1 { (x0, x1) } else { (0.0, 1.0) };
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(Error::render(path))?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| format!("{y:.2}"))
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(Error::render(path))?;
    for s in series {
        let color = s.color;
        chart
            .draw_series(LineSeries::new(
                s.points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(Error::render(path))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 14))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(Error::render(path))?;
    root.present().map_err(Error::render(path))?;
    Ok(())
}

/// Moving average over `w` points (for noisy per-step losses).
pub fn smooth(points: &[(f64, f64)], w: usize) -> Vec<(f64, f64)> {
    if w <= 1 || points.len() < 2 {
        return points.to_vec();
    }
    let mut out = Vec::with_capacity(points.len());
    let mut sum = 0.0;
    for i in 0..points.len() {
        sum += points[i].1;
        if i >= w {
            sum -= points[i - w].1;
        }
        let n = (i + 1).min(w) as f64;
        out.push((points[i].0, sum / n));
    }
    out
}

pub const BLUE_: RGBColor = RGBColor(31, 119, 180);
pub const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub const GREEN_: RGBColor = RGBColor(44, 160, 44);
pub const GREY: RGBColor = RGBColor(150, 150, 150);
pub const PURPLE: RGBColor = RGBColor(148, 103, 189);
pub const LIGHT_BLUE: RGBColor = RGBColor(140, 190, 230);
pub const LIGHT_ORANGE: RGBColor = RGBColor(255, 190, 130);

/// One row of the report's metrics table.
pub fn metrics_row(dir: &str, m: &Metrics) -> String {
    format!(
        "| {dir} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} × {} |",
        m.scores.rank1,
        m.scores.rank5,
        m.scores.rank10,
        m.scores.rank100,
        m.mrr,
        m.scores.acc,
        m.scores.auc,
        m.queries,
        crate::eval::report::figure(m.candidates_per_query)
    )
}

/// A figure for people: integers as integers, others to at most 4 decimals (trailing zeros cut).
pub fn figure(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// One plain sentence: is the model above or below its linear probe (Rank@1, each direction)?
pub fn versus_probe(all: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let r1 =
        |v: Option<&serde_json::Value>| v.and_then(|m| m.get("rank@1")).and_then(|x| x.as_f64());
    let probe = all.get("probe")?;
    let mut below = Vec::new();
    let mut above = Vec::new();
    for dir in ["img2txt", "txt2img"] {
        let (Some(m), Some(p)) = (r1(all.get(dir)), r1(probe.get(dir))) else {
            continue;
        };
        let text = format!(
            "{dir} {} vs {}",
            figure((m * 1e4).round() / 1e4),
            figure((p * 1e4).round() / 1e4)
        );
        if m < p {
            below.push(text);
        } else {
            above.push(text);
        }
    }
    if below.is_empty() && above.is_empty() {
        return None;
    }
    Some(if below.is_empty() {
        format!(
            "**The model is at or above the linear probe** on Rank@1 ({}).",
            above.join(", ")
        )
    } else {
        format!(
            "**The model is below the linear probe** on Rank@1 ({}): a linear map of the same features ranks better, so the training recipe or budget is not enough for this data (RESULTS.md has what worked; the contrastive recipe, `train.w_itc > 0` with `evaluate.score = \"itc\"`, is the default).",
            below.join(", ")
        )
    })
}

/// `report.md`: the corrected metrics (and the probe's), the original's figures, training.
pub fn render(
    all: &serde_json::Map<String, serde_json::Value>,
    table_md: &str,
    probe_md: &str,
    views_md: &str,
    summary: &serde_json::Value,
    filled: u64,
    short: u64,
) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# FashionBERT retrieval report\n");
    let _ = writeln!(s, "## Corrected metrics (valid split)\n");
    let _ = writeln!(
        s,
        "| direction | Rank@1 | Rank@5 | Rank@10 | Rank@100 | MRR | ACC | AUC | queries × candidates |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|---|");
    s.push_str(table_md);
    s.push_str(probe_md);
    if let Some(line) = versus_probe(all) {
        let _ = writeln!(s, "\n{line}");
    }
    let score = all
        .get("eval_set")
        .and_then(|e| e.get("score"))
        .and_then(|v| v.as_str())
        .unwrap_or("");
    let _ = writeln!(
        s,
        "\nScore: {score}. Ties count as their expected rank. Chance Rank@1 is 1 / candidates. \
         {filled} negatives came from outside their query's subcategory (fallback), {short} queries had fewer negatives than asked.\n"
    );
    if !probe_md.is_empty() {
        let _ = writeln!(
            s,
            "The (probe) rows are a linear two-tower baseline on the same queries and candidates: TF-IDF of the text's WordPiece ids, \
             the standardised log1p mean of the image's cell features, a ridge map from image to text fitted on train products, cosine score.\n"
        );
    }
    s.push_str(views_md);
    let _ = writeln!(
        s,
        "## As the original EasyTransfer script would report them\n"
    );
    let _ = writeln!(
        s,
        "The original groups candidates by an id string that keeps a leading space for all but the first row of each batch line, so each query splits into two groups and every Rank@K is capped near 0.5 (compare the published Rank@100 ≈ 0.55). These figures reproduce that, for comparison with the published table only.\n"
    );
    let _ = writeln!(
        s,
        "| direction | Rank@1 | Rank@5 | Rank@10 | Rank@100 | ACC | AUC | groups |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
    for dir in ["img2txt", "txt2img"] {
        if let Some(c) = all.get(dir).and_then(|m| m.get("easytransfer_compatible")) {
            let f = |k: &str| c.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
            let _ = writeln!(
                s,
                "| {dir} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
                f("rank@1"),
                f("rank@5"),
                f("rank@10"),
                f("rank@100"),
                f("acc"),
                f("auc"),
                c.get("groups").and_then(|v| v.as_u64()).unwrap_or(0)
            );
        }
    }
    let _ = writeln!(s, "\n![Rank@K](rank_at_k.png)\n");
    let _ = writeln!(s, "## Training\n");
    if let Some(o) = summary.as_object() {
        let _ = writeln!(s, "| figure | value |\n|---|---|");
        let mut row = |name: String, v: &serde_json::Value| {
            let text = match v {
                serde_json::Value::Number(n) => n.as_f64().map(figure).unwrap_or_default(),
                serde_json::Value::String(t) => t.clone(),
                other => other.to_string(),
            };
            let _ = writeln!(s, "| {name} | {text} |");
        };
        for k in [
            "device",
            "steps",
            "seconds",
            "samples_per_second",
            "train_records",
            "valid_records",
        ] {
            if let Some(v) = o.get(k) {
                row(k.replace('_', " "), v);
            }
        }
        for (k, label) in [
            ("loss_first_20_steps", "loss, first 20 steps"),
            ("loss_last_20_steps", "loss, last 20 steps"),
            ("valid", "last validation"),
        ] {
            if let Some(serde_json::Value::Object(m)) = o.get(k) {
                for (name, v) in m {
                    if v.as_f64().is_some_and(|x| x != 0.0) {
                        row(format!("{label}: {}", name.replace('_', " ")), v);
                    }
                }
            }
        }
    }
    let _ = writeln!(s, "\n![training losses](train_loss.png)");
    s
}
