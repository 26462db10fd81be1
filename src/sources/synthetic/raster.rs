//! Rasterising: a product's part polygons (from `garments`) become an RGB image, with its
//! colours, pattern, shading, outlines and logo dot. Depends only on the image size and the
//! product's [`Attributes`]; plain f32 arithmetic, so images are identical across machines.

use image::RgbImage;

use super::attributes::{Attributes, Pattern};
use super::garments::{build, reference_extent};
// All of `shapes`: the materials are matched on as constants below, where a name missing
// from a list would silently become a catch-all binding.
use super::shapes::*;

fn fill_poly(ids: &mut [u8], size: usize, pts: &[P], id: u8, xs: &mut Vec<f32>) {
    if pts.len() < 3 {
        return;
    }
    let mut ymin = f32::INFINITY;
    let mut ymax = f32::NEG_INFINITY;
    for p in pts {
        ymin = ymin.min(p[1]);
        ymax = ymax.max(p[1]);
    }
    let r0 = ((ymin - 0.5).ceil().max(0.0)) as usize;
    let r1 = (ymax - 0.5).floor();
    if r1 < 0.0 {
        return;
    }
    let r1 = (r1 as usize).min(size - 1);
    for r in r0..=r1 {
        let yc = r as f32 + 0.5;
        xs.clear();
        let mut prev = pts[pts.len() - 1];
        for &p in pts {
            if (prev[1] <= yc) != (p[1] <= yc) {
                let t = (yc - prev[1]) / (p[1] - prev[1]);
                xs.push(prev[0] + t * (p[0] - prev[0]));
            }
            prev = p;
        }
        xs.sort_unstable_by(|a, b| a.total_cmp(b));
        let row = &mut ids[r * size..(r + 1) * size];
        for pair in xs.chunks_exact(2) {
            let c0 = (pair[0] - 0.5).ceil().max(0.0) as usize;
            let c1 = ((pair[1] - 0.5).ceil().max(0.0) as usize).min(size);
            if c0 < c1 {
                row[c0..c1].fill(id);
            }
        }
    }
}

fn fract(x: f32) -> f32 {
    x - x.floor()
}

fn mix(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn scale3(a: [f32; 3], f: f32) -> [f32; 3] {
    [a[0] * f, a[1] * f, a[2] * f]
}

fn to_f(c: [u8; 3], tint: [i8; 3]) -> [f32; 3] {
    let mut o = [0.0; 3];
    for k in 0..3 {
        o[k] = (c[k] as i32 + tint[k] as i32).clamp(0, 255) as f32;
    }
    o
}

fn luma(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

/// Renders the image of a product with attributes `a`, `image_size` pixels square.
pub(super) fn image(image_size: u32, a: &Attributes) -> RgbImage {
    let size = image_size.max(1) as usize;
    let sz = size as f32;
    let shapes = build(a.garment, a.variants);

    // Centre the garment's bounding box in the image. The scale is the same
    // for all variants of a garment, so that e.g. a mini skirt is drawn
    // shorter than a maxi skirt.
    let [x0, y0, x1, y1] = shapes.bbox();
    let scale = a.fill * sz / reference_extent(a.garment);
    let (gcx, gcy) = ((x0 + x1) * 0.5, (y0 + y1) * 0.5);
    let (ox, oy) = (sz * (0.5 + a.offset[0]), sz * (0.5 + a.offset[1]));
    let to_px = |q: P| -> P { [(q[0] - gcx) * scale + ox, (q[1] - gcy) * scale + oy] };

    let mut ids = vec![0u8; size * size];
    let mut xs = Vec::with_capacity(16);
    let mut buf: Vec<P> = Vec::with_capacity(64);
    for (prim, id) in &shapes.prims {
        buf.clear();
        match prim {
            Prim::Poly(pts) => buf.extend(pts.iter().map(|&q| to_px(q))),
            Prim::Line(a, b, w) => {
                buf.extend(line_quad(to_px(*a), to_px(*b), (w * scale).max(1.2)));
            }
        }
        fill_poly(&mut ids, size, &buf, *id, &mut xs);
    }
    let mut mats = shapes.mats.clone();

    // Tiny logo dot, only over the garment.
    if let Some((pos, _)) = a.logo {
        let c = to_px([x0 + (x1 - x0) * pos[0], y0 + (y1 - y0) * pos[1]]);
        let r = (0.011 * sz).max(1.0);
        if mats.len() < 255 {
            mats.push(LOGO);
            let id = (mats.len() - 1) as u8;
            let rr = r.ceil() as i64;
            let (cx, cy) = (c[0].floor() as i64, c[1].floor() as i64);
            for y in (cy - rr).max(0)..=(cy + rr).min(size as i64 - 1) {
                for x in (cx - rr).max(0)..=(cx + rr).min(size as i64 - 1) {
                    let dx = x as f32 + 0.5 - c[0];
                    let dy = y as f32 + 0.5 - c[1];
                    let k = y as usize * size + x as usize;
                    if dx * dx + dy * dy <= r * r && ids[k] != 0 {
                        ids[k] = id;
                    }
                }
            }
        }
    }

    // Colours.
    let c1 = to_f(a.color.rgb(), a.tint);
    let c2 = to_f(a.second_color.rgb(), a.tint);
    let bg = [
        a.background[0] as f32,
        a.background[1] as f32,
        a.background[2] as f32,
    ];
    let button = if luma(c1) > 100.0 {
        scale3(c1, 0.45)
    } else {
        mix(c1, [235.0, 235.0, 230.0], 0.6)
    };
    let lace = if luma(c1) < 150.0 {
        [238.0, 238.0, 236.0]
    } else {
        [60.0, 58.0, 56.0]
    };
    let logo_rgb = {
        let g = a.logo.map(|l| l.1).unwrap_or(128) as f32;
        [g, g, g]
    };
    let period = a.pattern_period.max(1e-3);
    let ph = a.pattern_phase;
    let pattern = a.pattern;
    let pat = |u: f32, v: f32| -> [f32; 3] {
        match pattern {
            Pattern::Solid => c1,
            Pattern::VerticalStripes => {
                if fract(u / period + ph[0]) < 0.42 {
                    c2
                } else {
                    c1
                }
            }
            Pattern::HorizontalStripes => {
                if fract(v / period + ph[1]) < 0.42 {
                    c2
                } else {
                    c1
                }
            }
            Pattern::Checks => {
                let p2 = period * 1.5;
                let a = fract(u / p2 + ph[0]) < 0.5;
                let b = fract(v / p2 + ph[1]) < 0.5;
                match (a, b) {
                    (true, true) => c2,
                    (false, false) => c1,
                    _ => mix(c1, c2, 0.5),
                }
            }
            Pattern::Dots => {
                let pd = period * 1.35;
                let gy = v / pd + ph[1];
                let row = gy.floor();
                let fy = gy - row - 0.5;
                let shift = if (row as i64).rem_euclid(2) == 1 {
                    0.5
                } else {
                    0.0
                };
                let fx = fract(u / pd + ph[0] + shift) - 0.5;
                if fx * fx + fy * fy < 0.29 * 0.29 {
                    c2
                } else {
                    c1
                }
            }
        }
    };

    // Garment extent in pixels, for shading.
    let pcx = ox;
    let phw = ((x1 - x0) * 0.5 * scale).max(1.0);
    let ptop = (y0 - gcy) * scale + oy;
    let ph_ = ((y1 - y0) * scale).max(1.0);
    let rib_step = (size / 96).max(1);

    let mut img = RgbImage::new(size as u32, size as u32);
    let raw: &mut [u8] = &mut img;
    for y in 0..size {
        let v = (y as f32 + 0.5) / sz;
        let dy = ((y as f32 + 0.5 - ptop) / ph_).clamp(0.0, 1.0);
        for x in 0..size {
            let k = y * size + x;
            let id = ids[k];
            let out = &mut raw[3 * k..3 * k + 3];
            if id == 0 {
                out.copy_from_slice(&[bg[0] as u8, bg[1] as u8, bg[2] as u8]);
                continue;
            }
            let u = (x as f32 + 0.5) / sz;
            let dx = ((x as f32 + 0.5 - pcx) / phw).clamp(-1.0, 1.0);
            let shade = 1.0 - a.shading * dx * dx - 0.07 * dy;
            let mut c = match mats[id as usize] {
                FABRIC => scale3(pat(u, v), shade),
                DARK => scale3(pat(u, v), 0.66 * shade),
                RIB => {
                    let f = if (x / rib_step).is_multiple_of(2) {
                        0.8
                    } else {
                        0.96
                    };
                    scale3(pat(u, v), f * shade)
                }
                SEAM => scale3(pat(u, v), 0.62 * shade),
                BUTTON => button,
                METAL => scale3([182.0, 182.0, 188.0], shade),
                SOLE => scale3([240.0, 238.0, 232.0], shade),
                SOLE_DARK => [46.0, 40.0, 36.0],
                LACE => lace,
                STITCH => [206.0, 150.0, 70.0],
                RIP => {
                    if (y / rib_step).is_multiple_of(2) {
                        [232.0, 234.0, 238.0]
                    } else {
                        [200.0, 204.0, 212.0]
                    }
                }
                LINING => [58.0, 54.0, 52.0],
                LOGO => logo_rgb,
                _ => c1,
            };
            // Outline part boundaries.
            let l = if x > 0 { ids[k - 1] } else { 0 };
            let r = if x + 1 < size { ids[k + 1] } else { 0 };
            let t = if y > 0 { ids[k - size] } else { 0 };
            let b = if y + 1 < size { ids[k + size] } else { 0 };
            if l == 0 || r == 0 || t == 0 || b == 0 {
                c = scale3(c, 0.5);
            } else if l != id || r != id || t != id || b != id {
                c = scale3(c, 0.72);
            }
            for ch in 0..3 {
                out[ch] = c[ch].clamp(0.0, 255.0) as u8;
            }
        }
    }
    img
}

#[cfg(test)]
mod tests {
    use super::super::{Color, Pattern, SynthConfig, products, render};
    use image::RgbImage;

    use super::super::tests::cfg;

    #[test]
    fn image_size_and_colour_means() {
        let c = SynthConfig {
            image_size: 80,
            ..cfg(15, 5)
        };
        let ps = products(&c);
        for p in &ps {
            let img = render(&c, p);
            assert_eq!(img.dimensions(), (80, 80));
        }
        let mean = |img: &RgbImage| -> [f64; 3] {
            let mut m = [0.0; 3];
            for px in img.pixels() {
                for k in 0..3 {
                    m[k] += px[k] as f64;
                }
            }
            m.map(|x| x / (img.width() * img.height()) as f64)
        };
        for p in &ps {
            let mut red = p.clone();
            red.attributes.color = Color::Red;
            red.attributes.pattern = Pattern::Solid;
            let mut green = red.clone();
            green.attributes.color = Color::Green;
            let mr = mean(&render(&c, &red));
            let mg = mean(&render(&c, &green));
            assert!(
                mr[0] - mg[0] > 8.0 && mg[1] - mr[1] > 5.0,
                "{}: red {mr:?} vs green {mg:?}",
                p.subcategory
            );
        }
    }

    #[test]
    fn variants_change_pixels() {
        let c = cfg(15, 6);
        for p in products(&c) {
            let axes = p.attributes.garment.variant_axes();
            for (k, ax) in axes.iter().enumerate() {
                let base = render(&c, &p).into_raw();
                for (opt, key) in ax.iter().enumerate() {
                    if opt as u8 == p.attributes.variants[k] {
                        continue;
                    }
                    let mut q = p.clone();
                    q.attributes.variants[k] = opt as u8;
                    let other = render(&c, &q).into_raw();
                    assert_ne!(base, other, "{} {key}", p.subcategory);
                }
            }
        }
    }
}
