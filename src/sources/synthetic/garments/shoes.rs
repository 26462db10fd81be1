//! Shoes: sneakers and boots, in side view.

use super::Def;
use crate::sources::synthetic::attributes::Color;
use crate::sources::synthetic::shapes::{
    DARK, FABRIC, LACE, LINING, METAL, SEAM, SOLE, SOLE_DARK, Shapes, lerp, norm,
};
use crate::sources::synthetic::text::{TextSpec, o};

const SNEAKER_FILLERS: &[&[&str]] = &[
    &["Padded tongue."],
    &["Leather lining.", "Textile lining."],
    &["Tonal stitching."],
    &["Cushioned footbed."],
    &["Made in Italy.", "Made in Portugal."],
];
const BOOT_FILLERS: &[&[&str]] = &[
    &["Leather lining.", "Shearling lining."],
    &["Tonal stitching."],
    &["Cushioned footbed.", "Leather footbed."],
    &["Made in Italy.", "Made in Spain."],
];

pub(super) static SNEAKERS: Def = Def {
    category: "SHOES",
    subcategory: "SNEAKERS",
    colors: &Color::ALL,
    pattern_weights: [8, 2, 2, 2, 2],
    text: TextSpec {
        nouns: &["sneakers"],
        fabrics: &["leather", "canvas", "suede", "mesh", "grained leather"],
        axes: &[&[
            o("low-top", &["low-top"], &["Low-top profile."]),
            o(
                "high-top",
                &["high-top"],
                &["High-top profile.", "Padded high-top collar."],
            ),
        ]],
        details: &["Lace-up closure.", "Rubber sole."],
        fillers: SNEAKER_FILLERS,
    },
    draw: draw_sneakers,
};

fn draw_sneakers(s: &mut Shapes, [v0, _]: [u8; 2]) {
    let high = v0 == 1;
    if high {
        s.poly(
            FABRIC,
            vec![[0.3, 0.36], [0.32, 0.25], [0.39, 0.26], [0.42, 0.42]],
        );
        s.poly(
            FABRIC,
            vec![
                [0.09, 0.79],
                [0.08, 0.33],
                [0.11, 0.29],
                [0.3, 0.3],
                [0.36, 0.36],
                [0.42, 0.5],
                [0.55, 0.56],
                [0.72, 0.63],
                [0.85, 0.7],
                [0.92, 0.76],
                [0.92, 0.79],
            ],
        );
        s.ellipse4(LINING, [0.2, 0.31], 0.1, 0.012, 0.02);
        s.circle(FABRIC, [0.2, 0.46], 0.045);
    } else {
        s.poly(
            FABRIC,
            vec![[0.36, 0.53], [0.38, 0.46], [0.45, 0.45], [0.5, 0.53]],
        );
        s.poly(
            FABRIC,
            vec![
                [0.09, 0.79],
                [0.085, 0.6],
                [0.11, 0.52],
                [0.2, 0.545],
                [0.32, 0.57],
                [0.4, 0.5],
                [0.55, 0.56],
                [0.72, 0.63],
                [0.85, 0.7],
                [0.92, 0.76],
                [0.92, 0.79],
            ],
        );
        s.ellipse4(LINING, [0.24, 0.545], 0.12, 0.012, 0.02);
    }
    // Heel tab, toe cap, lace row.
    let ht = if high { 0.34 } else { 0.56 };
    s.poly(
        DARK,
        vec![[0.082, ht], [0.12, ht], [0.125, 0.7], [0.086, 0.7]],
    );
    s.poly(
        SOLE,
        vec![
            [0.8, 0.79],
            [0.82, 0.7],
            [0.88, 0.73],
            [0.93, 0.77],
            [0.93, 0.79],
        ],
    );
    let (l0, l1) = if high {
        ([0.36, 0.37], [0.7, 0.64])
    } else {
        ([0.44, 0.53], [0.7, 0.64])
    };
    let d = norm(l1[0] - l0[0], l1[1] - l0[1]);
    let nrm = [d[1], -d[0]];
    s.line(
        SEAM,
        [l0[0] - nrm[0] * 0.03, l0[1] - nrm[1] * 0.03],
        [l1[0] - nrm[0] * 0.03, l1[1] - nrm[1] * 0.03],
        0.008,
    );
    let n = if high { 7 } else { 4 };
    for k in 0..n {
        let c = lerp(l0, l1, k as f32 / (n - 1) as f32);
        s.line(
            LACE,
            [c[0] - nrm[0] * 0.035, c[1] - nrm[1] * 0.035],
            [c[0] + nrm[0] * 0.01, c[1] + nrm[1] * 0.01],
            0.014,
        );
    }
    s.poly(
        SOLE,
        vec![
            [0.07, 0.78],
            [0.88, 0.78],
            [0.94, 0.8],
            [0.955, 0.84],
            [0.935, 0.88],
            [0.1, 0.88],
            [0.065, 0.84],
        ],
    );
    s.rect(SOLE_DARK, 0.075, 0.845, 0.945, 0.855);
}

pub(super) static BOOTS: Def = Def {
    category: "SHOES",
    subcategory: "BOOTS",
    colors: &Color::ALL,
    pattern_weights: [8, 2, 2, 2, 2],
    text: TextSpec {
        nouns: &["boots"],
        fabrics: &["leather", "suede", "calfskin", "grained leather"],
        axes: &[
            &[
                o("ankle", &["ankle"], &["Ankle-height shaft."]),
                o("knee-high", &["knee-high", "tall"], &["Knee-high shaft."]),
            ],
            &[
                o("flat", &["flat"], &["Flat rubber sole."]),
                o(
                    "block-heel",
                    &["block-heel", "heeled"],
                    &["Stacked block heel.", "Block heel."],
                ),
            ],
        ],
        details: &["Round toe."],
        fillers: BOOT_FILLERS,
    },
    draw: draw_boots,
};

fn draw_boots(s: &mut Shapes, [v0, v1]: [u8; 2]) {
    let knee = v0 == 1;
    let heel = v1 == 1;
    let top_y = if knee { 0.02 } else { 0.42 };
    let (bx, fx) = if knee { (0.14, 0.44) } else { (0.17, 0.41) };
    let back_bottom = if heel { 0.8 } else { 0.9 };
    s.poly(
        FABRIC,
        vec![
            [0.16, back_bottom],
            [0.18, 0.66],
            [bx, top_y],
            [fx, top_y],
            [0.4, 0.6],
            [0.48, 0.7],
            [0.7, 0.76],
            [0.86, 0.81],
            [0.93, 0.87],
            [0.93, 0.91],
            [0.5, 0.91],
        ],
    );
    s.ellipse4(
        LINING,
        [(bx + fx) * 0.5, top_y],
        (fx - bx) * 0.5,
        0.012,
        0.016,
    );
    if knee {
        s.line(METAL, [0.4, top_y + 0.04], [0.39, 0.6], 0.008);
    } else {
        s.poly(DARK, vec![[0.26, top_y], [0.34, top_y], [0.3, 0.62]]);
        s.rect(FABRIC, 0.16, top_y - 0.05, 0.19, top_y + 0.03);
    }
    if heel {
        s.poly(
            SOLE_DARK,
            vec![[0.15, 0.8], [0.31, 0.8], [0.29, 0.95], [0.18, 0.95]],
        );
        s.poly(
            SOLE_DARK,
            vec![
                [0.48, 0.905],
                [0.9, 0.905],
                [0.945, 0.915],
                [0.93, 0.95],
                [0.5, 0.95],
            ],
        );
    } else {
        s.poly(
            SOLE_DARK,
            vec![
                [0.15, 0.9],
                [0.9, 0.905],
                [0.945, 0.915],
                [0.93, 0.95],
                [0.15, 0.95],
            ],
        );
    }
}
