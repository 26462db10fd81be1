//! Outerwear: jackets and coats, drawn on the flat-lay top of `tops`.

use super::Def;
use super::tops::{Sleeve, Top, buttons, shirt_collar};
use crate::sources::synthetic::attributes::Color;
use crate::sources::synthetic::shapes::{DARK, FABRIC, LACE, METAL, PI, RIB, SEAM, Shapes};
use crate::sources::synthetic::text::{TextSpec, o};

const OUTER_FILLERS: &[&[&str]] = &[
    &["Fully lined.", "Unlined."],
    &["Welt pocket at interior.", "Patch pocket at interior."],
    &["Tonal stitching."],
    &["Water-repellent finish.", "Padded."],
    &["Made in Italy.", "Made in Canada."],
];

pub(super) static JACKET: Def = Def {
    category: "JACKETS & COATS",
    subcategory: "JACKETS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["jacket"],
        fabrics: &[
            "nylon",
            "cotton canvas",
            "technical twill",
            "wool-blend",
            "denim",
        ],
        axes: &[&[
            o(
                "bomber",
                &["bomber"],
                &[
                    "Rib knit collar, cuffs and hem with zip closure at front.",
                    "Bomber style with rib knit trim and zip closure.",
                ],
            ),
            o(
                "hooded",
                &["hooded"],
                &[
                    "Drawstring hood and zip closure at front.",
                    "Hooded with drawstrings.",
                ],
            ),
            o(
                "collared",
                &["collared", "button-up"],
                &[
                    "Spread collar and button closure at front.",
                    "Spread collar, button closure and flap pockets at chest.",
                ],
            ),
        ]],
        details: &["Long sleeves."],
        fillers: OUTER_FILLERS,
    },
    draw: draw_jacket,
};

fn draw_jacket(s: &mut Shapes, [v0, _]: [u8; 2]) {
    let mut top = Top {
        sy: 0.14,
        nw: 0.075,
        shw: 0.22,
        aw: 0.205,
        ay: 0.37,
        hw: 0.21,
        hy: 0.78,
        sleeve: Sleeve::Long,
        long_len: 0.55,
        cuff: Some(RIB),
        hem_band: Some(RIB),
    };
    match v0 {
        0 => {
            top.draw(s);
            s.ellipse4(RIB, [0.5, top.sy], top.nw + 0.02, 0.04, 0.03);
            s.ellipse4(DARK, [0.5, top.sy], top.nw, 0.022, 0.014);
            s.line(METAL, [0.5, top.sy + 0.03], [0.5, top.hy], 0.01);
            s.rect(METAL, 0.492, top.sy + 0.03, 0.508, top.sy + 0.07);
        }
        1 => {
            top.cuff = None;
            top.hem_band = Some(FABRIC);
            s.ellipse4(FABRIC, [0.5, top.sy + 0.01], 0.14, 0.12, 0.06);
            top.draw(s);
            s.ellipse4(FABRIC, [0.5, top.sy + 0.01], 0.1, 0.09, 0.07);
            s.ellipse4(DARK, [0.5, top.sy + 0.01], 0.075, 0.065, 0.05);
            s.line(METAL, [0.5, top.sy + 0.08], [0.5, top.hy], 0.01);
            s.line(LACE, [0.465, top.sy + 0.06], [0.46, top.sy + 0.2], 0.008);
            s.line(LACE, [0.535, top.sy + 0.06], [0.54, top.sy + 0.2], 0.008);
            s.line(SEAM, [0.36, 0.56], [0.33, 0.68], 0.007);
            s.line(SEAM, [0.64, 0.56], [0.67, 0.68], 0.007);
        }
        _ => {
            top.cuff = Some(FABRIC);
            top.hem_band = Some(FABRIC);
            top.draw(s);
            s.line(SEAM, [0.5, top.sy + 0.06], [0.5, top.hy], 0.006);
            shirt_collar(s, top.sy, top.nw, 1.4);
            s.sym(
                FABRIC,
                &[[0.33, 0.3], [0.43, 0.3], [0.43, 0.42], [0.33, 0.42]],
            );
            s.sym(
                FABRIC,
                &[[0.325, 0.29], [0.435, 0.29], [0.435, 0.33], [0.325, 0.33]],
            );
            buttons(s, 0.5, top.sy + 0.12, top.hy - 0.08, 5, 0.013);
        }
    }
}

pub(super) static COAT: Def = Def {
    category: "JACKETS & COATS",
    subcategory: "COATS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["coat", "overcoat"],
        fabrics: &[
            "wool",
            "virgin wool",
            "wool-cashmere",
            "cotton gabardine",
            "felted wool",
        ],
        axes: &[
            &[
                o(
                    "single-breasted",
                    &["single-breasted"],
                    &["Single-breasted button closure."],
                ),
                o(
                    "double-breasted",
                    &["double-breasted"],
                    &["Double-breasted button closure."],
                ),
            ],
            &[
                o("unbelted", &[], &[]),
                o(
                    "belted",
                    &["belted"],
                    &["Buckled belt at waist.", "Detachable belt at waist."],
                ),
            ],
        ],
        details: &["Notched lapel.", "Flap pockets at waist.", "Long sleeves."],
        fillers: OUTER_FILLERS,
    },
    draw: draw_coat,
};

fn draw_coat(s: &mut Shapes, [v0, v1]: [u8; 2]) {
    let top = Top {
        sy: 0.08,
        nw: 0.07,
        shw: 0.21,
        aw: 0.195,
        ay: 0.3,
        hw: 0.235,
        hy: 0.97,
        sleeve: Sleeve::Long,
        long_len: 0.6,
        cuff: None,
        hem_band: None,
    };
    top.draw(s);
    let sy = top.sy;
    let nw = top.nw;
    let vb = sy + 0.27;
    let mut v = Shapes::arc_points([0.5, sy], nw, 0.012, PI, 2.0 * PI, 8);
    v.push([0.5, vb]);
    s.poly(DARK, v);
    let double = v0 == 1;
    let front_x = if double { 0.6 } else { 0.5 };
    s.polyline(
        SEAM,
        &[[0.5, vb], [front_x, vb + 0.04], [front_x, top.hy - 0.003]],
        0.006,
    );
    s.sym(
        FABRIC,
        &[
            [0.5 - nw - 0.012, sy - 0.012],
            [0.5 - 0.01, vb + 0.005],
            [0.5 - 0.135, sy + 0.13],
            [0.5 - 0.115, sy + 0.1],
            [0.5 - 0.13, sy + 0.07],
        ],
    );
    if double {
        buttons(s, 0.44, vb + 0.06, vb + 0.3, 3, 0.013);
        buttons(s, 0.56, vb + 0.06, vb + 0.3, 3, 0.013);
    } else {
        buttons(s, 0.5, vb + 0.05, vb + 0.35, 4, 0.013);
    }
    s.line(SEAM, [0.29, 0.7], [0.4, 0.7], 0.008);
    s.line(SEAM, [0.6, 0.7], [0.71, 0.7], 0.008);
    if v1 == 1 {
        let (y0, y1) = (0.46, 0.5);
        let w0 = top.half_width_at(y0) + 0.006;
        let w1 = top.half_width_at(y1) + 0.006;
        s.poly(
            DARK,
            vec![
                [0.5 - w0, y0],
                [0.5 + w0, y0],
                [0.5 + w1, y1],
                [0.5 - w1, y1],
            ],
        );
        s.rect(METAL, 0.47, y0 - 0.01, 0.53, y1 + 0.01);
        s.rect(DARK, 0.48, y0 - 0.001, 0.52, y1 + 0.001);
        s.poly(
            DARK,
            vec![
                [0.53, y0 + 0.01],
                [0.56, y0 + 0.01],
                [0.585, y1 + 0.1],
                [0.555, y1 + 0.1],
            ],
        );
    }
}
