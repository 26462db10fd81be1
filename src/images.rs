//! Image references and loading: files, rows of a Fashion-Gen HDF5 file, or files inside a
//! store entry (generated images). Every image becomes RGB8; greyscale, RGBA, 16-bit and CMYK
//! inputs are converted. A missing, truncated or undecodable image is an error with the reason.
//!
//! Safety of file references: a CSV's image cell is resolved by [`ImageRoot::resolve`], which
//! confines it to the image folder after resolving `..` and symbolic links, and only accepts
//! regular files of at most [`MAX_IMAGE_BYTES`]; nothing outside the folder is ever opened.
//! [`decode_file`] again reads only regular files within the size limit, and a JPEG or PNG
//! must be complete (a truncated file is an error, never a partially filled image).

use std::io::Read;
use std::path::{Component, Path, PathBuf};

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

/// An image folder that CSV image cells are confined to.
#[derive(Debug, Clone)]
pub struct ImageRoot {
    /// As configured (relative to the working directory or absolute).
    given: PathBuf,
    /// `given`, absolute, with `.`/`..` folded lexically (for the quick pre-check).
    absolute: PathBuf,
    /// `given` with every symbolic link resolved.
    canonical: PathBuf,
    /// Paths (canonical) that images must not be read from: the artefact store.
    excluded: Vec<PathBuf>,
}

impl ImageRoot {
    /// Opens the folder; it must exist and be a directory.
    pub fn new(root: &Path) -> Result<ImageRoot, ImageError> {
        let canonical = std::fs::canonicalize(root).map_err(|e| ImageError::Source {
            what: format!("folder {}", root.display()),
            msg: e.to_string(),
        })?;
        if !canonical.is_dir() {
            return Err(ImageError::Source {
                what: format!("folder {}", root.display()),
                msg: "not a folder".into(),
            });
        }
        let absolute = std::path::absolute(root)
            .map(|p| fold(&p).unwrap_or(p))
            .unwrap_or_else(|_| canonical.clone());
        Ok(ImageRoot {
            given: root.to_path_buf(),
            absolute,
            canonical,
            excluded: Vec::new(),
        })
    }

    /// Rejects images inside `dir` (if it exists), for example the artefact store, which the
    /// cache key's directory hash skips.
    pub fn excluding(mut self, dir: &Path) -> Self {
        if let Ok(c) = std::fs::canonicalize(dir) {
            self.excluded.push(c);
        }
        self
    }

    /// The folder with symbolic links resolved.
    pub fn canonical(&self) -> &Path {
        &self.canonical
    }

    /// Resolves a CSV image cell to its path relative to the folder, after resolving `..` and
    /// symbolic links. A cell that leads outside the folder (`../x.jpg`, an absolute path
    /// elsewhere, a link pointing out), a missing file, a directory, FIFO or device, a file over
    /// [`MAX_IMAGE_BYTES`], or a hidden name is an error. Only metadata is consulted: no file
    /// is opened, and nothing outside the folder is opened at all.
    pub fn resolve(&self, cell: &str) -> Result<PathBuf, ImageError> {
        let outside = |how: String| ImageError::Outside {
            cell: cell.to_string(),
            how,
            root: self.given.clone(),
        };
        let p = Path::new(cell);
        // Lexical pre-check: an escape visible in the text is rejected without touching the
        // file system.
        let candidate = if p.is_absolute() {
            let folded =
                fold(p).ok_or_else(|| outside("climbs above the file system root".into()))?;
            if !folded.starts_with(&self.absolute) && !folded.starts_with(&self.canonical) {
                return Err(outside("is an absolute path elsewhere".into()));
            }
            folded
        } else {
            let mut depth = 0usize;
            for c in p.components() {
                match c {
                    Component::ParentDir if depth == 0 => {
                        return Err(outside("climbs out with `..`".into()));
                    }
                    Component::ParentDir => depth -= 1,
                    Component::Normal(_) => depth += 1,
                    Component::CurDir => {}
                    Component::RootDir | Component::Prefix(_) => {
                        return Err(outside("is an absolute path".into()));
                    }
                }
            }
            self.given.join(p)
        };
        // The authority: resolve every link (realpath reads link targets and directory
        // entries, it opens no file) and require the result inside the folder.
        let real = std::fs::canonicalize(&candidate).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ImageError::Missing(candidate.clone())
            } else {
                ImageError::Source {
                    what: candidate.display().to_string(),
                    msg: e.to_string(),
                }
            }
        })?;
        let Ok(rel) = real.strip_prefix(&self.canonical) else {
            return Err(outside(format!(
                "resolves (through a symbolic link or `..`) to {}",
                real.display()
            )));
        };
        if rel.as_os_str().is_empty() {
            return Err(ImageError::NotAFile {
                path: candidate,
                kind: "directory",
            });
        }
        for c in rel.components() {
            let name = c.as_os_str().to_string_lossy();
            if name.starts_with('.') {
                return Err(ImageError::Hidden {
                    cell: cell.to_string(),
                    name: name.into_owned(),
                });
            }
        }
        if let Some(store) = self.excluded.iter().find(|x| real.starts_with(x)) {
            return Err(ImageError::InStore {
                cell: cell.to_string(),
                store: store.clone(),
            });
        }
        let meta = std::fs::metadata(&real).map_err(|e| ImageError::Source {
            what: candidate.display().to_string(),
            msg: e.to_string(),
        })?;
        check_regular_file(&candidate, &meta)?;
        Ok(rel.to_path_buf())
    }
}

/// Folds `.` and `..` lexically; `None` if `..` climbs above the start.
fn fold(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !matches!(out.components().next_back(), Some(Component::Normal(_))) {
                    return None;
                }
                out.pop();
            }
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
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

    /// The image's content hash (blake3, hex) and, when `decode`, a check that it decodes: an
    /// image file's bytes, or an HDF5 row's pixels (the row is read either way). Features
    /// follow this hash, not the image's name, so a changed file is seen as changed.
    pub fn fingerprint(&self, r: &ImageRef, decode: bool) -> Result<String, ImageError> {
        match r {
            ImageRef::File(_) | ImageRef::Entry(_) => {
                let path = self.path_of(r);
                let bytes = read_file(&path)?;
                if decode {
                    decode_bytes(&bytes).map_err(|msg| ImageError::Decode {
                        path: path.clone(),
                        msg,
                    })?;
                }
                Ok(blake3::hash(&bytes).to_hex().to_string())
            }
            ImageRef::Hdf5 { .. } => {
                let img = self.load(r)?;
                let mut h = blake3::Hasher::new();
                h.update(&img.width().to_le_bytes());
                h.update(&img.height().to_le_bytes());
                h.update(img.as_raw());
                Ok(h.finalize().to_hex().to_string())
            }
        }
    }
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
fn jpeg_complete(b: &[u8]) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_round_trip() {
        for s in ["a/b.jpg", "h5:x/y.h5#12", "entry:images/S1.png"] {
            assert_eq!(ImageRef::parse(s).to_string(), s);
        }
    }

    fn encoded(format: image::ImageFormat) -> Vec<u8> {
        let img = RgbImage::from_fn(24, 16, |x, y| {
            image::Rgb([(x * 10) as u8, (y * 15) as u8, ((x * y) % 256) as u8])
        });
        let mut out = Vec::new();
        img.write_to(&mut std::io::Cursor::new(&mut out), format)
            .unwrap();
        out
    }

    #[test]
    fn truncated_and_garbage_images_are_errors() {
        let png = encoded(image::ImageFormat::Png);
        assert!(decode_bytes(&png).is_ok());
        assert!(decode_bytes(&png[..png.len() / 2]).is_err());
        assert!(decode_bytes(b"not an image").is_err());
    }

    #[test]
    fn every_truncated_png_prefix_is_an_error() {
        let png = encoded(image::ImageFormat::Png);
        for cut in 0..png.len() {
            assert!(
                decode_bytes(&png[..cut]).is_err(),
                "a PNG cut to {cut} of {} bytes was accepted",
                png.len()
            );
        }
    }

    #[test]
    fn jpeg_must_reach_its_end_marker() {
        let jpg = encoded(image::ImageFormat::Jpeg);
        assert!(jpeg_complete(&jpg).is_ok());
        assert!(decode_bytes(&jpg).is_ok());
        // Bytes after the end-of-image marker are ignored, as libjpeg ignores them.
        let mut padded = jpg.clone();
        padded.extend_from_slice(&[0, 0, 0, 0xFF]);
        assert!(decode_bytes(&padded).is_ok());
        // The end marker must be the last one: cutting it off is truncation.
        let e = decode_bytes(&jpg[..jpg.len() - 2]).unwrap_err();
        assert!(e.starts_with("truncated JPEG"), "{e}");
        assert!(!e.ends_with('\n'));
        // An FFD9 inside a metadata segment (an EXIF thumbnail) is skipped by the segment's
        // length: a file cut right after it is still truncated.
        let mut with_app = jpg[..2].to_vec();
        let thumb = [0xFF, 0xD8, 1, 2, 3, 0xFF, 0xD9];
        with_app.extend_from_slice(&[0xFF, 0xE1, 0, (thumb.len() + 2) as u8]);
        with_app.extend_from_slice(&thumb);
        with_app.extend_from_slice(&jpg[2..]);
        assert!(decode_bytes(&with_app).is_ok());
        assert!(decode_bytes(&with_app[..4 + 2 + thumb.len()]).is_err());
        // Restart markers and stuffed bytes inside scan data are not the end.
        let scan = [
            0xFF, 0xD8, 0xFF, 0xDA, 0, 2, 1, 0xFF, 0x00, 2, 0xFF, 0xD0, 3, 0xFF, 0xFF, 0xD9,
        ];
        assert!(jpeg_complete(&scan).is_ok());
        assert!(jpeg_complete(&scan[..scan.len() - 1]).is_err());
        assert!(jpeg_complete(&scan[..9]).is_err());
    }

    #[test]
    fn image_cells_are_confined_to_the_folder() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("imgs");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::create_dir_all(d.path().join("outside")).unwrap();
        std::fs::create_dir_all(root.join(".hidden")).unwrap();
        let jpg = encoded(image::ImageFormat::Jpeg);
        std::fs::write(root.join("a.jpg"), &jpg).unwrap();
        std::fs::write(root.join(".hidden/h.jpg"), &jpg).unwrap();
        std::fs::write(d.path().join("outside/x.jpg"), &jpg).unwrap();
        std::os::unix::fs::symlink("../outside/x.jpg", root.join("out.jpg")).unwrap();
        std::os::unix::fs::symlink("a.jpg", root.join("in.jpg")).unwrap();
        std::os::unix::fs::symlink(d.path().join("outside"), root.join("outdir")).unwrap();
        std::fs::File::create(root.join("big.jpg"))
            .unwrap()
            .set_len(MAX_IMAGE_BYTES + 1)
            .unwrap();
        let r = ImageRoot::new(&root).unwrap();
        assert_eq!(r.resolve("a.jpg").unwrap(), PathBuf::from("a.jpg"));
        assert_eq!(r.resolve("./sub/../a.jpg").unwrap(), PathBuf::from("a.jpg"));
        assert_eq!(r.resolve("in.jpg").unwrap(), PathBuf::from("a.jpg"));
        let abs_inside = root.join("a.jpg");
        assert_eq!(
            r.resolve(abs_inside.to_str().unwrap()).unwrap(),
            PathBuf::from("a.jpg")
        );
        let reason = |cell: &str| r.resolve(cell).unwrap_err().reason();
        assert_eq!(reason("../outside/x.jpg"), "image outside the image folder");
        assert_eq!(
            reason("sub/../../outside/x.jpg"),
            "image outside the image folder"
        );
        let abs = d.path().join("outside/x.jpg");
        assert_eq!(
            reason(abs.to_str().unwrap()),
            "image outside the image folder"
        );
        assert_eq!(reason("/etc/passwd"), "image outside the image folder");
        assert_eq!(reason("out.jpg"), "image outside the image folder");
        assert_eq!(reason("outdir/x.jpg"), "image outside the image folder");
        assert_eq!(reason("missing.jpg"), "missing image");
        assert_eq!(reason("sub"), "image not a regular file");
        assert_eq!(reason("."), "image not a regular file");
        assert_eq!(reason("big.jpg"), "image too large");
        assert_eq!(reason(".hidden/h.jpg"), "hidden image path");
        let excl = ImageRoot::new(&root).unwrap().excluding(&root.join("sub"));
        std::fs::write(root.join("sub/s.jpg"), &jpg).unwrap();
        assert_eq!(
            excl.resolve("sub/s.jpg").unwrap_err().reason(),
            "image inside the artefact store"
        );
        let e = r.resolve("big.jpg").unwrap_err().reject_reason();
        assert!(e.contains("larger than the 64 MiB limit"), "{e}");
        assert!(!e.ends_with('\n'));
        // decode_file applies the same checks to what it reads.
        assert_eq!(
            decode_file(&root.join("big.jpg")).unwrap_err().reason(),
            "image too large"
        );
        assert_eq!(
            decode_file(&root.join("sub")).unwrap_err().reason(),
            "image not a regular file"
        );
        assert!(decode_file(&root.join("a.jpg")).is_ok());
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
