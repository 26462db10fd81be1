//! The 2-D drawing vocabulary of the garments: part polygons and thick lines in garment
//! coordinates (unit square, y down), each with a material, and the arithmetic they use.
//! Everything is plain f32/f64 arithmetic (no libm), so images are identical across machines.

pub(super) type P = [f32; 2];

// Materials.
pub(super) const BG: u8 = 0;
pub(super) const FABRIC: u8 = 1;
pub(super) const DARK: u8 = 2;
pub(super) const RIB: u8 = 3;
pub(super) const SEAM: u8 = 4;
pub(super) const BUTTON: u8 = 5;
pub(super) const METAL: u8 = 6;
pub(super) const SOLE: u8 = 7;
pub(super) const SOLE_DARK: u8 = 8;
pub(super) const LACE: u8 = 9;
pub(super) const STITCH: u8 = 10;
pub(super) const RIP: u8 = 11;
pub(super) const LINING: u8 = 12;
pub(super) const LOGO: u8 = 13;

pub(super) const PI: f32 = std::f32::consts::PI;

/// Deterministic sine and cosine (pure arithmetic, no libm).
pub(super) fn sin_cos(a: f32) -> (f32, f32) {
    let tau = 2.0 * std::f64::consts::PI;
    let mut x = a as f64;
    x -= (x / tau).round() * tau;
    let x2 = x * x;
    // Taylor series to x^17 / x^16 on [-pi, pi]: error < 1e-7.
    let mut s = 0.0f64;
    let mut c = 0.0f64;
    let mut ts = x;
    let mut tc = 1.0f64;
    for k in 0..9 {
        s += ts;
        c += tc;
        let k2 = (2 * k + 2) as f64;
        ts *= -x2 / (k2 * (k2 + 1.0));
        tc *= -x2 / ((k2 - 1.0) * k2);
    }
    (s as f32, c as f32)
}

pub(super) fn mirror(p: P) -> P {
    [1.0 - p[0], p[1]]
}

pub(super) fn lerp(a: P, b: P, t: f32) -> P {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]
}

pub(super) fn norm(x: f32, y: f32) -> P {
    let l = (x * x + y * y).sqrt();
    [x / l, y / l]
}

/// Polygons in garment coordinates (unit square, y down), each with a part
/// id; `mats[id]` is the part's material. Boundaries between parts are
/// outlined when rendering.
pub(super) struct Shapes {
    pub(super) prims: Vec<(Prim, u8)>,
    pub(super) mats: Vec<u8>,
}

/// A filled polygon, or a straight line of a given width (at least about a
/// pixel wide whatever the image size).
pub(super) enum Prim {
    Poly(Vec<P>),
    Line(P, P, f32),
}

impl Shapes {
    pub(super) fn new() -> Self {
        Shapes {
            prims: Vec::new(),
            mats: vec![BG],
        }
    }

    fn id(&mut self, mat: u8) -> u8 {
        assert!(self.mats.len() < 255, "too many parts");
        self.mats.push(mat);
        (self.mats.len() - 1) as u8
    }

    pub(super) fn poly(&mut self, mat: u8, pts: Vec<P>) {
        let id = self.id(mat);
        self.prims.push((Prim::Poly(pts), id));
    }

    /// The polygon and its mirror image about x = 0.5.
    pub(super) fn sym(&mut self, mat: u8, pts: &[P]) {
        self.poly(mat, pts.to_vec());
        self.poly(mat, pts.iter().rev().map(|&p| mirror(p)).collect());
    }

    pub(super) fn rect(&mut self, mat: u8, x0: f32, y0: f32, x1: f32, y1: f32) {
        self.poly(mat, vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]);
    }

    /// Ellipse with different radii above (`up`) and below (`down`) its centre.
    pub(super) fn ellipse4(&mut self, mat: u8, c: P, rx: f32, up: f32, down: f32) {
        let n = 28;
        let pts = (0..n)
            .map(|k| {
                let (s, co) = sin_cos(2.0 * PI * k as f32 / n as f32);
                let ry = if s < 0.0 { up } else { down };
                [c[0] + rx * co, c[1] + ry * s]
            })
            .collect();
        self.poly(mat, pts);
    }

    pub(super) fn circle(&mut self, mat: u8, c: P, r: f32) {
        self.ellipse4(mat, c, r, r, r);
    }

    pub(super) fn line(&mut self, mat: u8, a: P, b: P, w: f32) {
        let id = self.id(mat);
        self.line_id(id, a, b, w);
    }

    fn line_id(&mut self, id: u8, a: P, b: P, w: f32) {
        self.prims.push((Prim::Line(a, b, w), id));
    }

    /// Bounding box `[x0, y0, x1, y1]` of all primitives.
    pub(super) fn bbox(&self) -> [f32; 4] {
        let mut bb = [f32::MAX, f32::MAX, f32::MIN, f32::MIN];
        let mut add = |q: P, r: f32| {
            bb[0] = bb[0].min(q[0] - r);
            bb[1] = bb[1].min(q[1] - r);
            bb[2] = bb[2].max(q[0] + r);
            bb[3] = bb[3].max(q[1] + r);
        };
        for (prim, _) in &self.prims {
            match prim {
                Prim::Poly(pts) => pts.iter().for_each(|&q| add(q, 0.0)),
                Prim::Line(a, b, w) => {
                    add(*a, w * 0.5);
                    add(*b, w * 0.5);
                }
            }
        }
        bb
    }
}

/// Quad of a line from `a` to `b` of width `w`, extended a little along the
/// line so that joints of polylines close.
pub(super) fn line_quad(a: P, b: P, w: f32) -> [P; 4] {
    let d = norm(b[0] - a[0], b[1] - a[1]);
    let n = [-d[1] * w * 0.5, d[0] * w * 0.5];
    let e = [d[0] * w * 0.3, d[1] * w * 0.3];
    let a = [a[0] - e[0], a[1] - e[1]];
    let b = [b[0] + e[0], b[1] + e[1]];
    [
        [a[0] + n[0], a[1] + n[1]],
        [b[0] + n[0], b[1] + n[1]],
        [b[0] - n[0], b[1] - n[1]],
        [a[0] - n[0], a[1] - n[1]],
    ]
}

impl Shapes {
    pub(super) fn polyline(&mut self, mat: u8, pts: &[P], w: f32) {
        let id = self.id(mat);
        for s in pts.windows(2) {
            self.line_id(id, s[0], s[1], w);
        }
    }

    /// Thick elliptical arc from angle a0 to a1 (radians, y down).
    pub(super) fn arc(&mut self, mat: u8, c: P, r: P, [a0, a1]: [f32; 2], w: f32) {
        let [rx, ry] = r;
        let n = 20;
        let mut outer = Vec::with_capacity(2 * n + 2);
        let mut inner = Vec::with_capacity(n + 1);
        for k in 0..=n {
            let (s, co) = sin_cos(a0 + (a1 - a0) * k as f32 / n as f32);
            outer.push([c[0] + (rx + w * 0.5) * co, c[1] + (ry + w * 0.5) * s]);
            inner.push([c[0] + (rx - w * 0.5) * co, c[1] + (ry - w * 0.5) * s]);
        }
        outer.extend(inner.into_iter().rev());
        self.poly(mat, outer);
    }

    pub(super) fn arc_points(c: P, rx: f32, ry: f32, a0: f32, a1: f32, n: usize) -> Vec<P> {
        (0..=n)
            .map(|k| {
                let (s, co) = sin_cos(a0 + (a1 - a0) * k as f32 / n as f32);
                [c[0] + rx * co, c[1] + ry * s]
            })
            .collect()
    }

    /// Rectangle with top corner radius `rt` and bottom corner radius `rb`.
    pub(super) fn round_rect_points(
        x0: f32,
        y0: f32,
        x1: f32,
        y1: f32,
        rt: f32,
        rb: f32,
    ) -> Vec<P> {
        let mut pts = Vec::new();
        pts.extend(Self::arc_points(
            [x0 + rt, y0 + rt],
            rt,
            rt,
            PI,
            1.5 * PI,
            6,
        ));
        pts.extend(Self::arc_points(
            [x1 - rt, y0 + rt],
            rt,
            rt,
            1.5 * PI,
            2.0 * PI,
            6,
        ));
        pts.extend(Self::arc_points(
            [x1 - rb, y1 - rb],
            rb,
            rb,
            0.0,
            0.5 * PI,
            6,
        ));
        pts.extend(Self::arc_points(
            [x0 + rb, y1 - rb],
            rb,
            rb,
            0.5 * PI,
            PI,
            6,
        ));
        pts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_cos_accuracy() {
        for k in -40..=40 {
            let a = k as f32 * 0.25;
            let (s, c) = sin_cos(a);
            assert!((s - a.sin()).abs() < 1e-5 && (c - a.cos()).abs() < 1e-5);
        }
    }
}
