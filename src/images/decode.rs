//! Reading and decoding image files: only regular files within [`MAX_IMAGE_BYTES`], only
//! complete JPEGs and PNGs, always RGB8; and squaring an image (stretch or pad).

use std::io::Read;
use std::path::{Path, PathBuf};

use image::{DynamicImage, RgbImage, imageops::FilterType};

/// The largest image file read, in bytes (64 MiB): product photos are far smaller, and a
/// larger file is rejected from its metadata, before anything is read.
pub const MAX_IMAGE_BYTES: u64 = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("image file not found: {}", .0.display())]
    Missing(PathBuf),
    #[error("cannot decode image {}: {msg}", path.display())]
    Decode { path: PathBuf, msg: String },
    #[error("cannot read image {what}: {msg}")]
    Source { what: String, msg: String },
    /// The reference leaves the image folder (`..`, an absolute path, or a symbolic link).
    #[error("{cell:?} {how}; images must lie inside the image folder {}", root.display())]
    Outside {
        cell: String,
        how: String,
        root: PathBuf,
    },
    /// A directory, FIFO, socket or device.
    #[error("{} is a {kind}, not a regular file", path.display())]
    NotAFile { path: PathBuf, kind: &'static str },
    #[error("{} is larger than the {} MiB limit ({size} bytes)", path.display(), max >> 20)]
    TooLarge { path: PathBuf, size: u64, max: u64 },
    /// A file or folder whose name starts with `.`: hidden entries are not hashed into the
    /// cache key, so such an image could change without re-running `ingest`.
    #[error(
        "{cell:?}: the name {name:?} starts with `.`; hidden files and folders are not part of the cache key, rename them"
    )]
    Hidden { cell: String, name: String },
    /// Inside the artefact store, which is not hashed into the cache key.
    #[error("{cell:?} lies inside the artefact store {}; images must not be read from it", store.display())]
    InStore { cell: String, store: PathBuf },
}

impl ImageError {
    /// A short reason for rejects tables.
    pub fn reason(&self) -> &'static str {
        match self {
            ImageError::Missing(_) => "missing image",
            ImageError::Decode { .. } => "undecodable image",
            ImageError::Source { .. } => "unreadable image source",
            ImageError::Outside { .. } => "image outside the image folder",
            ImageError::NotAFile { .. } => "image not a regular file",
            ImageError::TooLarge { .. } => "image too large",
            ImageError::Hidden { .. } => "hidden image path",
            ImageError::InStore { .. } => "image inside the artefact store",
        }
    }

    /// `reason: details` on one line, for rejects tables (never ends in a newline).
    pub fn reject_reason(&self) -> String {
        let details = self.to_string();
        let one_line: Vec<&str> = details.lines().map(str::trim).collect();
        format!("{}: {}", self.reason(), one_line.join(" ").trim_end())
    }
}

/// What kind of non-regular file a file type is, for messages.
fn kind_of(ft: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return "FIFO";
        }
        if ft.is_socket() {
            return "socket";
        }
        if ft.is_block_device() {
            return "block device";
        }
        if ft.is_char_device() {
            return "character device";
        }
    }
    if ft.is_dir() {
        "directory"
    } else if ft.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Checks from metadata alone (nothing is opened) that `path` may be read as an image: a
/// regular file of at most [`MAX_IMAGE_BYTES`].
pub fn check_regular_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), ImageError> {
    if !meta.is_file() {
        return Err(ImageError::NotAFile {
            path: path.to_path_buf(),
            kind: kind_of(&meta.file_type()),
        });
    }
    if meta.len() > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            size: meta.len(),
            max: MAX_IMAGE_BYTES,
        });
    }
    Ok(())
}

/// Decodes an image file fully (a truncated file is an error, not a partial image). Only a
/// regular file of at most [`MAX_IMAGE_BYTES`] is opened (checked from its metadata first).
pub fn decode_file(path: &Path) -> Result<RgbImage, ImageError> {
    let bytes = read_file(path)?;
    decode_bytes(&bytes).map_err(|msg| ImageError::Decode {
        path: path.to_path_buf(),
        msg,
    })
}

/// The bytes of an image file: a regular file of at most [`MAX_IMAGE_BYTES`] (checked from
/// its metadata first, and again on the open file).
pub fn read_file(path: &Path) -> Result<Vec<u8>, ImageError> {
    let read_err = |e: std::io::Error| ImageError::Source {
        what: path.display().to_string(),
        msg: e.to_string(),
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ImageError::Missing(path.to_path_buf()));
        }
        Err(e) => return Err(read_err(e)),
    };
    check_regular_file(path, &meta)?;
    let file = std::fs::File::open(path).map_err(read_err)?;
    // Checked again on the open file, in case it was replaced since.
    check_regular_file(path, &file.metadata().map_err(read_err)?)?;
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_IMAGE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    if bytes.len() as u64 > MAX_IMAGE_BYTES {
        return Err(ImageError::TooLarge {
            path: path.to_path_buf(),
            size: bytes.len() as u64,
            max: MAX_IMAGE_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes a whole JPEG or PNG. The file must be complete: a JPEG must reach its end-of-image
/// marker through its segments and scans, a PNG its `IEND` chunk ([`check_complete`]); the
/// decoders alone would fill a cut-off JPEG with grey.
pub fn decode_bytes(bytes: &[u8]) -> Result<RgbImage, String> {
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| e.to_string())?;
    let Some(format) = reader.format() else {
        return Err("unknown image format".into());
    };
    check_complete(format, bytes)?;
    let img = reader.decode().map_err(|e| e.to_string())?;
    Ok(to_rgb(img))
}

/// Checks that a JPEG or PNG file is structurally complete (other formats pass: the decoders
/// built in here read only these two).
pub fn check_complete(format: image::ImageFormat, bytes: &[u8]) -> Result<(), String> {
    match format {
        image::ImageFormat::Jpeg => jpeg_complete(bytes),
        image::ImageFormat::Png => png_complete(bytes),
        _ => Ok(()),
    }
}

/// Walks a JPEG's marker segments and entropy-coded scans (byte stuffing, restart markers and
/// fill bytes included) and requires the end-of-image marker (FFD9). Segments are skipped by
/// their lengths, so an FFD9 inside metadata (an EXIF thumbnail) does not count. Bytes after
/// the end-of-image marker are ignored, as libjpeg and Pillow ignore them.
pub(super) fn jpeg_complete(b: &[u8]) -> Result<(), String> {
    let truncated = |at: usize, what: &str| {
        Err(format!(
            "truncated JPEG: the file ends at byte {} {what}, before the end-of-image marker (FFD9)",
            b.len().min(at)
        ))
    };
    if b.len() < 2 || b[0] != 0xFF || b[1] != 0xD8 {
        return Err("not a JPEG: no start-of-image marker (FFD8)".into());
    }
    let mut i = 2;
    loop {
        if i >= b.len() {
            return truncated(i, "between segments");
        }
        if b[i] != 0xFF {
            return Err(format!(
                "corrupt JPEG: byte {i} is 0x{:02X} where a marker should start",
                b[i]
            ));
        }
        while i < b.len() && b[i] == 0xFF {
            i += 1; // fill bytes before a marker
        }
        if i >= b.len() {
            return truncated(i, "inside a marker");
        }
        let marker = b[i];
        i += 1;
        match marker {
            0xD9 => return Ok(()),
            0x01 | 0xD0..=0xD7 => continue, // standalone: TEM, RSTn
            0x00 | 0xD8 => {
                return Err(format!(
                    "corrupt JPEG: unexpected marker FF{marker:02X} at byte {}",
                    i - 2
                ));
            }
            _ => {}
        }
        if i + 2 > b.len() {
            return truncated(i, &format!("inside the length of segment FF{marker:02X}"));
        }
        let len = u16::from_be_bytes([b[i], b[i + 1]]) as usize;
        if len < 2 {
            return Err(format!(
                "corrupt JPEG: segment FF{marker:02X} at byte {} has length {len}",
                i - 2
            ));
        }
        if i + len > b.len() {
            return truncated(i + len, &format!("inside segment FF{marker:02X}"));
        }
        i += len;
        if marker == 0xDA {
            // Entropy-coded data up to the next marker other than a stuffed 0x00 or RSTn.
            loop {
                match b[i.min(b.len())..].iter().position(|&x| x == 0xFF) {
                    None => return truncated(b.len(), "inside the image data"),
                    Some(k) => i += k,
                }
                match b.get(i + 1) {
                    None => return truncated(b.len(), "inside the image data"),
                    Some(0x00 | 0xD0..=0xD7) => i += 2,
                    Some(0xFF) => i += 1,
                    Some(_) => break,
                }
            }
        }
    }
}

/// Walks a PNG's chunks by their lengths and requires a complete `IEND` chunk.
fn png_complete(b: &[u8]) -> Result<(), String> {
    const SIG: [u8; 8] = [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
    if b.len() < 8 || b[..8] != SIG {
        return Err("not a PNG: no PNG signature".into());
    }
    let mut i = 8;
    loop {
        if i + 8 > b.len() {
            return Err(format!(
                "truncated PNG: the file ends at byte {} inside a chunk header, before the IEND chunk",
                b.len()
            ));
        }
        let len = u32::from_be_bytes(b[i..i + 4].try_into().unwrap()) as usize;
        let kind = &b[i + 4..i + 8];
        let end = i.saturating_add(12).saturating_add(len);
        if end > b.len() {
            return Err(format!(
                "truncated PNG: the file ends at byte {} inside the {} chunk, before the IEND chunk",
                b.len(),
                String::from_utf8_lossy(kind)
            ));
        }
        if kind == b"IEND" {
            return Ok(());
        }
        i = end;
    }
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
