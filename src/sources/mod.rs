//! Where products come from: a seeded synthetic generator (the default), a CSV with an image
//! folder, or Fashion-Gen's HDF5 files. The `ingest` stage turns any of them into one table.

pub mod csv;
pub mod fashiongen;
pub mod pool;
pub mod synthetic;

/// One image of a product, as the `ingest` stage writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Product {
    /// Unique per image: the product id, or `<product id>_<pose>` where a product has several.
    pub image_id: String,
    pub product_id: String,
    /// An [`crate::images::ImageRef`] string.
    pub image: String,
    pub title: String,
    /// The text this product contributes to pairs.
    pub text: String,
    pub category: String,
    pub subcategory: String,
    /// `train` or `valid`.
    pub split: String,
    /// Products with equal keys have identical titles: never each other's negatives.
    pub title_key: String,
}

/// A row that `ingest` refused, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Reject {
    /// Line in the source CSV, or row in the HDF5 file.
    pub line: i64,
    pub product_id: String,
    pub image: String,
    pub reason: String,
}

/// Collapses runs of whitespace and trims.
pub fn normalize_text(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `train`, or `valid` for validation/val/valid; `None` for anything else.
pub fn normalize_split(s: &str) -> Option<&'static str> {
    match s.trim().to_ascii_lowercase().as_str() {
        "train" | "training" => Some("train"),
        "valid" | "validation" | "val" => Some("valid"),
        _ => None,
    }
}

/// The default same-title key: the title, lower-cased, whitespace collapsed.
pub fn title_key(title: &str) -> String {
    format!("t:{}", normalize_text(title).to_lowercase())
}

crate::param_choice! {
    /// The text a product contributes (`ingest.text`).
    pub enum TextMode {
        /// The title alone.
        Title = "title",
        /// The description alone.
        Description = "description",
        /// "Title. Description" (the title alone where the description is empty or repeats it).
        TitleDescription = "title_description",
    }
}

/// Which text a product contributes.
pub fn product_text(mode: TextMode, title: &str, description: &str) -> String {
    let (t, d) = (normalize_text(title), normalize_text(description));
    match mode {
        TextMode::Title => t,
        TextMode::Description => d,
        TextMode::TitleDescription => {
            if d.is_empty() || d == t {
                t
            } else if t.is_empty() {
                d
            } else {
                format!("{t}. {d}")
            }
        }
    }
}

/// A seeded split draw for sources without a split column: `valid` with probability
/// `valid_fraction`, from a hash of the seed and the product id (stable across runs and orders).
pub fn hashed_split(seed: u64, product_id: &str, valid_fraction: f64) -> &'static str {
    let h = blake3::hash(format!("{seed}:split:{product_id}").as_bytes());
    let u = u64::from_le_bytes(h.as_bytes()[..8].try_into().unwrap()) as f64 / u64::MAX as f64;
    if u < valid_fraction { "valid" } else { "train" }
}
