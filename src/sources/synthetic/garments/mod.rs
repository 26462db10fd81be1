//! The garments, one place each. A garment is a [`Def`]: its category and subcategory, the
//! colours and patterns it comes in, its text (`TextSpec`) and its drawing. The `Def`s live in
//! one file per family, next to the parts they share: `tops` (also the flat-lay top, necklines,
//! collars and buttons that dresses and outerwear reuse), `bottoms`, `dresses` (skirts and
//! dresses), `outerwear`, `shoes` and `bags`.
//!
//! To add a garment: add its variant to [`Garment`] and `Garment::ALL` (the order is the
//! round-robin order of products, so appending changes no existing product's garment), write
//! its `Def` in a family file and name it in [`Garment::def`].

mod bags;
mod bottoms;
mod dresses;
mod outerwear;
mod shoes;
mod tops;

use crate::sources::synthetic::attributes::{Attributes, Color, Garment};
use crate::sources::synthetic::shapes::Shapes;
use crate::sources::synthetic::text::TextSpec;

/// Everything about one garment.
pub(super) struct Def {
    pub(super) category: &'static str,
    pub(super) subcategory: &'static str,
    /// The main colours it comes in.
    pub(super) colors: &'static [Color],
    /// Weights of `Pattern::ALL`.
    pub(super) pattern_weights: [u32; 5],
    pub(super) text: TextSpec,
    /// Pushes its parts, given the option index per variant axis of `text.axes` (unused axes
    /// are 0). The order of the parts is the drawing order.
    pub(super) draw: fn(&mut Shapes, [u8; 2]),
}

impl Garment {
    pub(super) fn def(self) -> &'static Def {
        match self {
            Garment::TShirt => &tops::TSHIRT,
            Garment::Shirt => &tops::SHIRT,
            Garment::Sweater => &tops::SWEATER,
            Garment::TankTop => &tops::TANK,
            Garment::Jeans => &bottoms::JEANS,
            Garment::Trousers => &bottoms::TROUSERS,
            Garment::Shorts => &bottoms::SHORTS,
            Garment::Skirt => &dresses::SKIRT,
            Garment::Dress => &dresses::DRESS,
            Garment::Jacket => &outerwear::JACKET,
            Garment::Coat => &outerwear::COAT,
            Garment::Sneakers => &shoes::SNEAKERS,
            Garment::Boots => &shoes::BOOTS,
            Garment::ToteBag => &bags::TOTE,
            Garment::Backpack => &bags::BACKPACK,
        }
    }

    pub fn category(self) -> &'static str {
        self.def().category
    }

    pub fn subcategory(self) -> &'static str {
        self.def().subcategory
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

    pub(super) fn colors(self) -> &'static [Color] {
        self.def().colors
    }

    /// Weights of `Pattern::ALL`.
    pub(super) fn pattern_weights(self) -> [u32; 5] {
        self.def().pattern_weights
    }
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

pub(super) fn text_spec(g: Garment) -> &'static TextSpec {
    &g.def().text
}

/// Builds the part polygons of a garment in garment coordinates.
pub(super) fn build(g: Garment, variants: [u8; 2]) -> Shapes {
    let mut s = Shapes::new();
    (g.def().draw)(&mut s, variants);
    s
}

/// Largest bounding-box side over all variants of a garment (nuisance
/// fields do not change the geometry).
pub(super) fn reference_extent(g: Garment) -> f32 {
    let spec = text_spec(g);
    let n0 = spec.axes.first().map_or(1, |ax| ax.len());
    let n1 = spec.axes.get(1).map_or(1, |ax| ax.len());
    let mut ext = 1e-3f32;
    for i in 0..n0 {
        for j in 0..n1 {
            let [x0, y0, x1, y1] = build(g, [i as u8, j as u8]).bbox();
            ext = ext.max(x1 - x0).max(y1 - y0);
        }
    }
    ext
}
