//! Bottoms: jeans, trousers and shorts, all drawn on one pair of trousers (`Pants`).

use super::Def;
use crate::sources::synthetic::attributes::Color;
use crate::sources::synthetic::shapes::{
    BUTTON, FABRIC, METAL, P, PI, RIP, SEAM, STITCH, Shapes, mirror,
};
use crate::sources::synthetic::text::{TextSpec, o};

const PANTS_FILLERS: &[&[&str]] = &[
    &["Tonal stitching."],
    &["Zip fly.", "Button fly."],
    &["Mid-rise.", "High-rise.", "Low-rise."],
    &["Made in Japan.", "Made in Italy."],
];

pub(super) static JEANS: Def = Def {
    category: "PANTS",
    subcategory: "JEANS",
    colors: &[
        Color::Blue,
        Color::Navy,
        Color::Black,
        Color::Grey,
        Color::White,
    ],
    pattern_weights: [1, 0, 0, 0, 0],
    text: TextSpec {
        nouns: &["jeans"],
        fabrics: &[
            "stretch denim",
            "rigid denim",
            "selvedge denim",
            "cotton denim",
        ],
        axes: &[
            &[
                o(
                    "skinny",
                    &["skinny"],
                    &["Skinny fit.", "Skinny leg tapering to the ankle."],
                ),
                o("straight-leg", &["straight-leg"], &["Straight leg."]),
                o("wide-leg", &["wide-leg"], &["Wide leg."]),
            ],
            &[
                o("clean", &[], &[]),
                o(
                    "ripped",
                    &["ripped", "distressed"],
                    &["Ripped knees.", "Distressed rips at knees."],
                ),
            ],
        ],
        details: &[
            "Five-pocket styling.",
            "Belt loops at waistband.",
            "Contrast stitching.",
        ],
        fillers: PANTS_FILLERS,
    },
    draw: draw_jeans,
};

fn draw_jeans(s: &mut Shapes, [v0, v1]: [u8; 2]) {
    let (out, inn) = match v0 {
        0 => (0.35, 0.455),
        1 => (0.3, 0.465),
        _ => (0.2, 0.47),
    };
    let p = Pants {
        top: 0.03,
        wb: 0.05,
        hip: 0.2,
        crotch: 0.34,
        hem: 0.97,
        out,
        inn,
    };
    p.draw(s);
    let y = p.top + p.wb;
    s.circle(METAL, [0.5, p.top + p.wb * 0.5], 0.013);
    s.polyline(
        STITCH,
        &[
            [0.54, y],
            [0.54, p.crotch - 0.07],
            [0.525, p.crotch - 0.03],
            [0.5, p.crotch - 0.015],
        ],
        0.006,
    );
    let pocket = Shapes::arc_points([0.5 - p.hip, y], 0.09, 0.09, 0.0, 0.5 * PI, 6);
    s.polyline(STITCH, &pocket, 0.006);
    let mirrored: Vec<P> = pocket.iter().map(|&q| mirror(q)).collect();
    s.polyline(STITCH, &mirrored, 0.006);
    if v1 == 1 {
        let knee = p.crotch + 0.38 * (p.hem - p.crotch);
        for k in 0..3 {
            let yk = knee + k as f32 * 0.022;
            let (c, w) = p.leg_at(yk);
            let hw = w * (0.3 - 0.06 * (k as f32 - 1.0).abs());
            s.sym(
                RIP,
                &[
                    [c - hw, yk],
                    [c + hw, yk - 0.003],
                    [c + hw, yk + 0.009],
                    [c - hw, yk + 0.012],
                ],
            );
        }
    }
}

pub(super) static TROUSERS: Def = Def {
    category: "PANTS",
    subcategory: "TROUSERS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["trousers", "pants"],
        fabrics: &["wool", "cotton twill", "linen", "virgin wool", "gabardine"],
        axes: &[
            &[
                o(
                    "slim",
                    &["slim-fit", "slim"],
                    &["Slim fit.", "Slim, tapered leg."],
                ),
                o("wide-leg", &["wide-leg"], &["Wide leg."]),
            ],
            &[
                o("full-length", &["full-length"], &["Full-length leg."]),
                o(
                    "cropped",
                    &["cropped"],
                    &["Cropped at the ankle.", "Cropped leg."],
                ),
            ],
        ],
        details: &["Pressed crease at front.", "Belt loops at waistband."],
        fillers: PANTS_FILLERS,
    },
    draw: draw_trousers,
};

fn draw_trousers(s: &mut Shapes, [v0, v1]: [u8; 2]) {
    let (out, inn) = if v0 == 0 { (0.34, 0.46) } else { (0.21, 0.475) };
    let hem = if v1 == 0 { 0.97 } else { 0.8 };
    let p = Pants {
        top: 0.03,
        wb: 0.045,
        hip: 0.19,
        crotch: 0.33,
        hem,
        out,
        inn,
    };
    p.draw(s);
    let y = p.top + p.wb;
    s.circle(BUTTON, [0.5, p.top + p.wb * 0.5], 0.011);
    let (cb, _) = p.leg_at(p.hem);
    s.line(
        SEAM,
        [0.5 - p.hip * 0.5, y + 0.03],
        [cb, p.hem - 0.005],
        0.005,
    );
    s.line(
        SEAM,
        mirror([0.5 - p.hip * 0.5, y + 0.03]),
        mirror([cb, p.hem - 0.005]),
        0.005,
    );
    s.line(
        SEAM,
        [0.5 - p.hip + 0.06, y],
        [0.5 - p.hip + 0.005, y + 0.1],
        0.006,
    );
    s.line(
        SEAM,
        mirror([0.5 - p.hip + 0.06, y]),
        mirror([0.5 - p.hip + 0.005, y + 0.1]),
        0.006,
    );
}

pub(super) static SHORTS: Def = Def {
    category: "PANTS",
    subcategory: "SHORTS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["shorts"],
        fabrics: &["cotton twill", "linen", "denim", "nylon", "seersucker"],
        axes: &[&[
            o(
                "mid-thigh",
                &["mid-thigh"],
                &["Mid-thigh length.", "Hem falls at mid-thigh."],
            ),
            o(
                "knee-length",
                &["knee-length", "bermuda"],
                &["Knee-length.", "Hem falls at the knee."],
            ),
        ]],
        details: &["Rolled cuffs.", "Belt loops at waistband."],
        fillers: PANTS_FILLERS,
    },
    draw: draw_shorts,
};

fn draw_shorts(s: &mut Shapes, [v0, _]: [u8; 2]) {
    let (hem, out, inn) = if v0 == 0 {
        (0.58, 0.24, 0.47)
    } else {
        (0.78, 0.255, 0.475)
    };
    let p = Pants {
        top: 0.12,
        wb: 0.06,
        hip: 0.24,
        crotch: 0.44,
        hem,
        out,
        inn,
    };
    p.draw(s);
    let y = p.top + p.wb;
    s.circle(BUTTON, [0.5, p.top + p.wb * 0.5], 0.013);
    s.line(
        SEAM,
        [0.5 - p.hip + 0.07, y],
        [0.5 - p.hip + 0.005, y + 0.11],
        0.006,
    );
    s.line(
        SEAM,
        mirror([0.5 - p.hip + 0.07, y]),
        mirror([0.5 - p.hip + 0.005, y + 0.11]),
        0.006,
    );
    p.cuffs(s, 0.05);
}

struct Pants {
    top: f32,
    wb: f32,
    hip: f32,
    crotch: f32,
    hem: f32,
    out: f32,
    inn: f32,
}

impl Pants {
    fn draw(&self, s: &mut Shapes) {
        let y = self.top + self.wb;
        let leg = [
            [0.5 - self.hip, y],
            [0.5, y],
            [0.5, self.crotch],
            [self.inn, self.hem],
            [self.out, self.hem],
            [0.5 - self.hip - 0.008, y + 0.12],
        ];
        s.sym(FABRIC, &leg);
        s.rect(
            FABRIC,
            0.5 - self.hip - 0.004,
            self.top,
            0.5 + self.hip + 0.004,
            y,
        );
        for x in [0.5 - self.hip + 0.025, 0.42] {
            s.sym(
                FABRIC,
                &[
                    [x, self.top - 0.006],
                    [x + 0.016, self.top - 0.006],
                    [x + 0.016, y + 0.014],
                    [x, y + 0.014],
                ],
            );
        }
    }

    /// Centre x and width of the left leg at height y (below the crotch).
    fn leg_at(&self, y: f32) -> (f32, f32) {
        let t = ((y - self.crotch) / (self.hem - self.crotch)).clamp(0.0, 1.0);
        let outer = (0.5 - self.hip - 0.008) + (self.out - (0.5 - self.hip - 0.008)) * t;
        let inner = 0.5 + (self.inn - 0.5) * t;
        ((outer + inner) * 0.5, inner - outer)
    }

    fn cuffs(&self, s: &mut Shapes, h: f32) {
        let (c0, w0) = self.leg_at(self.hem - h);
        let (c1, w1) = self.leg_at(self.hem);
        let e = 0.01;
        s.sym(
            FABRIC,
            &[
                [c0 - w0 * 0.5 - e, self.hem - h],
                [c0 + w0 * 0.5 + e * 0.3, self.hem - h],
                [c1 + w1 * 0.5 + e * 0.3, self.hem],
                [c1 - w1 * 0.5 - e, self.hem],
            ],
        );
    }
}
