//! Image references and loading: files, rows of a Fashion-Gen HDF5 file, or files inside a
//! store entry (generated images). Every image becomes RGB8; greyscale, RGBA, 16-bit and CMYK
//! inputs are converted. A missing, truncated or undecodable image is an error with the reason.

use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage, imageops::FilterType};

/// Where an image lives. Serialised into artefact tables as a string:
/// `path/relative/to/config.jpg`, `h5:path/to/file.h5#row`, or `entry:images/x.png`
/// (relative to the ingest entry that generated it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    File(PathBuf),
    Hdf5 { file: PathBuf, row: usize },
    Entry(String),
}

impl ImageRef {
    pub fn parse(s: &str) -> ImageRef {
        if let Some(rest) = s.strip_prefix("h5:") {
            if let Some((file, row)) = rest.rsplit_once('#') {
                if let Ok(row) = row.parse() {
                    return ImageRef::Hdf5 {
                        file: PathBuf::from(file),
                        row,
                    };
                }
            }
        }
        if let Some(rest) = s.strip_prefix("entry:") {
            return ImageRef::Entry(rest.to_string());
        }
        ImageRef::File(PathBuf::from(s))
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageRef::File(p) => write!(f, "{}", p.display()),
            ImageRef::Hdf5 { file, row } => write!(f, "h5:{}#{row}", file.display()),
            ImageRef::Entry(p) => write!(f, "entry:{p}"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image file not found: {}", .0.display())]
    Missing(PathBuf),
    #[error("cannot decode image {}: {msg}", path.display())]
    Decode { path: PathBuf, msg: String },
    #[error("cannot read image {what}: {msg}")]
    Source { what: String, msg: String },
}

impl ImageError {
    /// A short reason for rejects tables.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::Missing(_) => "missing image",
            ImageError::Decode { .. } => "undecodable image",
            ImageError::Source { .. } => "unreadable image source",
        }
    }
}

/// Resolves image references: relative file paths against the config directory, `entry:`
/// paths against the ingest entry.
#[derive(Debug, Clone)]
pub struct ImageLoader {
    base_dir: PathBuf,
    entry_dir: PathBuf,
}

impl ImageLoader {
    pub fn new(base_dir: &Path, entry_dir: &Path) -> Self {
        Self {
            base_dir: base_dir.to_path_buf(),
            entry_dir: entry_dir.to_path_buf(),
        }
    }

    pub fn path_of(&self, r: &ImageRef) -> PathBuf {
        match r {
            ImageRef::File(p) => self.base_dir.join(p),
            ImageRef::Hdf5 { file, .. } => self.base_dir.join(file),
            ImageRef::Entry(p) => self.entry_dir.join(p),
        }
    }

    /// Loads and decodes an image as RGB8.
    pub fn load(&self, r: &ImageRef) -> Result<RgbImage, ImageError> {
        match r {
            ImageRef::File(_) | ImageRef::Entry(_) => decode_file(&self.path_of(r)),
            ImageRef::Hdf5 { row, .. } => {
                crate::sources::fashiongen::read_image(&self.path_of(r), *row)
            }
        }
    }
}

/// Decodes an image file fully (a truncated file is an error, not a partial image).
pub fn decode_file(path: &Path) -> Result<RgbImage, ImageError> {
    if !path.is_file() {
        return Err(ImageError::Missing(path.to_path_buf()));
    }
    let bytes = std::fs::read(path).map_err(|e| ImageError::Decode {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })?;
    decode_bytes(&bytes).map_err(|msg| ImageError::Decode {
        path: path.to_path_buf(),
        msg,
    })
}

pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    if reader.format().is_none() {
        return Err("unknown image format".into());
    }
    let img = reader.decode().map_err(|e| e.to_string())?;
    Ok(to_rgb(img))
}

/// Converts any decoded image to RGB8 (alpha is composited over white, as product photos are
/// shown on white).
pub fn to_rgb(img: DynamicImage) -> RgbImage {
    if img.color().has_alpha() {
        let rgba = img.to_rgba8();
        let mut out = RgbImage::new(rgba.width(), rgba.height());
        for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
            let a = p[3] as u32;
            for c in 0..3 {
                o[c] = ((p[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
            }
        }
        out
    } else {
        img.to_rgb8()
    }
}

/// How a non-square image becomes the square model input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fit {
    /// Resize to the square, ignoring the aspect ratio (Fashion-Gen images are already square).
    Stretch,
    /// Keep the aspect ratio and pad with white.
    Pad,
}

impl Fit {
    pub fn parse(s: &str) -> Fit {
        if s == "pad" { Fit::Pad } else { Fit::Stretch }
    }
}

/// Resizes to `size`×`size` (bilinear, antialiased when shrinking).
pub fn square(img: &RgbImage, size: u32, fit: Fit) -> RgbImage {
    if img.width() == size && img.height() == size {
        return img.clone();
    }
    match fit {
        Fit::Stretch => image::imageops::resize(img, size, size, FilterType::Triangle),
        Fit::Pad => {
            let scale = size as f64 / img.width().max(img.height()) as f64;
            let w = ((img.width() as f64 * scale).round() as u32).clamp(1, size);
            let h = ((img.height() as f64 * scale).round() as u32).clamp(1, size);
            let small = image::imageops::resize(img, w, h, FilterType::Triangle);
            let mut out = RgbImage::from_pixel(size, size, image::Rgb([255, 255, 255]));
            image::imageops::overlay(
                &mut out,
                &small,
                ((size - w) / 2) as i64,
                ((size - h) / 2) as i64,
            );
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_round_trip() {
        for s in ["a/b.jpg", "h5:x/y.h5#12", "entry:images/S1.png"] {
            assert_eq!(ImageRef::parse(s).to_string(), s);
        }
    }

    #[test]
    fn truncated_and_garbage_images_are_errors() {
        let mut png = Vec::new();
        RgbImage::from_pixel(16, 16, image::Rgb([1, 2, 3]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert!(decode_bytes(&png).is_ok());
        assert!(decode_bytes(&png[..png.len() / 2]).is_err());
        assert!(decode_bytes(b"not an image").is_err());
    }

    #[test]
    fn greyscale_and_alpha_become_rgb() {
        let grey = DynamicImage::ImageLuma8(image::GrayImage::from_pixel(4, 4, image::Luma([7])));
        assert_eq!(to_rgb(grey).get_pixel(0, 0).0, [7, 7, 7]);
        let clear = DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            4,
            4,
            image::Rgba([0, 0, 0, 0]),
        ));
        assert_eq!(to_rgb(clear).get_pixel(0, 0).0, [255, 255, 255]);
    }

    #[test]
    fn square_keeps_or_pads() {
        let img = RgbImage::from_pixel(30, 40, image::Rgb([0, 0, 0]));
        let s = square(&img, 20, Fit::Stretch);
        assert_eq!((s.width(), s.height()), (20, 20));
        let p = square(&img, 20, Fit::Pad);
        assert_eq!(p.get_pixel(0, 10).0, [255, 255, 255]);
        assert_eq!(p.get_pixel(10, 10).0, [0, 0, 0]);
    }
}
