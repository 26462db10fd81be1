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

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

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

/// Named colours. They are chosen to be visually distinct.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Color {
    Black,
    White,
    Navy,
    Blue,
    Red,
    Green,
    Yellow,
    Beige,
    Grey,
    Pink,
    Brown,
}

impl Color {
    pub const ALL: [Color; 11] = [
        Color::Black,
        Color::White,
        Color::Navy,
        Color::Blue,
        Color::Red,
        Color::Green,
        Color::Yellow,
        Color::Beige,
        Color::Grey,
        Color::Pink,
        Color::Brown,
    ];

    /// Lower-case name as used in the text.
    pub fn name(self) -> &'static str {
        match self {
            Color::Black => "black",
            Color::White => "white",
            Color::Navy => "navy",
            Color::Blue => "blue",
            Color::Red => "red",
            Color::Green => "green",
            Color::Yellow => "yellow",
            Color::Beige => "beige",
            Color::Grey => "grey",
            Color::Pink => "pink",
            Color::Brown => "brown",
        }
    }

    /// Nominal sRGB value (a product may add a small tint to it).
    pub fn rgb(self) -> [u8; 3] {
        match self {
            Color::Black => [30, 30, 33],
            Color::White => [247, 247, 245],
            Color::Navy => [30, 42, 92],
            Color::Blue => [62, 112, 192],
            Color::Red => [196, 34, 40],
            Color::Green => [38, 124, 64],
            Color::Yellow => [240, 200, 46],
            Color::Beige => [214, 192, 152],
            Color::Grey => [132, 132, 134],
            Color::Pink => [240, 150, 184],
            Color::Brown => [112, 72, 42],
        }
    }

    /// Phrasings used in descriptions; each one contains `name()` and no
    /// other colour name.
    fn forms(self) -> &'static [&'static str] {
        match self {
            Color::Black => &["black", "jet black"],
            Color::White => &["white", "bright white", "optic white"],
            Color::Navy => &["navy", "dark navy"],
            Color::Blue => &["blue", "mid blue", "bright blue"],
            Color::Red => &["red", "bright red"],
            Color::Green => &["green", "forest green", "bottle green"],
            Color::Yellow => &["yellow", "sunflower yellow"],
            Color::Beige => &["beige", "sand beige"],
            Color::Grey => &["grey", "heather grey", "mid grey"],
            Color::Pink => &["pink", "light pink", "rose pink"],
            Color::Brown => &["brown", "chocolate brown", "dark brown"],
        }
    }

    fn distance(self, other: Color) -> f32 {
        let (a, b) = (self.rgb(), other.rgb());
        let mut d = 0.0f32;
        for k in 0..3 {
            let x = a[k] as f32 - b[k] as f32;
            d += x * x;
        }
        d.sqrt()
    }
}

/// Surface pattern of the garment. Non-solid patterns use the second colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pattern {
    Solid,
    VerticalStripes,
    HorizontalStripes,
    Checks,
    Dots,
}

impl Pattern {
    pub const ALL: [Pattern; 5] = [
        Pattern::Solid,
        Pattern::VerticalStripes,
        Pattern::HorizontalStripes,
        Pattern::Checks,
        Pattern::Dots,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Pattern::Solid => "solid",
            Pattern::VerticalStripes => "vertical stripes",
            Pattern::HorizontalStripes => "horizontal stripes",
            Pattern::Checks => "checks",
            Pattern::Dots => "polka dots",
        }
    }
}

/// The 15 subcategories. The enum order is the round-robin order of
/// [`products`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Garment {
    TShirt,
    Shirt,
    Sweater,
    TankTop,
    Jeans,
    Trousers,
    Shorts,
    Skirt,
    Dress,
    Jacket,
    Coat,
    Sneakers,
    Boots,
    ToteBag,
    Backpack,
}

impl Garment {
    pub const ALL: [Garment; 15] = [
        Garment::TShirt,
        Garment::Shirt,
        Garment::Sweater,
        Garment::TankTop,
        Garment::Jeans,
        Garment::Trousers,
        Garment::Shorts,
        Garment::Skirt,
        Garment::Dress,
        Garment::Jacket,
        Garment::Coat,
        Garment::Sneakers,
        Garment::Boots,
        Garment::ToteBag,
        Garment::Backpack,
    ];

    pub fn category(self) -> &'static str {
        match self {
            Garment::TShirt | Garment::Shirt | Garment::Sweater | Garment::TankTop => "TOPS",
            Garment::Jeans | Garment::Trousers | Garment::Shorts => "PANTS",
            Garment::Skirt => "SKIRTS",
            Garment::Dress => "DRESSES",
            Garment::Jacket | Garment::Coat => "JACKETS & COATS",
            Garment::Sneakers | Garment::Boots => "SHOES",
            Garment::ToteBag | Garment::Backpack => "BAGS",
        }
    }

    pub fn subcategory(self) -> &'static str {
        match self {
            Garment::TShirt => "T-SHIRTS",
            Garment::Shirt => "SHIRTS",
            Garment::Sweater => "SWEATERS",
            Garment::TankTop => "TANK TOPS",
            Garment::Jeans => "JEANS",
            Garment::Trousers => "TROUSERS",
            Garment::Shorts => "SHORTS",
            Garment::Skirt => "SKIRTS",
            Garment::Dress => "DRESSES",
            Garment::Jacket => "JACKETS",
            Garment::Coat => "COATS",
            Garment::Sneakers => "SNEAKERS",
            Garment::Boots => "BOOTS",
            Garment::ToteBag => "TOTE BAGS",
            Garment::Backpack => "BACKPACKS",
        }
    }

    /// Variant axes: for each axis, the list of option keys
    /// (`Attributes::variants[axis]` indexes into it).
    pub fn variant_axes(self) -> Vec<Vec<&'static str>> {
        text_spec(self)
            .axes
            .iter()
            .map(|ax| ax.iter().map(|o| o.key).collect())
            .collect()
    }

    fn colors(self) -> &'static [Color] {
        match self {
            Garment::Jeans => &[
                Color::Blue,
                Color::Navy,
                Color::Black,
                Color::Grey,
                Color::White,
            ],
            _ => &Color::ALL,
        }
    }

    /// Weights of `Pattern::ALL`.
    fn pattern_weights(self) -> [u32; 5] {
        match self {
            Garment::Jeans => [1, 0, 0, 0, 0],
            Garment::Sneakers | Garment::Boots => [8, 2, 2, 2, 2],
            _ => [6, 3, 3, 3, 3],
        }
    }
}

/// Everything needed to render a product. The semantic fields are stated in
/// the text; the nuisance fields are not.
#[derive(Debug, Clone, PartialEq)]
pub struct Attributes {
    pub garment: Garment,
    /// Main colour (stated).
    pub color: Color,
    /// Pattern (stated).
    pub pattern: Pattern,
    /// Colour of stripes/checks/dots (stated when `pattern != Solid`).
    pub second_color: Color,
    /// Option index per variant axis of the garment (stated), see
    /// [`Garment::variant_axes`]; unused axes are 0.
    pub variants: [u8; 2],
    /// Fabric (stated, not visible).
    pub fabric: &'static str,
    /// Nuisance: background colour.
    pub background: [u8; 3],
    /// Nuisance: small per-channel shift of both garment colours.
    pub tint: [i8; 3],
    /// Nuisance: fraction of the image the garment's larger side fills.
    pub fill: f32,
    /// Nuisance: offset of the garment centre, in image fractions.
    pub offset: [f32; 2],
    /// Nuisance: strength of the horizontal shading falloff.
    pub shading: f32,
    /// Nuisance: stripe/check/dot period in image fractions.
    pub pattern_period: f32,
    /// Nuisance: pattern phase in periods.
    pub pattern_phase: [f32; 2],
    /// Nuisance: optional tiny logo dot, position in fractions of the
    /// garment's bounding box, and its grey level.
    pub logo: Option<([f32; 2], u8)>,
}

impl Attributes {
    /// Keys of the chosen variant options, e.g. `["long-sleeve", "crewneck"]`.
    pub fn variant_labels(&self) -> Vec<&'static str> {
        text_spec(self.garment)
            .axes
            .iter()
            .enumerate()
            .map(|(k, ax)| ax[self.variants[k] as usize].key)
            .collect()
    }
}

// ---------------------------------------------------------------------------
// Text tables
// ---------------------------------------------------------------------------

/// One option of a variant axis.
struct Opt {
    key: &'static str,
    /// Adjectives usable before the noun (title and lead sentence).
    adj: &'static [&'static str],
    /// Stand-alone sentences stating the option.
    sent: &'static [&'static str],
}

struct TextSpec {
    nouns: &'static [&'static str],
    fabrics: &'static [&'static str],
    axes: &'static [&'static [Opt]],
    /// Visible details true for every product of the garment.
    details: &'static [&'static str],
    /// Non-visible filler facts, in groups of mutually exclusive ones.
    fillers: &'static [&'static [&'static str]],
}

const fn o(key: &'static str, adj: &'static [&'static str], sent: &'static [&'static str]) -> Opt {
    Opt { key, adj, sent }
}

const SLEEVE_SHORT: Opt = o(
    "short-sleeve",
    &["short sleeve", "short-sleeve"],
    &["Short sleeves."],
);
const SLEEVE_LONG: Opt = o(
    "long-sleeve",
    &["long sleeve", "long-sleeve"],
    &["Long sleeves."],
);
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

const TOP_FILLERS: &[&[&str]] = &[
    &["Tonal stitching."],
    &["Relaxed fit.", "Regular fit.", "Slim fit."],
    &["Made in Portugal.", "Made in Italy."],
    &["Machine washable.", "Dry clean only."],
];
const PANTS_FILLERS: &[&[&str]] = &[
    &["Tonal stitching."],
    &["Zip fly.", "Button fly."],
    &["Mid-rise.", "High-rise.", "Low-rise."],
    &["Made in Japan.", "Made in Italy."],
];
const DRESS_FILLERS: &[&[&str]] = &[
    &["Fully lined.", "Unlined.", "Partially lined."],
    &[
        "Concealed zip closure at back.",
        "Concealed zip closure at side.",
    ],
    &["Tonal stitching."],
    &["Made in France.", "Made in Italy."],
];
const OUTER_FILLERS: &[&[&str]] = &[
    &["Fully lined.", "Unlined."],
    &["Welt pocket at interior.", "Patch pocket at interior."],
    &["Tonal stitching."],
    &["Water-repellent finish.", "Padded."],
    &["Made in Italy.", "Made in Canada."],
];
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
const BAG_FILLERS: &[&[&str]] = &[
    &["Unlined.", "Twill lining.", "Leather lining."],
    &["Tonal stitching."],
    &["Silver-tone hardware.", "Gold-tone hardware."],
    &["Logo stamp at interior."],
];

static TSHIRT: TextSpec = TextSpec {
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
};

static SHIRT: TextSpec = TextSpec {
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
};

static SWEATER: TextSpec = TextSpec {
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
};

static TANK: TextSpec = TextSpec {
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
};

static JEANS: TextSpec = TextSpec {
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
};

static TROUSERS: TextSpec = TextSpec {
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
};

static SHORTS: TextSpec = TextSpec {
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
};

static SKIRT: TextSpec = TextSpec {
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
};

static DRESS: TextSpec = TextSpec {
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
};

static JACKET: TextSpec = TextSpec {
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
};

static COAT: TextSpec = TextSpec {
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
};

static SNEAKERS: TextSpec = TextSpec {
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
};

static BOOTS: TextSpec = TextSpec {
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
};

static TOTE: TextSpec = TextSpec {
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
};

static BACKPACK: TextSpec = TextSpec {
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
};

fn text_spec(g: Garment) -> &'static TextSpec {
    match g {
        Garment::TShirt => &TSHIRT,
        Garment::Shirt => &SHIRT,
        Garment::Sweater => &SWEATER,
        Garment::TankTop => &TANK,
        Garment::Jeans => &JEANS,
        Garment::Trousers => &TROUSERS,
        Garment::Shorts => &SHORTS,
        Garment::Skirt => &SKIRT,
        Garment::Dress => &DRESS,
        Garment::Jacket => &JACKET,
        Garment::Coat => &COAT,
        Garment::Sneakers => &SNEAKERS,
        Garment::Boots => &BOOTS,
        Garment::ToteBag => &TOTE,
        Garment::Backpack => &BACKPACK,
    }
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, xs: &'a [T]) -> &'a T {
    &xs[rng.random_range(0..xs.len())]
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_uppercase().collect::<String>() + c.as_str(),
        None => String::new(),
    }
}

fn join_words(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Clause appended to the lead sentence, e.g. "featuring white vertical stripes".
fn pattern_clause(p: Pattern, c2: &str, rng: &mut ChaCha8Rng) -> String {
    let k = rng.random_range(0..3);
    match p {
        Pattern::Solid => String::new(),
        Pattern::VerticalStripes => match k {
            0 => format!("with vertical {c2} stripes"),
            1 => format!("featuring {c2} vertical stripes"),
            _ => format!("with vertical stripes in {c2}"),
        },
        Pattern::HorizontalStripes => match k {
            0 => format!("with horizontal {c2} stripes"),
            1 => format!("featuring {c2} horizontal stripes"),
            _ => format!("with horizontal stripes in {c2}"),
        },
        Pattern::Checks => match k {
            0 => format!("with a {c2} check pattern"),
            1 => format!("featuring {c2} gingham checks"),
            _ => format!("with {c2} plaid checks"),
        },
        Pattern::Dots => match k {
            0 => format!("with {c2} polka dots"),
            1 => format!("featuring a {c2} polka-dot print"),
            _ => format!("with a {c2} dot print"),
        },
    }
}

/// Stand-alone sentence stating the pattern.
fn pattern_sentence(p: Pattern, c2: &str, rng: &mut ChaCha8Rng) -> String {
    let first = rng.random_bool(0.5);
    match (p, first) {
        (Pattern::Solid, _) => String::new(),
        (Pattern::VerticalStripes, true) => format!("Vertical stripes in {c2} throughout."),
        (Pattern::VerticalStripes, false) => {
            format!("{} vertical stripes throughout.", capitalize(c2))
        }
        (Pattern::HorizontalStripes, true) => format!("Horizontal stripes in {c2} throughout."),
        (Pattern::HorizontalStripes, false) => {
            format!("{} horizontal stripes throughout.", capitalize(c2))
        }
        (Pattern::Checks, true) => format!("{} check pattern throughout.", capitalize(c2)),
        (Pattern::Checks, false) => format!("Gingham checks in {c2}."),
        (Pattern::Dots, true) => format!("{} polka dots throughout.", capitalize(c2)),
        (Pattern::Dots, false) => format!("Dot print in {c2}."),
    }
}

/// Adjective used in titles.
fn pattern_title_adj(p: Pattern, rng: &mut ChaCha8Rng) -> &'static str {
    let forms: &[&'static str] = match p {
        Pattern::Solid => return "",
        Pattern::VerticalStripes => &["striped", "pinstriped", "vertical-stripe"],
        Pattern::HorizontalStripes => &["striped", "horizontal-stripe"],
        Pattern::Checks => &["checked", "plaid", "gingham"],
        Pattern::Dots => &["polka-dot", "dotted"],
    };
    forms[rng.random_range(0..forms.len())]
}

/// Title and description for the attributes.
fn describe(a: &Attributes, rng: &mut ChaCha8Rng) -> (String, String) {
    let spec = text_spec(a.garment);
    let noun = *pick(rng, spec.nouns);
    let fabric = a.fabric;
    let c1 = *pick(rng, a.color.forms());
    let c2 = *pick(rng, a.second_color.forms());
    let opts: Vec<&Opt> = spec
        .axes
        .iter()
        .enumerate()
        .map(|(k, ax)| &ax[a.variants[k] as usize])
        .collect();

    // Which options go into the lead sentence as adjectives, which get their
    // own sentence.
    let mut lead_adj: Vec<&str> = Vec::new();
    let mut later: Vec<String> = Vec::new();
    for opt in &opts {
        if opt.adj.is_empty() {
            if !opt.sent.is_empty() {
                later.push(pick(rng, opt.sent).to_string());
            }
        } else if opt.sent.is_empty() || rng.random_bool(0.6) {
            lead_adj.push(*pick(rng, opt.adj));
        } else {
            later.push(pick(rng, opt.sent).to_string());
        }
    }
    let patterned = a.pattern != Pattern::Solid;
    let pat_in_lead = !patterned || rng.random_bool(0.75);
    let pat = if patterned && pat_in_lead {
        format!(" {}", pattern_clause(a.pattern, c2, rng))
    } else {
        String::new()
    };
    let adjs = lead_adj.join(" ");
    let lead = match rng.random_range(0..3) {
        0 => format!("{} in {c1}{pat}.", join_words(&[&adjs, fabric, noun])),
        1 => {
            let color = if !c1.contains(' ') && rng.random_bool(0.3) {
                format!("{c1}-toned")
            } else {
                c1.to_string()
            };
            format!("{}{pat}.", join_words(&[&color, &adjs, fabric, noun]))
        }
        _ => format!("{} in {c1} {fabric}{pat}.", join_words(&[&adjs, noun])),
    };
    let mut sentences = vec![capitalize(&lead)];
    if patterned && !pat_in_lead {
        sentences.push(pattern_sentence(a.pattern, c2, rng));
    }
    sentences.extend(later);

    // Up to 4 sentences in all: fill with details (visible) and fillers.
    let room = 4usize.saturating_sub(sentences.len()).min(3);
    let extra = rng.random_range(0..=room);
    let n_pool = spec.details.len() + spec.fillers.len();
    let mut chosen: Vec<usize> = Vec::new();
    while chosen.len() < extra.min(n_pool) {
        let i = rng.random_range(0..n_pool);
        if !chosen.contains(&i) {
            chosen.push(i);
        }
    }
    chosen.sort_unstable();
    for i in chosen {
        let sentence = match i.checked_sub(spec.details.len()) {
            None => spec.details[i],
            Some(f) => *pick(rng, spec.fillers[f]),
        };
        sentences.push(sentence.to_string());
    }
    let description = sentences.join(" ");

    // Title.
    let color = a.color.name();
    let pat_adj = pattern_title_adj(a.pattern, rng);
    let mut title_adjs: Vec<&str> = Vec::new();
    for opt in &opts {
        if !opt.adj.is_empty() && rng.random_bool(0.55) {
            title_adjs.push(*pick(rng, opt.adj));
        }
    }
    if title_adjs.is_empty() && !patterned {
        let with_adj: Vec<&&Opt> = opts.iter().filter(|o| !o.adj.is_empty()).collect();
        if !with_adj.is_empty() {
            let opt = *pick(rng, &with_adj);
            title_adjs.push(*pick(rng, opt.adj));
        }
    }
    let title_adjs = title_adjs.join(" ");
    let title = match rng.random_range(0..3) {
        0 => join_words(&[color, pat_adj, &title_adjs, noun]),
        1 if patterned => {
            let both = format!("{color} & {}", a.second_color.name());
            join_words(&[&both, pat_adj, noun])
        }
        1 => join_words(&[color, &title_adjs, fabric, noun]),
        _ => join_words(&[color, pat_adj, fabric, noun]),
    };
    (capitalize(&title), description)
}

// ---------------------------------------------------------------------------
// Product generation
// ---------------------------------------------------------------------------

fn product_rng(seed: u64, index: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(index as u64);
    rng
}

fn make_product(cfg: &SynthConfig, index: usize) -> (SynthProduct, f64) {
    let mut rng = product_rng(cfg.seed, index);
    let split_draw: f64 = rng.random();
    let garment = Garment::ALL[index % Garment::ALL.len()];
    let spec = text_spec(garment);

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
    let (title, description) = describe(&attributes, &mut rng);
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

// ---------------------------------------------------------------------------
// Geometry
// ---------------------------------------------------------------------------

type P = [f32; 2];

// Materials.
const BG: u8 = 0;
const FABRIC: u8 = 1;
const DARK: u8 = 2;
const RIB: u8 = 3;
const SEAM: u8 = 4;
const BUTTON: u8 = 5;
const METAL: u8 = 6;
const SOLE: u8 = 7;
const SOLE_DARK: u8 = 8;
const LACE: u8 = 9;
const STITCH: u8 = 10;
const RIP: u8 = 11;
const LINING: u8 = 12;
const LOGO: u8 = 13;

const PI: f32 = std::f32::consts::PI;

/// Deterministic sine and cosine (pure arithmetic, no libm).
fn sin_cos(a: f32) -> (f32, f32) {
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

fn mirror(p: P) -> P {
    [1.0 - p[0], p[1]]
}

fn lerp(a: P, b: P, t: f32) -> P {
    [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t]
}

fn norm(x: f32, y: f32) -> P {
    let l = (x * x + y * y).sqrt();
    [x / l, y / l]
}

/// Polygons in garment coordinates (unit square, y down), each with a part
/// id; `mats[id]` is the part's material. Boundaries between parts are
/// outlined when rendering.
struct Shapes {
    prims: Vec<(Prim, u8)>,
    mats: Vec<u8>,
}

/// A filled polygon, or a straight line of a given width (at least about a
/// pixel wide whatever the image size).
enum Prim {
    Poly(Vec<P>),
    Line(P, P, f32),
}

impl Shapes {
    fn new() -> Self {
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

    fn poly(&mut self, mat: u8, pts: Vec<P>) {
        let id = self.id(mat);
        self.prims.push((Prim::Poly(pts), id));
    }

    /// The polygon and its mirror image about x = 0.5.
    fn sym(&mut self, mat: u8, pts: &[P]) {
        self.poly(mat, pts.to_vec());
        self.poly(mat, pts.iter().rev().map(|&p| mirror(p)).collect());
    }

    fn rect(&mut self, mat: u8, x0: f32, y0: f32, x1: f32, y1: f32) {
        self.poly(mat, vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]);
    }

    /// Ellipse with different radii above (`up`) and below (`down`) its centre.
    fn ellipse4(&mut self, mat: u8, c: P, rx: f32, up: f32, down: f32) {
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

    fn circle(&mut self, mat: u8, c: P, r: f32) {
        self.ellipse4(mat, c, r, r, r);
    }

    fn line(&mut self, mat: u8, a: P, b: P, w: f32) {
        let id = self.id(mat);
        self.line_id(id, a, b, w);
    }

    fn line_id(&mut self, id: u8, a: P, b: P, w: f32) {
        self.prims.push((Prim::Line(a, b, w), id));
    }

    /// Bounding box `[x0, y0, x1, y1]` of all primitives.
    fn bbox(&self) -> [f32; 4] {
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
fn line_quad(a: P, b: P, w: f32) -> [P; 4] {
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
    fn polyline(&mut self, mat: u8, pts: &[P], w: f32) {
        let id = self.id(mat);
        for s in pts.windows(2) {
            self.line_id(id, s[0], s[1], w);
        }
    }

    /// Thick elliptical arc from angle a0 to a1 (radians, y down).
    fn arc(&mut self, mat: u8, c: P, r: P, [a0, a1]: [f32; 2], w: f32) {
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

    fn arc_points(c: P, rx: f32, ry: f32, a0: f32, a1: f32, n: usize) -> Vec<P> {
        (0..=n)
            .map(|k| {
                let (s, co) = sin_cos(a0 + (a1 - a0) * k as f32 / n as f32);
                [c[0] + rx * co, c[1] + ry * s]
            })
            .collect()
    }

    /// Rectangle with top corner radius `rt` and bottom corner radius `rb`.
    fn round_rect_points(x0: f32, y0: f32, x1: f32, y1: f32, rt: f32, rb: f32) -> Vec<P> {
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

#[derive(Clone, Copy, PartialEq)]
enum Sleeve {
    None,
    Short,
    Long,
}

/// Flat-lay top: body, sleeves, optional cuffs and hem band.
struct Top {
    sy: f32,
    nw: f32,
    shw: f32,
    aw: f32,
    ay: f32,
    hw: f32,
    hy: f32,
    sleeve: Sleeve,
    long_len: f32,
    cuff: Option<u8>,
    hem_band: Option<u8>,
}

impl Top {
    fn draw(&self, s: &mut Shapes) {
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
    fn half_width_at(&self, y: f32) -> f32 {
        let t = ((y - self.ay) / (self.hy - self.ay)).clamp(0.0, 1.0);
        self.aw + (self.hw - self.aw) * t
    }
}

fn neck_crew(s: &mut Shapes, sy: f32, nw: f32, band: Option<u8>) {
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

fn shirt_collar(s: &mut Shapes, sy: f32, nw: f32, big: f32) {
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

fn buttons(s: &mut Shapes, x: f32, y0: f32, y1: f32, n: usize, r: f32) {
    for k in 0..n {
        let t = if n == 1 {
            0.5
        } else {
            k as f32 / (n - 1) as f32
        };
        s.circle(BUTTON, [x, y0 + (y1 - y0) * t], r);
    }
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

/// Builds the part polygons of a product in garment coordinates.
fn build(a: &Attributes) -> Shapes {
    let mut s = Shapes::new();
    let v0 = a.variants[0];
    let v1 = a.variants[1];
    match a.garment {
        Garment::TShirt => {
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
            top.draw(&mut s);
            if v1 == 0 {
                neck_crew(&mut s, top.sy, top.nw, Some(RIB));
            } else {
                neck_v(&mut s, top.sy, top.nw, 0.13, RIB);
            }
        }
        Garment::Shirt => {
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
            top.draw(&mut s);
            s.rect(FABRIC, 0.487, top.sy + 0.04, 0.513, top.hy);
            shirt_collar(&mut s, top.sy, top.nw, 1.0);
            buttons(&mut s, 0.5, top.sy + 0.12, top.hy - 0.07, 6, 0.01);
        }
        Garment::Sweater => {
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
            top.draw(&mut s);
            match v0 {
                0 => neck_crew(&mut s, top.sy, top.nw, Some(RIB)),
                1 => neck_v(&mut s, top.sy, top.nw, 0.16, RIB),
                _ => neck_turtle(&mut s, top.sy, top.nw),
            }
        }
        Garment::TankTop => {
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
        Garment::Jeans => {
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
            p.draw(&mut s);
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
        Garment::Trousers => {
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
            p.draw(&mut s);
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
        Garment::Shorts => {
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
            p.draw(&mut s);
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
            p.cuffs(&mut s, 0.05);
        }
        Garment::Skirt => {
            let (hem, hw) = match v0 {
                0 => (0.45, 0.27),
                1 => (0.72, 0.31),
                _ => (0.95, 0.35),
            };
            s.rect(FABRIC, 0.33, 0.05, 0.67, 0.1);
            skirt_shape(&mut s, 0.1, 0.17, hem, hw, v1 == 1);
        }
        Garment::Dress => {
            let (hem, hw) = match v0 {
                0 => (0.58, 0.25),
                1 => (0.78, 0.29),
                _ => (0.97, 0.33),
            };
            let waist = 0.34;
            skirt_shape(&mut s, waist + 0.02, 0.145, hem, hw, false);
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
                .draw(&mut s);
            }
            neck_crew(&mut s, 0.07, 0.07, None);
            s.rect(FABRIC, 0.5 - 0.142, waist, 0.5 + 0.142, waist + 0.024);
        }
        Garment::Jacket => {
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
                    top.draw(&mut s);
                    s.ellipse4(RIB, [0.5, top.sy], top.nw + 0.02, 0.04, 0.03);
                    s.ellipse4(DARK, [0.5, top.sy], top.nw, 0.022, 0.014);
                    s.line(METAL, [0.5, top.sy + 0.03], [0.5, top.hy], 0.01);
                    s.rect(METAL, 0.492, top.sy + 0.03, 0.508, top.sy + 0.07);
                }
                1 => {
                    top.cuff = None;
                    top.hem_band = Some(FABRIC);
                    s.ellipse4(FABRIC, [0.5, top.sy + 0.01], 0.14, 0.12, 0.06);
                    top.draw(&mut s);
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
                    top.draw(&mut s);
                    s.line(SEAM, [0.5, top.sy + 0.06], [0.5, top.hy], 0.006);
                    shirt_collar(&mut s, top.sy, top.nw, 1.4);
                    s.sym(
                        FABRIC,
                        &[[0.33, 0.3], [0.43, 0.3], [0.43, 0.42], [0.33, 0.42]],
                    );
                    s.sym(
                        FABRIC,
                        &[[0.325, 0.29], [0.435, 0.29], [0.435, 0.33], [0.325, 0.33]],
                    );
                    buttons(&mut s, 0.5, top.sy + 0.12, top.hy - 0.08, 5, 0.013);
                }
            }
        }
        Garment::Coat => {
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
            top.draw(&mut s);
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
                buttons(&mut s, 0.44, vb + 0.06, vb + 0.3, 3, 0.013);
                buttons(&mut s, 0.56, vb + 0.06, vb + 0.3, 3, 0.013);
            } else {
                buttons(&mut s, 0.5, vb + 0.05, vb + 0.35, 4, 0.013);
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
        Garment::Sneakers => {
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
        Garment::Boots => {
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
        Garment::ToteBag => {
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
        Garment::Backpack => {
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
    }
    s
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

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

/// Largest bounding-box side over all variants of a garment (nuisance
/// fields do not change the geometry).
fn reference_extent(g: Garment) -> f32 {
    let spec = text_spec(g);
    let n0 = spec.axes.first().map_or(1, |ax| ax.len());
    let n1 = spec.axes.get(1).map_or(1, |ax| ax.len());
    let mut a = Attributes {
        garment: g,
        color: Color::Black,
        pattern: Pattern::Solid,
        second_color: Color::White,
        variants: [0, 0],
        fabric: "",
        background: [255; 3],
        tint: [0; 3],
        fill: 1.0,
        offset: [0.0; 2],
        shading: 0.0,
        pattern_period: 0.05,
        pattern_phase: [0.0; 2],
        logo: None,
    };
    let mut ext = 1e-3f32;
    for i in 0..n0 {
        for j in 0..n1 {
            a.variants = [i as u8, j as u8];
            let [x0, y0, x1, y1] = build(&a).bbox();
            ext = ext.max(x1 - x0).max(y1 - y0);
        }
    }
    ext
}

/// Renders the product image (`cfg.image_size` square). Depends only on
/// `cfg.image_size` and `p.attributes`.
pub fn render(cfg: &SynthConfig, p: &SynthProduct) -> RgbImage {
    let a = &p.attributes;
    let size = cfg.image_size.max(1) as usize;
    let sz = size as f32;
    let shapes = build(a);

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
    use super::*;

    fn cfg(n: usize, seed: u64) -> SynthConfig {
        SynthConfig {
            products: n,
            seed,
            image_size: 96,
            valid_fraction: 0.1,
        }
    }

    fn words(s: &str) -> Vec<String> {
        s.to_lowercase()
            .split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
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

    #[test]
    fn text_states_attributes() {
        let ps = products(&cfg(3000, 4));
        let color_names: Vec<&str> = Color::ALL.iter().map(|c| c.name()).collect();
        let mut titles: Vec<&str> = Vec::new();
        for p in &ps {
            let a = &p.attributes;
            let d = words(&p.description);
            let has = |w: &str| d.iter().any(|x| x == w);
            assert!(has(a.color.name()), "colour missing: {}", p.description);
            let n_sent = p.description.matches(". ").count() + 1;
            assert!((1..=4).contains(&n_sent), "{}", p.description);
            // Only colours of the product are named.
            for w in &d {
                if color_names.contains(&w.as_str()) {
                    let ok = w == a.color.name()
                        || (a.pattern != Pattern::Solid && w == a.second_color.name());
                    assert!(ok, "stray colour {w}: {}", p.description);
                }
            }
            let pattern_words = ["stripes", "check", "checks", "plaid", "dot", "dots"];
            match a.pattern {
                Pattern::Solid => {
                    assert!(!d.iter().any(|w| pattern_words.contains(&w.as_str())));
                }
                pat => {
                    assert!(has(a.second_color.name()), "{}", p.description);
                    let ok = match pat {
                        Pattern::VerticalStripes => has("vertical") && has("stripes"),
                        Pattern::HorizontalStripes => has("horizontal") && has("stripes"),
                        Pattern::Checks => has("check") || has("checks"),
                        _ => has("dot") || has("dots"),
                    };
                    assert!(ok, "pattern {pat:?} missing: {}", p.description);
                }
            }
            // Every stated variant option shows up (adjective or sentence).
            let spec = text_spec(a.garment);
            for (k, ax) in spec.axes.iter().enumerate() {
                let opt = &ax[a.variants[k] as usize];
                let forms = opt.adj.iter().chain(opt.sent.iter());
                let mut any = false;
                let mut stated = false;
                for f in forms {
                    stated = true;
                    let f = f.trim_end_matches('.').to_lowercase();
                    any |= p.description.to_lowercase().contains(&f);
                }
                assert!(
                    !stated || any,
                    "variant {} missing: {}",
                    opt.key,
                    p.description
                );
            }
            assert!(
                words(&p.title).iter().any(|w| w == a.color.name()),
                "{}",
                p.title
            );
            titles.push(&p.title);
        }
        titles.sort_unstable();
        let mut max_run = 0;
        for g in titles.chunk_by(|a, b| a == b) {
            max_run = max_run.max(g.len());
        }
        assert!(max_run <= 12, "a title repeats {max_run} times in 3000");
    }

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

    #[test]
    fn sin_cos_accuracy() {
        for k in -40..=40 {
            let a = k as f32 * 0.25;
            let (s, c) = sin_cos(a);
            assert!((s - a.sin()).abs() < 1e-5 && (c - a.cos()).abs() < 1e-5);
        }
    }
}
