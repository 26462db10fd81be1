//! Views of the retrieval results beyond the headline table:
//! - the queries whose every candidate shares their subcategory (where a small subcategory
//!   made the eval set fill up from its category or the split, the task is easier);
//! - Rank@K per query subcategory;
//! - full-gallery Rank@K for the ITC score: each query against every valid product with
//!   features (as FashionSAP also reports), not 101 candidates. Products with the query's
//!   title are left out of its gallery, as they are left out of its candidates.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use super::metrics::{QueryRank, hit_at};
use super::scoring::ItcEmbeddings;
use super::sets::EvalSet;
use crate::error::{Error, Result};
use crate::sources::Product;
use crate::sources::pool::Pool;

/// Rank@K and MRR over a group of queries.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub queries: usize,
    #[serde(rename = "rank@1")]
    pub rank1: f64,
    #[serde(rename = "rank@5")]
    pub rank5: f64,
    #[serde(rename = "rank@10")]
    pub rank10: f64,
    #[serde(rename = "rank@100")]
    pub rank100: f64,
    pub mrr: f64,
    /// Mean candidates per query.
    pub candidates: f64,
}

impl Summary {
    /// The summary of `ranks` (NaN figures with no query).
    pub fn of<'a>(ranks: impl IntoIterator<Item = &'a QueryRank>) -> Summary {
        let (mut n, mut r, mut mrr, mut c) = (0usize, [0f64; 4], 0f64, 0f64);
        for q in ranks {
            n += 1;
            for (acc, k) in r.iter_mut().zip([1, 5, 10, 100]) {
                *acc += hit_at(k, q.higher, q.ties);
            }
            mrr += q.rr;
            c += q.candidates as f64;
        }
        let d = n as f64;
        Summary {
            queries: n,
            rank1: r[0] / d,
            rank5: r[1] / d,
            rank10: r[2] / d,
            rank100: r[3] / d,
            mrr: mrr / d,
            candidates: c / d,
        }
    }
}

/// What a query of an eval set is: its product's subcategory, and whether every one of its
/// candidates shares it.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryInfo {
    pub subcategory: String,
    pub same_subcategory: bool,
}

/// Each query of `set` (img2txt queries are image ids, txt2img queries product ids) with its
/// [`QueryInfo`]. Fails on an id that is not among `products`.
pub fn query_info(set: &EvalSet, products: &[Product]) -> Result<HashMap<String, QueryInfo>> {
    let mut by_image: HashMap<&str, &Product> = HashMap::new();
    let mut by_pid: HashMap<&str, &Product> = HashMap::new();
    for p in products {
        by_image.entry(p.image_id.as_str()).or_insert(p);
        by_pid.entry(p.product_id.as_str()).or_insert(p);
    }
    let i2t = set.direction == "img2txt";
    let missing = |what: &str, id: &str| {
        Error::msg(format!(
            "evaluate: the eval set's {what} `{id}` is not among the products"
        ))
    };
    let mut out: HashMap<String, QueryInfo> = HashMap::new();
    for (q, img, txt, _) in &set.rows {
        let query = if i2t {
            by_image
                .get(img.as_str())
                .ok_or_else(|| missing("image", img))?
        } else {
            by_pid
                .get(txt.as_str())
                .ok_or_else(|| missing("product", txt))?
        };
        let cand = if i2t {
            by_pid
                .get(txt.as_str())
                .ok_or_else(|| missing("product", txt))?
        } else {
            by_image
                .get(img.as_str())
                .ok_or_else(|| missing("image", img))?
        };
        let e = out.entry(q.clone()).or_insert_with(|| QueryInfo {
            subcategory: query.subcategory.clone(),
            same_subcategory: true,
        });
        e.same_subcategory &= cand.subcategory == query.subcategory;
    }
    Ok(out)
}

/// The summary of the queries whose candidates all share their subcategory.
pub fn same_subcategory(ranks: &[QueryRank], info: &HashMap<String, QueryInfo>) -> Summary {
    Summary::of(
        ranks
            .iter()
            .filter(|r| info.get(&r.query).is_some_and(|i| i.same_subcategory)),
    )
}

/// One summary per query subcategory, by name.
pub fn by_subcategory(
    ranks: &[QueryRank],
    info: &HashMap<String, QueryInfo>,
) -> BTreeMap<String, Summary> {
    let mut groups: BTreeMap<&str, Vec<&QueryRank>> = BTreeMap::new();
    for r in ranks {
        if let Some(i) = info.get(&r.query) {
            groups.entry(i.subcategory.as_str()).or_default().push(r);
        }
    }
    groups
        .into_iter()
        .map(|(k, v)| (k.to_string(), Summary::of(v)))
        .collect()
}

/// The gallery of a full-gallery ranking: every valid product with features, one image each
/// (its first, as the eval sets use).
pub fn gallery<'a>(products: &'a [Product], has_features: &dyn Fn(&str) -> bool) -> Pool<'a> {
    Pool::new(products, |p| {
        p.split == "valid" && has_features(&p.image_id)
    })
}

/// Full-gallery ranks of `queries` (img2txt: image ids; txt2img: product ids) against every
/// product of `gallery` but those that share the query's title, scored by `emb`. Each query's
/// candidates are the gallery's eligible products and itself.
pub fn gallery_ranks(
    direction: &str,
    queries: &[&str],
    gallery: &Pool,
    emb: &ItcEmbeddings,
) -> Result<Vec<QueryRank>> {
    let i2t = direction == "img2txt";
    let n = gallery.products.len();
    let d = emb.dim;
    // The candidate side as one row-major matrix, in gallery order.
    let mut cand = Vec::with_capacity(n * d);
    for p in &gallery.products {
        let v = if i2t {
            emb.text.get(&p.product_id)
        } else {
            emb.image.get(&p.image_id)
        };
        let v = v.ok_or_else(|| {
            Error::msg(format!(
                "evaluate: no ITC encoding of gallery product `{}`",
                p.product_id
            ))
        })?;
        cand.extend_from_slice(v);
    }
    let index: HashMap<&str, usize> = gallery
        .products
        .iter()
        .enumerate()
        .map(|(i, p)| {
            (
                if i2t {
                    p.image_id.as_str()
                } else {
                    p.product_id.as_str()
                },
                i,
            )
        })
        .collect();
    let mut out = Vec::with_capacity(queries.len());
    let mut scores = vec![0f32; n];
    for &q in queries {
        let Some(&qi) = index.get(q) else {
            return Err(Error::msg(format!(
                "evaluate: query `{q}` is not in the gallery of valid products"
            )));
        };
        let qp = gallery.products[qi];
        let qv = if i2t {
            emb.image.get(&qp.image_id)
        } else {
            emb.text.get(&qp.product_id)
        }
        .ok_or_else(|| Error::msg(format!("evaluate: no ITC encoding of query `{q}`")))?;
        for (s, row) in scores.iter_mut().zip(cand.chunks_exact(d)) {
            *s = qv.iter().zip(row).map(|(a, b)| a * b).sum::<f32>();
        }
        let gt = scores[qi];
        let (mut higher, mut ties, mut candidates) = (0usize, 0usize, 1usize);
        for (j, &s) in scores.iter().enumerate() {
            if j == qi || !gallery.eligible(j, &qp.product_id, &qp.title_key) {
                continue;
            }
            candidates += 1;
            if s > gt {
                higher += 1;
            } else if s == gt {
                ties += 1;
            }
        }
        out.push(QueryRank::new(q.to_string(), candidates, higher, ties));
    }
    Ok(out)
}

/// One markdown table row of a summary.
pub fn row(label: &str, s: &Summary) -> String {
    if s.queries == 0 {
        return format!("| {label} | — | — | — | — | 0 |");
    }
    format!(
        "| {label} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
        s.rank1, s.rank5, s.rank10, s.mrr, s.queries
    )
}

/// The report's section for the breakdowns: same-subcategory queries, the full gallery (where
/// computed) and one row per subcategory and direction.
pub fn markdown(
    same: &[(&str, Summary)],
    gallery: &[(&str, Summary)],
    gallery_size: usize,
    by_sub: &[(&str, BTreeMap<String, Summary>)],
) -> String {
    let mut s = String::new();
    let head = "| queries | Rank@1 | Rank@5 | Rank@10 | MRR | n |\n|---|---|---|---|---|---|";
    let _ = writeln!(s, "## Harder views\n");
    let _ = writeln!(
        s,
        "**Queries whose negatives all share their subcategory** (the others drew some from their category or the split where the subcategory is small: an easier task):\n\n{head}"
    );
    for (dir, sm) in same {
        let _ = writeln!(s, "{}", row(dir, sm));
    }
    if !gallery.is_empty() {
        let _ = writeln!(
            s,
            "\n**Full gallery**: each query against all {gallery_size} valid products (same-title products left out), by the contrastive similarity:\n\n{head}"
        );
        for (dir, sm) in gallery {
            let _ = writeln!(s, "{}", row(&format!("{dir} (gallery)"), sm));
        }
    }
    let _ = writeln!(
        s,
        "\n**By subcategory** (the query's; 101 candidates):\n\n| subcategory | direction | Rank@1 | Rank@5 | Rank@10 | MRR | n |\n|---|---|---|---|---|---|---|"
    );
    let subs: std::collections::BTreeSet<&String> =
        by_sub.iter().flat_map(|(_, m)| m.keys()).collect();
    for sub in subs {
        for (dir, m) in by_sub {
            if let Some(sm) = m.get(sub) {
                let _ = writeln!(s, "{}", row(&format!("{sub} | {dir}"), sm));
            }
        }
    }
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(id: &str, sub: &str, title: &str) -> Product {
        Product {
            image_id: format!("{id}_img"),
            product_id: id.into(),
            image: String::new(),
            title: title.into(),
            text: title.into(),
            category: "C".into(),
            subcategory: sub.into(),
            split: "valid".into(),
            title_key: title.into(),
        }
    }

    fn rank(q: &str, higher: usize, ties: usize) -> QueryRank {
        QueryRank::new(q.into(), 10, higher, ties)
    }

    #[test]
    fn summary_counts_expected_hits() {
        let s = Summary::of(&[rank("a", 0, 0), rank("b", 3, 0), rank("c", 0, 1)]);
        assert_eq!(s.queries, 3);
        // a: hit; b: miss at 1 and hit at 5; c: tied with one other, half a hit at 1.
        assert!((s.rank1 - 1.5 / 3.0).abs() < 1e-12);
        assert!((s.rank5 - 1.0).abs() < 1e-12);
    }

    #[test]
    fn same_subcategory_flags_queries_with_a_fallback_candidate() {
        let products = vec![
            product("p1", "shirts", "t1"),
            product("p2", "shirts", "t2"),
            product("p3", "jeans", "t3"),
        ];
        let set = EvalSet {
            direction: "img2txt",
            rows: vec![
                ("p1_img".into(), "p1_img".into(), "p1".into(), true),
                ("p1_img".into(), "p1_img".into(), "p2".into(), false),
                ("p2_img".into(), "p2_img".into(), "p2".into(), true),
                ("p2_img".into(), "p2_img".into(), "p3".into(), false),
            ],
        };
        let info = query_info(&set, &products).unwrap();
        assert!(info["p1_img"].same_subcategory);
        assert!(!info["p2_img"].same_subcategory);
        let ranks = vec![rank("p1_img", 0, 0), rank("p2_img", 1, 0)];
        let same = same_subcategory(&ranks, &info);
        assert_eq!(same.queries, 1);
        assert_eq!(same.rank1, 1.0);
        let subs = by_subcategory(&ranks, &info);
        assert_eq!(subs["shirts"].queries, 2);
        assert_eq!(subs["shirts"].rank1, 0.5);
        // The txt2img set of the same products reads queries as product ids.
        let t2i = EvalSet {
            direction: "txt2img",
            rows: vec![("p2".into(), "p3_img".into(), "p2".into(), false)],
        };
        assert!(!query_info(&t2i, &products).unwrap()["p2"].same_subcategory);
        // An id the products do not hold is an error, not a silent drop.
        let bad = EvalSet {
            direction: "img2txt",
            rows: vec![("x".into(), "x".into(), "p1".into(), true)],
        };
        assert!(query_info(&bad, &products).is_err());
    }

    #[test]
    fn gallery_ranks_count_every_eligible_product_and_skip_same_titles() {
        // p1 and p4 share a title: p4 is never p1's candidate.
        let products = vec![
            product("p1", "s", "t1"),
            product("p2", "s", "t2"),
            product("p3", "s", "t3"),
            product("p4", "s", "t1"),
        ];
        let pool = gallery(&products, &|_| true);
        let mut emb = ItcEmbeddings {
            dim: 2,
            scale: 1.0,
            text: HashMap::new(),
            image: HashMap::new(),
        };
        // Image p1 points at text p2 more than at its own text; p4 (same title) scores highest.
        for (id, img, txt) in [
            ("p1", [1.0, 0.0], [0.6, 0.8]),
            ("p2", [0.0, 1.0], [0.8, 0.6]),
            ("p3", [0.0, 1.0], [0.0, 1.0]),
            ("p4", [0.0, 1.0], [1.0, 0.0]),
        ] {
            emb.image.insert(format!("{id}_img"), img.to_vec());
            emb.text.insert(id.to_string(), txt.to_vec());
        }
        let r = gallery_ranks("img2txt", &["p1_img"], &pool, &emb).unwrap();
        assert_eq!(r[0].candidates, 3); // itself, p2, p3 (not p4)
        assert_eq!(r[0].higher, 1); // p2
        assert_eq!(r[0].rank, 2.0);
        let r = gallery_ranks("txt2img", &["p3"], &pool, &emb).unwrap();
        // Text p3 = (0, 1): images p2, p3, p4 tie at 1.0 and p1 scores 0.
        assert_eq!((r[0].candidates, r[0].higher, r[0].ties), (4, 0, 2));
        assert!(gallery_ranks("img2txt", &["nope"], &pool, &emb).is_err());
    }
}
