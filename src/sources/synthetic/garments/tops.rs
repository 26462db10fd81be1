//! Tops: t-shirts, shirts, sweaters and tank tops, and the parts other garments reuse: the
//! flat-lay top with its sleeves (dresses, outerwear), necklines, collars and buttons.

use super::Def;
use crate::sources::synthetic::attributes::Color;
use crate::sources::synthetic::shapes::{
    BUTTON, DARK, FABRIC, P, PI, RIB, Shapes, lerp, mirror, norm,
};
use crate::sources::synthetic::text::{Opt, TextSpec, o};

pub(super) const SLEEVE_SHORT: Opt = o(
    "short-sleeve",
    &["short sleeve", "short-sleeve"],
    &["Short sleeves."],
);
pub(super) const SLEEVE_LONG: Opt = o(
    "long-sleeve",
    &["long sleeve", "long-sleeve"],
    &["Long sleeves."],
);

const TOP_FILLERS: &[&[&str]] = &[
    &["Tonal stitching."],
    &["Relaxed fit.", "Regular fit.", "Slim fit."],
    &["Made in Portugal.", "Made in Italy."],
    &["Machine washable.", "Dry clean only."],
];

pub(super) static TSHIRT: Def = Def {
    category: "TOPS",
    subcategory: "T-SHIRTS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["t-shirt", "tee"],
        fabrics: &[
            "cotton jersey",
            "organic cotton",
            "slub cotton",
            "cotton-blend jersey",
        ],
        axes: &[
            &[SLEEVE_SHORT, SLEEVE_LONG],
            &[
                o(
                    "crewneck",
                    &["crewneck"],
                    &["Rib knit crewneck collar.", "Crewneck collar."],
                ),
                o(
                    "v-neck",
                    &["V-neck"],
                    &["Rib knit V-neck collar.", "V-neck collar."],
                ),
            ],
        ],
        details: &[],
        fillers: TOP_FILLERS,
    },
    draw: draw_tshirt,
};

fn draw_tshirt(s: &mut Shapes, [v0, v1]: [u8; 2]) {
    let top = Top {
        sy: 0.14,
        nw: 0.075,
        shw: 0.2,
        aw: 0.18,
        ay: 0.36,
        hw: 0.185,
        hy: 0.86,
        sleeve: if v0 == 0 { Sleeve::Short } else { Sleeve::Long },
        long_len: 0.58,
        cuff: None,
        hem_band: None,
    };
    top.draw(s);
    if v1 == 0 {
        neck_crew(s, top.sy, top.nw, Some(RIB));
    } else {
        neck_v(s, top.sy, top.nw, 0.13, RIB);
    }
}

pub(super) static SHIRT: Def = Def {
    category: "TOPS",
    subcategory: "SHIRTS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["shirt"],
        fabrics: &["cotton poplin", "oxford cotton", "linen", "cotton twill"],
        axes: &[&[
            o(
                "long-sleeve",
                &["long sleeve", "long-sleeve"],
                &["Long sleeves with buttoned cuffs.", "Long sleeves."],
            ),
            SLEEVE_SHORT,
        ]],
        details: &["Spread collar.", "Button closure at front."],
        fillers: TOP_FILLERS,
    },
    draw: draw_shirt,
};

fn draw_shirt(s: &mut Shapes, [v0, _]: [u8; 2]) {
    let long = v0 == 0;
    let top = Top {
        sy: 0.13,
        nw: 0.07,
        shw: 0.2,
        aw: 0.185,
        ay: 0.36,
        hw: 0.19,
        hy: 0.88,
        sleeve: if long { Sleeve::Long } else { Sleeve::Short },
        long_len: 0.6,
        cuff: if long { Some(FABRIC) } else { None },
        hem_band: None,
    };
    top.draw(s);
    s.rect(FABRIC, 0.487, top.sy + 0.04, 0.513, top.hy);
    shirt_collar(s, top.sy, top.nw, 1.0);
    buttons(s, 0.5, top.sy + 0.12, top.hy - 0.07, 6, 0.01);
}

pub(super) static SWEATER: Def = Def {
    category: "TOPS",
    subcategory: "SWEATERS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["sweater", "pullover"],
        fabrics: &[
            "wool",
            "merino wool",
            "cashmere",
            "cotton-blend knit",
            "alpaca-blend knit",
        ],
        axes: &[&[
            o("crewneck", &["crewneck"], &["Rib knit crewneck collar."]),
            o("v-neck", &["V-neck"], &["Rib knit V-neck collar."]),
            o(
                "turtleneck",
                &["turtleneck"],
                &["Ribbed turtleneck collar.", "Rolled turtleneck collar."],
            ),
        ]],
        details: &["Long sleeves.", "Rib knit hem and cuffs."],
        fillers: TOP_FILLERS,
    },
    draw: draw_sweater,
};

fn draw_sweater(s: &mut Shapes, [v0, _]: [u8; 2]) {
    let top = Top {
        sy: 0.15,
        nw: 0.075,
        shw: 0.215,
        aw: 0.2,
        ay: 0.37,
        hw: 0.2,
        hy: 0.86,
        sleeve: Sleeve::Long,
        long_len: 0.56,
        cuff: Some(RIB),
        hem_band: Some(RIB),
    };
    top.draw(s);
    match v0 {
        0 => neck_crew(s, top.sy, top.nw, Some(RIB)),
        1 => neck_v(s, top.sy, top.nw, 0.16, RIB),
        _ => neck_turtle(s, top.sy, top.nw),
    }
}

pub(super) static TANK: Def = Def {
    category: "TOPS",
    subcategory: "TANK TOPS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["tank top"],
        fabrics: &["ribbed cotton", "silk", "cotton jersey", "satin"],
        axes: &[&[
            o("wide-strap", &["wide-strap"], &["Wide shoulder straps."]),
            o(
                "spaghetti-strap",
                &["spaghetti-strap", "thin-strap"],
                &["Thin spaghetti straps."],
            ),
        ]],
        details: &["Scoop neckline.", "Sleeveless."],
        fillers: TOP_FILLERS,
    },
    draw: draw_tank_top,
};

fn draw_tank_top(s: &mut Shapes, [v0, _]: [u8; 2]) {
    let w = if v0 == 0 { 0.055 } else { 0.014 };
    let so = 0.5 - 0.125;
    s.sym(RIB, &[[so, 0.1], [so + w, 0.1], [so + w, 0.25], [so, 0.25]]);
    let mut body = vec![
        [0.5 - 0.2, 0.9],
        [0.5 - 0.19, 0.4],
        [0.5 - 0.165, 0.32],
        [so - 0.005, 0.24],
        [so + w + 0.005, 0.24],
    ];
    body.extend(Shapes::arc_points(
        [0.5, 0.24],
        0.5 - (so + w + 0.005),
        0.11,
        PI,
        0.0,
        12,
    ));
    let right: Vec<P> = body[..5].iter().rev().map(|&p| mirror(p)).collect();
    body.extend(right);
    s.poly(FABRIC, body);
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Sleeve {
    None,
    Short,
    Long,
}

/// Flat-lay top: body, sleeves, optional cuffs and hem band.
pub(super) struct Top {
    pub(super) sy: f32,
    pub(super) nw: f32,
    pub(super) shw: f32,
    pub(super) aw: f32,
    pub(super) ay: f32,
    pub(super) hw: f32,
    pub(super) hy: f32,
    pub(super) sleeve: Sleeve,
    pub(super) long_len: f32,
    pub(super) cuff: Option<u8>,
    pub(super) hem_band: Option<u8>,
}

impl Top {
    pub(super) fn draw(&self, s: &mut Shapes) {
        let a = [0.5 - self.shw, self.sy + 0.035];
        let b = [0.5 - self.aw, self.ay];
        if self.sleeve != Sleeve::None {
            let w0 = ((a[0] - b[0]) * (a[0] - b[0]) + (a[1] - b[1]) * (a[1] - b[1])).sqrt();
            let (d, len, w1) = match self.sleeve {
                Sleeve::Short => (norm(-1.0, 0.8), 0.13, 0.82 * w0),
                _ => (norm(-0.28, 1.0), self.long_len, 0.085),
            };
            let j = lerp(a, b, 0.5);
            let mut n = [d[1], -d[0]];
            if n[0] * (a[0] - j[0]) + n[1] * (a[1] - j[1]) < 0.0 {
                n = [-n[0], -n[1]];
            }
            let at = |t: f32| -> (P, P) {
                let c = [j[0] + d[0] * len * t, j[1] + d[1] * len * t];
                let w = (w0 + (w1 - w0) * t) * 0.5;
                (
                    [c[0] + n[0] * w, c[1] + n[1] * w],
                    [c[0] - n[0] * w, c[1] - n[1] * w],
                )
            };
            let (a2, b2) = at(1.0);
            s.sym(FABRIC, &[a, a2, b2, b]);
            if let Some(m) = self.cuff {
                let t0 = 1.0 - 0.05 / len;
                let (a1, b1) = at(t0);
                s.sym(m, &[a1, a2, b2, b1]);
            }
        }
        let body = vec![
            [0.5 - self.nw, self.sy],
            a,
            b,
            [0.5 - self.hw, self.hy],
            [0.5 + self.hw, self.hy],
            mirror(b),
            mirror(a),
            [0.5 + self.nw, self.sy],
        ];
        s.poly(FABRIC, body);
        if let Some(m) = self.hem_band {
            let y0 = self.hy - 0.045;
            let t = (y0 - b[1]) / (self.hy - b[1]);
            let x = b[0] + (0.5 - self.hw - b[0]) * t;
            s.poly(
                m,
                vec![
                    [x, y0],
                    [1.0 - x, y0],
                    [0.5 + self.hw, self.hy],
                    [0.5 - self.hw, self.hy],
                ],
            );
        }
    }

    /// Half width of the body at height y (below the armpit).
    pub(super) fn half_width_at(&self, y: f32) -> f32 {
        let t = ((y - self.ay) / (self.hy - self.ay)).clamp(0.0, 1.0);
        self.aw + (self.hw - self.aw) * t
    }
}

pub(super) fn neck_crew(s: &mut Shapes, sy: f32, nw: f32, band: Option<u8>) {
    if let Some(m) = band {
        s.ellipse4(m, [0.5, sy], nw + 0.016, 0.024, 0.062);
    }
    s.ellipse4(DARK, [0.5, sy], nw, 0.01, 0.046);
}

fn neck_v(s: &mut Shapes, sy: f32, nw: f32, depth: f32, band: u8) {
    let mut outer = Shapes::arc_points([0.5, sy], nw + 0.016, 0.024, PI, 2.0 * PI, 10);
    outer.push([0.5, sy + depth + 0.03]);
    s.poly(band, outer);
    let mut inner = Shapes::arc_points([0.5, sy], nw, 0.01, PI, 2.0 * PI, 10);
    inner.push([0.5, sy + depth]);
    s.poly(DARK, inner);
}

fn neck_turtle(s: &mut Shapes, sy: f32, nw: f32) {
    let w = nw + 0.014;
    s.rect(RIB, 0.5 - w, sy - 0.04, 0.5 + w, sy + 0.035);
    s.rect(
        RIB,
        0.5 - w - 0.004,
        sy - 0.085,
        0.5 + w + 0.004,
        sy - 0.035,
    );
    s.ellipse4(DARK, [0.5, sy - 0.085], w - 0.004, 0.012, 0.012);
}

pub(super) fn shirt_collar(s: &mut Shapes, sy: f32, nw: f32, big: f32) {
    s.ellipse4(FABRIC, [0.5, sy], nw + 0.012, 0.03, 0.035);
    s.ellipse4(DARK, [0.5, sy], nw - 0.01, 0.016, 0.026);
    s.sym(
        FABRIC,
        &[
            [0.5 - nw - 0.014, sy - 0.012],
            [0.497, sy + 0.035 * big],
            [0.488, sy + 0.1 * big],
            [0.5 - nw - 0.045 * big, sy + 0.08 * big],
        ],
    );
}

pub(super) fn buttons(s: &mut Shapes, x: f32, y0: f32, y1: f32, n: usize, r: f32) {
    for k in 0..n {
        let t = if n == 1 {
            0.5
        } else {
            k as f32 / (n - 1) as f32
        };
        s.circle(BUTTON, [x, y0 + (y1 - y0) * t], r);
    }
}
