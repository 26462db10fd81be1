//! What a product is made of: its colours, pattern and garment, and the [`Attributes`] from
//! which its text and image are made. These are plain data; what each garment is called, comes
//! in and looks like is in `garments`.

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

    /// Euclidean distance of the nominal sRGB values.
    pub(super) fn distance(self, other: Color) -> f32 {
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
/// [`products`](super::products). Each garment's names, colours, text and drawing are
/// in `garments` (its `Def`).
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
