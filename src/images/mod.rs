//! Image references and loading: files, rows of a Fashion-Gen HDF5 file, or files inside a
//! store entry (generated images). Every image becomes RGB8; greyscale, RGBA, 16-bit and CMYK
//! inputs are converted. A missing, truncated or undecodable image is an error with the reason.
//!
//! Safety of file references: a CSV's image cell is resolved by [`ImageRoot::resolve`], which
//! confines it to the image folder after resolving `..` and symbolic links, and only accepts
//! regular files of at most [`MAX_IMAGE_BYTES`]; nothing outside the folder is ever opened.
//! [`decode_file`] again reads only regular files within the size limit, and a JPEG or PNG
//! must be complete (a truncated file is an error, never a partially filled image).

pub mod decode;
mod root;

use std::path::{Path, PathBuf};

use image::RgbImage;

pub use decode::{
    Fit, ImageError, MAX_IMAGE_BYTES, check_complete, check_regular_file, decode_bytes,
    decode_file, read_file, square, to_rgb,
};
pub use root::ImageRoot;

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

#[cfg(test)]
mod tests {
    use super::decode::jpeg_complete;
    use super::*;
    use image::DynamicImage;

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
