//! Seeded generator of Fashion-Gen-like products (image + title + description).
//!
//! This is the default data source: it lets the whole pipeline run on a fresh
//! machine without downloads. Every product is a garment of one of 15
//! subcategories (7 categories) with a main colour, a pattern (with a named
//! second colour) and one or two per-subcategory variants (sleeve length,
//! skirt length, fit, ...). All of these are visible in the rendered image and
//! stated in the text, so products of the same subcategory differ visibly in
//! ways the text describes. Non-semantic nuisance variation (background tint,
//! position/scale jitter, shading, pattern phase, a tiny logo dot) is visible
//! but never mentioned. Fabric and a few filler facts are mentioned but not
//! visible, as in real catalogue text.
//!
//! Everything is deterministic: a product's attributes and text are derived
//! from `cfg.seed` and the product index only (ChaCha8 seeded with `cfg.seed`,
//! stream = index), and `render` depends only on `cfg.image_size` and the
//! product's [`Attributes`], so images can be rendered independently and in
//! parallel. Rendering uses plain f32 arithmetic (no libm transcendental
//! functions), so images are byte-identical across machines.
//!
//! Layout: `attributes` holds the product's data (colours, patterns, garments);
//! `garments` holds each garment in one place (its names, colours, text and drawing), one
//! file per family; `text` writes titles and descriptions; `shapes` is the 2-D drawing
//! vocabulary and `raster` turns a garment's shapes into pixels. This file draws the random
//! choices of each product, in an order that is part of the output (see the golden test).

mod attributes;
mod garments;
mod raster;
mod shapes;
mod text;

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

pub use attributes::{Attributes, Color, Garment, Pattern};
use text::{describe, pick};

/// Configuration of the synthetic data source.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Number of products to generate.
    pub products: usize,
    /// Seed of every random choice.
    pub seed: u64,
    /// Side of the square rendered images, in pixels.
    pub image_size: u32,
    /// Probability that a product goes to the "valid" split.
    pub valid_fraction: f64,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            products: 3000,
            seed: 0,
            image_size: 256,
            valid_fraction: 0.1,
        }
    }
}

/// One generated product.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthProduct {
    /// Unique id, `S` followed by the zero-padded index, e.g. `S000123`.
    pub product_id: String,
    /// Short name, e.g. "Navy striped long-sleeve shirt".
    pub title: String,
    /// 1-4 sentences in Fashion-Gen style.
    pub description: String,
    /// Category, e.g. "TOPS".
    pub category: String,
    /// Subcategory, e.g. "SHIRTS".
    pub subcategory: String,
    /// "train" or "valid".
    pub split: String,
    /// Everything needed to render the image deterministically.
    pub attributes: Attributes,
}

/// The random stream of product `index`: ChaCha8 seeded with `seed`, stream `index`.
fn product_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

/// Product `index` and the uniform draw that decided its split. The order of the random draws
/// here and in `describe` is part of the output.
fn make_product(cfg: &SynthConfig, index: usize) -> (SynthProduct, f64) {
    let mut rng = product_rng(cfg.seed, index);
    let split_draw: f64 = rng.random();
    let garment = Garment::ALL[index % Garment::ALL.len()];
    let spec = garments::text_spec(garment);

    let color = *pick(&mut rng, garment.colors());
    let weights = garment.pattern_weights();
    let total: u32 = weights.iter().sum();
    let mut r = rng.random_range(0..total);
    let mut pattern = Pattern::Solid;
    for (k, &w) in weights.iter().enumerate() {
        if r < w {
            pattern = Pattern::ALL[k];
            break;
        }
        r -= w;
    }
    let contrasting: Vec<Color> = Color::ALL
        .iter()
        .copied()
        .filter(|&c| c != color && c.distance(color) >= 130.0)
        .collect();
    let second_color = *pick(&mut rng, &contrasting);
    let mut variants = [0u8; 2];
    for (k, ax) in spec.axes.iter().enumerate() {
        variants[k] = rng.random_range(0..ax.len()) as u8;
    }
    let fabric = *pick(&mut rng, spec.fabrics);

    let base: i32 = rng.random_range(238..=252);
    let mut background = [0u8; 3];
    for b in &mut background {
        *b = (base + rng.random_range(-4..=3)).clamp(0, 255) as u8;
    }
    let mut tint = [0i8; 3];
    for t in &mut tint {
        *t = rng.random_range(-8..=8);
    }
    let fill = rng.random_range(0.76f32..0.9);
    let offset = [
        rng.random_range(-0.035f32..0.035),
        rng.random_range(-0.035f32..0.035),
    ];
    let shading = rng.random_range(0.06f32..0.28);
    let pattern_period = rng.random_range(0.045f32..0.06);
    let pattern_phase = [rng.random::<f32>(), rng.random::<f32>()];
    let logo = if rng.random_bool(0.35) {
        Some((
            [rng.random_range(0.3f32..0.7), rng.random_range(0.3f32..0.6)],
            rng.random_range(30u8..=225),
        ))
    } else {
        None
    };

    let attributes = Attributes {
        garment,
        color,
        pattern,
        second_color,
        variants,
        fabric,
        background,
        tint,
        fill,
        offset,
        shading,
        pattern_period,
        pattern_phase,
        logo,
    };
    let (title, description) = describe(&attributes, spec, &mut rng);
    let split = if split_draw < cfg.valid_fraction {
        "valid"
    } else {
        "train"
    };
    (
        SynthProduct {
            product_id: format!("S{index:06}"),
            title,
            description,
            category: garment.category().to_string(),
            subcategory: garment.subcategory().to_string(),
            split: split.to_string(),
            attributes,
        },
        split_draw,
    )
}

/// Generates `cfg.products` products (no images). Deterministic in `cfg`.
///
/// Subcategories are assigned round-robin, so every subcategory is present
/// once `cfg.products >= 15`. Each product goes to "valid" with probability
/// `cfg.valid_fraction`; when `0 < valid_fraction < 1`, a subcategory with at
/// least two products that would otherwise miss one split gets its most
/// likely candidate moved there, so every subcategory appears in both splits.
pub fn products(cfg: &SynthConfig) -> Vec<SynthProduct> {
    let mut out = Vec::with_capacity(cfg.products);
    let mut draws = Vec::with_capacity(cfg.products);
    for i in 0..cfg.products {
        let (p, u) = make_product(cfg, i);
        out.push(p);
        draws.push(u);
    }
    if cfg.valid_fraction > 0.0 && cfg.valid_fraction < 1.0 {
        let n = Garment::ALL.len();
        for g in 0..n {
            let idx: Vec<usize> = (g..out.len()).step_by(n).collect();
            if idx.len() < 2 {
                continue;
            }
            for want in ["valid", "train"] {
                if idx.iter().any(|&i| out[i].split == want) {
                    continue;
                }
                // Lowest draw is the most "valid"-like, highest the most
                // "train"-like; ties broken by index.
                let best = if want == "valid" {
                    idx.iter()
                        .copied()
                        .min_by(|&a, &b| draws[a].total_cmp(&draws[b]))
                } else {
                    idx.iter()
                        .copied()
                        .max_by(|&a, &b| draws[a].total_cmp(&draws[b]))
                };
                if let Some(i) = best {
                    out[i].split = want.to_string();
                }
            }
        }
    }
    out
}

/// Renders the product image (`cfg.image_size` square). Depends only on
/// `cfg.image_size` and `p.attributes`.
pub fn render(cfg: &SynthConfig, p: &SynthProduct) -> RgbImage {
    raster::image(cfg.image_size, &p.attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The small config the synthetic tests share (96-px images).
    pub(super) fn cfg(n: usize, seed: u64) -> SynthConfig {
        SynthConfig {
            products: n,
            seed,
            image_size: 96,
            valid_fraction: 0.1,
        }
    }

    #[test]
    fn deterministic_products_and_images() {
        let c = cfg(60, 7);
        let a = products(&c);
        let b = products(&c);
        assert_eq!(a, b);
        for p in a.iter().step_by(4) {
            assert_eq!(render(&c, p).into_raw(), render(&c, p).into_raw());
        }
        let other = products(&cfg(60, 8));
        let same = a
            .iter()
            .zip(&other)
            .filter(|(x, y)| x.description == y.description)
            .count();
        assert!(same < 10, "{same} identical descriptions across seeds");
        assert_ne!(
            render(&c, &a[0]).into_raw(),
            render(&c, &other[0]).into_raw()
        );
    }

    #[test]
    fn render_does_not_depend_on_other_products() {
        let small = products(&cfg(20, 3));
        let big = products(&cfg(200, 3));
        for i in 0..20 {
            assert_eq!(small[i].attributes, big[i].attributes);
            assert_eq!(small[i].description, big[i].description);
        }
    }

    #[test]
    fn ids_unique_and_formatted() {
        let ps = products(&cfg(500, 1));
        let mut ids: Vec<&str> = ps.iter().map(|p| p.product_id.as_str()).collect();
        assert_eq!(ids[123], "S000123");
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), 500);
    }

    #[test]
    fn split_fractions_and_coverage() {
        let mut c = cfg(6000, 11);
        c.valid_fraction = 0.2;
        let ps = products(&c);
        let valid = ps.iter().filter(|p| p.split == "valid").count() as f64 / 6000.0;
        assert!((valid - 0.2).abs() < 0.025, "valid fraction {valid}");
        assert!(ps.iter().all(|p| p.split == "valid" || p.split == "train"));

        for (seed, n, vf) in [(0u64, 300usize, 0.1f64), (5, 300, 0.02), (9, 300, 0.97)] {
            let ps = products(&SynthConfig {
                products: n,
                seed,
                image_size: 64,
                valid_fraction: vf,
            });
            for g in Garment::ALL {
                for split in ["train", "valid"] {
                    assert!(
                        ps.iter()
                            .any(|p| p.subcategory == g.subcategory() && p.split == split),
                        "{} missing from {split}",
                        g.subcategory()
                    );
                }
            }
        }
        let all_train = products(&SynthConfig {
            valid_fraction: 0.0,
            ..cfg(100, 1)
        });
        assert!(all_train.iter().all(|p| p.split == "train"));
    }

    #[test]
    fn categories_and_subcategories() {
        let ps = products(&cfg(300, 2));
        let mut subs: Vec<&str> = ps.iter().map(|p| p.subcategory.as_str()).collect();
        subs.sort_unstable();
        subs.dedup();
        assert_eq!(subs.len(), Garment::ALL.len());
        let mut cats: Vec<&str> = Garment::ALL.iter().map(|g| g.category()).collect();
        cats.dedup();
        assert_eq!(cats.len(), 7);
        for p in &ps {
            assert_eq!(p.subcategory, p.attributes.garment.subcategory());
            assert_eq!(p.category, p.attributes.garment.category());
        }
    }

    /// Feeds a length-prefixed field to the hasher.
    fn put(h: &mut blake3::Hasher, bytes: &[u8]) {
        h.update(&(bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    }

    /// Every field of a product, in a fixed order: strings length-prefixed, floats as their
    /// little-endian bits.
    fn put_product(h: &mut blake3::Hasher, p: &SynthProduct) {
        for f in [
            &p.product_id,
            &p.title,
            &p.description,
            &p.category,
            &p.subcategory,
            &p.split,
        ] {
            put(h, f.as_bytes());
        }
        let a = &p.attributes;
        let g = Garment::ALL.iter().position(|&g| g == a.garment).unwrap();
        put(h, &[g as u8]);
        put(h, a.color.name().as_bytes());
        put(h, a.pattern.name().as_bytes());
        put(h, a.second_color.name().as_bytes());
        put(h, &a.variants);
        put(h, a.variant_labels().join("|").as_bytes());
        put(h, a.fabric.as_bytes());
        put(h, &a.background);
        put(h, &a.tint.map(|t| t as u8));
        let mut floats = vec![
            a.fill,
            a.offset[0],
            a.offset[1],
            a.shading,
            a.pattern_period,
        ];
        floats.extend(a.pattern_phase);
        match a.logo {
            Some((pos, grey)) => {
                put(h, &[1, grey]);
                floats.extend(pos);
            }
            None => put(h, &[0]),
        }
        let bits: Vec<u8> = floats
            .iter()
            .flat_map(|x| x.to_bits().to_le_bytes())
            .collect();
        put(h, &bits);
    }

    fn put_image(h: &mut blake3::Hasher, img: &RgbImage) {
        put(h, &img.width().to_le_bytes());
        put(h, &img.height().to_le_bytes());
        put(h, img.as_raw());
    }

    /// Pins today's output byte for byte: products (ids, text, categories, splits,
    /// attributes) and images, over every garment and every variant option. A change here
    /// changes the default pipeline's data and metrics; update the digests only on purpose.
    #[test]
    fn golden_products_and_images() {
        let small = SynthConfig {
            products: 200,
            seed: 7,
            image_size: 64,
            ..SynthConfig::default()
        };
        let large = SynthConfig {
            products: 30,
            seed: 0,
            image_size: 256,
            ..SynthConfig::default()
        };
        let mut text = blake3::Hasher::new();
        let mut images = blake3::Hasher::new();
        let mut seen = std::collections::BTreeSet::new();
        for c in [&small, &large] {
            let ps = products(c);
            assert_eq!(ps.len(), c.products);
            for p in &ps {
                put_product(&mut text, p);
                put_image(&mut images, &render(c, p));
                seen.insert(p.subcategory.clone());
            }
            // Both splits occur in each sample.
            assert!(ps.iter().any(|p| p.split == "valid"));
            assert!(ps.iter().any(|p| p.split == "train"));
        }
        assert_eq!(seen.len(), Garment::ALL.len(), "{seen:?}");
        // Every variant combination of every garment, drawn from one product each.
        let ps = products(&small);
        for g in Garment::ALL {
            let p = ps.iter().find(|p| p.attributes.garment == g).unwrap();
            let axes = g.variant_axes();
            let n0 = axes.first().map_or(1, |ax| ax.len());
            let n1 = axes.get(1).map_or(1, |ax| ax.len());
            for i in 0..n0 {
                for j in 0..n1 {
                    let mut q = p.clone();
                    q.attributes.variants = [i as u8, j as u8];
                    put(&mut images, &q.attributes.variants);
                    put_image(&mut images, &render(&small, &q));
                }
            }
        }
        // The sampled products show every pattern and every variant option of every garment.
        let all: Vec<SynthProduct> = products(&small)
            .into_iter()
            .chain(products(&large))
            .collect();
        for pat in Pattern::ALL {
            assert!(all.iter().any(|p| p.attributes.pattern == pat), "{pat:?}");
        }
        for g in Garment::ALL {
            for (k, ax) in g.variant_axes().iter().enumerate() {
                for (opt, key) in ax.iter().enumerate() {
                    assert!(
                        all.iter().any(|p| p.attributes.garment == g
                            && p.attributes.variants[k] as usize == opt),
                        "{g:?} {key} not sampled"
                    );
                }
            }
        }
        let (text, images) = (text.finalize().to_hex(), images.finalize().to_hex());
        println!("golden text {text}\ngolden images {images}");
        assert_eq!(
            text.as_str(),
            "ebe9f56d0829e7f82ba31fca405ab1885f4a0f0b8746301caf09bd41f4bbbb25"
        );
        assert_eq!(
            images.as_str(),
            "d19311d598e675117b28213475705fdb401df7a3a47085c5a2cb44e76ba13652"
        );
    }
}
