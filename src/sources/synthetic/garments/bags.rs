//! Bags: tote bags and backpacks.

use super::Def;
use crate::sources::synthetic::attributes::Color;
use crate::sources::synthetic::shapes::{DARK, FABRIC, METAL, PI, Shapes, mirror};
use crate::sources::synthetic::text::{TextSpec, o};

const BAG_FILLERS: &[&[&str]] = &[
    &["Unlined.", "Twill lining.", "Leather lining."],
    &["Tonal stitching."],
    &["Silver-tone hardware.", "Gold-tone hardware."],
    &["Logo stamp at interior."],
];

pub(super) static TOTE: Def = Def {
    category: "BAGS",
    subcategory: "TOTE BAGS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["tote bag", "tote"],
        fabrics: &["canvas", "leather", "grained leather", "nylon"],
        axes: &[
            &[
                o("short-handle", &["short-handle"], &["Twin top handles."]),
                o(
                    "long-handle",
                    &["long-handle", "shoulder"],
                    &["Twin shoulder straps."],
                ),
            ],
            &[
                o("plain", &[], &[]),
                o(
                    "front-pocket",
                    &[],
                    &["Zip pocket at front.", "Zippered patch pocket at front."],
                ),
            ],
        ],
        details: &["Open top."],
        fillers: BAG_FILLERS,
    },
    draw: draw_tote_bag,
};

fn draw_tote_bag(s: &mut Shapes, [v0, v1]: [u8; 2]) {
    let (rx, ry) = if v0 == 0 { (0.15, 0.2) } else { (0.19, 0.46) };
    s.arc(DARK, [0.5, 0.4], [rx + 0.02, ry], [PI, 2.0 * PI], 0.03);
    s.poly(
        FABRIC,
        vec![[0.2, 0.38], [0.8, 0.38], [0.84, 0.92], [0.16, 0.92]],
    );
    s.poly(
        FABRIC,
        vec![[0.2, 0.38], [0.8, 0.38], [0.803, 0.42], [0.197, 0.42]],
    );
    s.arc(FABRIC, [0.5, 0.45], [rx, ry + 0.05], [PI, 2.0 * PI], 0.035);
    if v1 == 1 {
        s.rect(FABRIC, 0.3, 0.56, 0.7, 0.82);
        s.line(METAL, [0.32, 0.585], [0.68, 0.585], 0.009);
    }
}

pub(super) static BACKPACK: Def = Def {
    category: "BAGS",
    subcategory: "BACKPACKS",
    colors: &Color::ALL,
    pattern_weights: [6, 3, 3, 3, 3],
    text: TextSpec {
        nouns: &["backpack"],
        fabrics: &["nylon", "canvas", "ripstop nylon", "leather"],
        axes: &[&[
            o(
                "zip-pocket",
                &[],
                &[
                    "Zip closure at top and zip pocket at front.",
                    "Zippered front pocket.",
                ],
            ),
            o("flap-top", &["flap-top"], &["Buckled flap at top."]),
        ]],
        details: &["Carry handle at top.", "Adjustable shoulder straps."],
        fillers: BAG_FILLERS,
    },
    draw: draw_backpack,
};

fn draw_backpack(s: &mut Shapes, [v0, _]: [u8; 2]) {
    s.polyline(
        DARK,
        &[[0.3, 0.2], [0.2, 0.3], [0.165, 0.5], [0.19, 0.86]],
        0.05,
    );
    s.polyline(
        DARK,
        &[
            mirror([0.3, 0.2]),
            mirror([0.2, 0.3]),
            mirror([0.165, 0.5]),
            mirror([0.19, 0.86]),
        ],
        0.05,
    );
    s.arc(DARK, [0.5, 0.155], [0.06, 0.06], [PI, 2.0 * PI], 0.02);
    s.poly(
        FABRIC,
        Shapes::round_rect_points(0.22, 0.15, 0.78, 0.93, 0.16, 0.06),
    );
    if v0 == 0 {
        s.arc(
            METAL,
            [0.5, 0.33],
            [0.23, 0.14],
            [PI * 1.08, PI * 1.92],
            0.009,
        );
        s.poly(
            FABRIC,
            Shapes::round_rect_points(0.3, 0.55, 0.7, 0.87, 0.05, 0.05),
        );
        s.arc(
            METAL,
            [0.5, 0.64],
            [0.17, 0.055],
            [PI * 1.05, PI * 1.95],
            0.009,
        );
    } else {
        let mut flap = Shapes::arc_points([0.38, 0.31], 0.165, 0.165, PI, 1.5 * PI, 6);
        flap.extend(Shapes::arc_points(
            [0.62, 0.31],
            0.165,
            0.165,
            1.5 * PI,
            2.0 * PI,
            6,
        ));
        flap.extend(Shapes::arc_points([0.5, 0.45], 0.285, 0.08, 0.0, PI, 12));
        s.poly(FABRIC, flap);
        for x in [0.37, 0.59] {
            s.rect(DARK, x, 0.45, x + 0.04, 0.66);
            s.rect(METAL, x - 0.006, 0.5, x + 0.046, 0.535);
        }
    }
}
