//! Skirts and dresses: they share hem lengths, fillers and the skirt shape; a dress's
//! bodice is a top (see `tops`).

use super::Def;
use super::tops::{SLEEVE_LONG, SLEEVE_SHORT, Sleeve, Top, neck_crew};
use crate::sources::synthetic::attributes::Color;
use crate::sources::synthetic::shapes::{FABRIC, SEAM, Shapes, mirror};
use crate::sources::synthetic::text::{Opt, TextSpec, o};

const LEN_MINI: Opt = o(
    "mini",
    &["mini"],
    &["Mini length.", "Hem falls above the knee."],
);
const LEN_MIDI: Opt = o(
    "midi",
    &["midi"],
    &["Midi length.", "Hem falls below the knee."],
);
const LEN_MAXI: Opt = o("maxi", &["maxi"], &["Maxi length.", "Floor-length hem."]);

const DRESS_FILLERS: &[&[&str]] = &[
    &["Fully lined.", "Unlined.", "Partially lined."],
    &[
        "Concealed zip closure at back.",
        "Concealed zip closure at side.",
    ],
    &["Tonal stitching."],
    &["Made in France.", "Made in Italy."],
];

pub(super) static SKIRT: Def = Def {
    category: "SKIRTS",
    subcategory: "SKIRTS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["skirt"],
        fabrics: &["wool", "cotton", "crepe", "silk", "tweed"],
        axes: &[
            &[LEN_MINI, LEN_MIDI, LEN_MAXI],
            &[
                o("a-line", &["A-line"], &["A-line silhouette."]),
                o(
                    "pleated",
                    &["pleated"],
                    &["Knife pleats throughout.", "Pleated panels."],
                ),
            ],
        ],
        details: &["Banded waist."],
        fillers: DRESS_FILLERS,
    },
    draw: draw_skirt,
};

fn draw_skirt(s: &mut Shapes, [v0, v1]: [u8; 2]) {
    let (hem, hw) = match v0 {
        0 => (0.45, 0.27),
        1 => (0.72, 0.31),
        _ => (0.95, 0.35),
    };
    s.rect(FABRIC, 0.33, 0.05, 0.67, 0.1);
    skirt_shape(s, 0.1, 0.17, hem, hw, v1 == 1);
}

pub(super) static DRESS: Def = Def {
    category: "DRESSES",
    subcategory: "DRESSES",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["dress"],
        fabrics: &["silk", "crepe", "cotton", "viscose", "jersey"],
        axes: &[
            &[LEN_MINI, LEN_MIDI, LEN_MAXI],
            &[
                o("sleeveless", &["sleeveless"], &["Sleeveless."]),
                SLEEVE_SHORT,
                SLEEVE_LONG,
            ],
        ],
        details: &["Round neckline.", "Seam at waist."],
        fillers: DRESS_FILLERS,
    },
    draw: draw_dress,
};

fn draw_dress(s: &mut Shapes, [v0, v1]: [u8; 2]) {
    let (hem, hw) = match v0 {
        0 => (0.58, 0.25),
        1 => (0.78, 0.29),
        _ => (0.97, 0.33),
    };
    let waist = 0.34;
    skirt_shape(s, waist + 0.02, 0.145, hem, hw, false);
    if v1 == 0 {
        let body = [
            [0.5 - 0.07, 0.07],
            [0.5 - 0.125, 0.07],
            [0.5 - 0.13, 0.14],
            [0.5 - 0.16, 0.2],
            [0.5 - 0.14, waist + 0.01],
        ];
        let mut pts = body.to_vec();
        pts.extend(body.iter().rev().map(|&p| mirror(p)));
        s.poly(FABRIC, pts);
    } else {
        Top {
            sy: 0.07,
            nw: 0.07,
            shw: 0.17,
            aw: 0.155,
            ay: 0.22,
            hw: 0.14,
            hy: waist + 0.01,
            sleeve: if v1 == 1 { Sleeve::Short } else { Sleeve::Long },
            long_len: 0.36,
            cuff: None,
            hem_band: None,
        }
        .draw(s);
    }
    neck_crew(s, 0.07, 0.07, None);
    s.rect(FABRIC, 0.5 - 0.142, waist, 0.5 + 0.142, waist + 0.024);
}

fn skirt_shape(s: &mut Shapes, y0: f32, w0: f32, hem: f32, hw: f32, pleats: bool) {
    let mut pts = vec![[0.5 - w0, y0], [0.5 + w0, y0]];
    let n = 10;
    let hem_at = |x: f32| {
        let t = (x - 0.5) / hw;
        hem + 0.025 * (1.0 - t * t)
    };
    for k in 0..=n {
        let x = 0.5 + hw * (1.0 - 2.0 * k as f32 / n as f32);
        pts.push([x, hem_at(x)]);
    }
    s.poly(FABRIC, pts);
    if pleats {
        for k in 1..8 {
            let t = -1.0 + 2.0 * k as f32 / 8.0;
            let x1 = 0.5 + hw * t;
            s.line(SEAM, [0.5 + w0 * t, y0], [x1, hem_at(x1) - 0.004], 0.006);
        }
    }
}
