//! Image references and image files that must not be trusted: CSV image cells that leave the
//! image folder (`..`, absolute paths, symbolic links), special files (directories, FIFOs,
//! devices), files over the size limit, hidden names, and truncated JPEGs and PNGs. Each is a
//! counted reject with its reason; nothing outside the image folder is opened.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use fashionbert::images::{ImageLoader, ImageRef, MAX_IMAGE_BYTES};

/// A JPEG with real content (gradients and texture, so the scan is long), encoded here so the
/// test needs no external data.
fn jpeg_bytes(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let n = (x * 7919 + y * 104_729 + seed * 31).wrapping_mul(2_654_435_761) >> 24;
        image::Rgb([
            (x * 255 / w) as u8,
            (y * 255 / h) as u8,
            ((n as u8) / 2).wrapping_add((x * y) as u8 / 2),
        ])
    });
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .encode_image(&img)
        .unwrap();
    out
}

/// Runs the CLI in `dir`, failing (instead of hanging) if it takes longer than `limit`: a run
/// that opened a FIFO would block forever.
fn run_with_limit(dir: &Path, args: &[&str], limit: Duration) -> (bool, String) {
    let mut child = Command::new(bin())
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fashionbert");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let out = child.wait_with_output().unwrap();
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stderr),
                String::from_utf8_lossy(&out.stdout)
            );
            return (status.success(), text);
        }
        if start.elapsed() > limit {
            child.kill().unwrap();
            let _ = child.wait();
            panic!(
                "fashionbert {args:?} did not finish in {limit:?}: it blocked, probably opening a FIFO"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mkfifo(path: &Path) {
    let st = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(st.success(), "mkfifo {}", path.display());
}

/// The `ImageLoader` that `ingest` (check_images) and `features` use, on one file.
fn load(dir: &Path, name: &str) -> Result<image::RgbImage, fashionbert::images::ImageError> {
    ImageLoader::new(dir, dir).load(&ImageRef::File(name.into()))
}

/// Every prefix of `bytes` (0 to len-1 bytes) is rejected by the loader, the whole file is not.
fn every_prefix_is_rejected(bytes: &[u8], what: &str) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("img"), bytes).unwrap();
    let full = load(d, "img").unwrap_or_else(|e| {
        panic!(
            "the complete {what} ({} bytes) is rejected: {e}",
            bytes.len()
        )
    });
    assert!(full.width() > 0);
    let mut accepted = Vec::new();
    for cut in 0..bytes.len() {
        std::fs::write(d.join("img"), &bytes[..cut]).unwrap();
        match load(d, "img") {
            Ok(_) => accepted.push(cut),
            Err(e) => {
                assert_eq!(e.reason(), "undecodable image", "cut {cut}: {e}");
                let r = e.reject_reason();
                assert!(!r.ends_with('\n'), "{r:?}");
            }
        }
    }
    assert!(
        accepted.is_empty(),
        "{} of {} truncated prefixes of the {what} were accepted, e.g. cut at {:?} bytes",
        accepted.len(),
        bytes.len(),
        &accepted[..accepted.len().min(10)]
    );
}

#[test]
fn every_truncated_prefix_of_a_jpeg_is_rejected() {
    let jpg = jpeg_bytes(96, 64, 1);
    assert!(
        jpg.len() > 2000,
        "a JPEG with a long scan: {} bytes",
        jpg.len()
    );
    every_prefix_is_rejected(&jpg, "baseline JPEG encoded in the test");
}

#[test]
fn every_truncated_prefix_of_a_progressive_jpeg_and_a_png_is_rejected() {
    // A progressive JPEG (several scans) with an EXIF block, written by Pillow.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("prog.jpg");
    py(&[
        "-c",
        &format!(
            "from PIL import Image\n\
im = Image.new('RGB', (72, 48))\n\
im.putdata([((x * 3) % 256, (y * 5) % 256, (x * y) % 256) for y in range(48) for x in range(72)])\n\
ex = Image.Exif(); ex[0x010E] = 'test image'\n\
im.save('{}', quality=85, progressive=True, exif=ex.tobytes())",
            p.display()
        ),
    ]);
    let prog = std::fs::read(&p).unwrap();
    every_prefix_is_rejected(&prog, "progressive JPEG written by Pillow");

    let mut png = Vec::new();
    image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8 * 6, y as u8 * 8, 99]))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    every_prefix_is_rejected(&png, "PNG");
}

#[test]
fn every_truncated_prefix_of_a_fashion_real_jpeg_is_rejected() {
    let Some(data) = fashion_real() else {
        return;
    };
    // The smallest and the largest real images, read in place.
    let mut files: Vec<(u64, std::path::PathBuf)> = std::fs::read_dir(data.join("images"))
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (std::fs::metadata(&p).unwrap().len(), p)
        })
        .collect();
    files.sort();
    assert!(
        files.len() > 1,
        "no images in {}",
        data.join("images").display()
    );
    // Every real image is complete: the end-of-image check rejects none of them.
    for (_, p) in &files {
        let bytes = std::fs::read(p).unwrap();
        fashionbert::images::check_complete(image::ImageFormat::Jpeg, &bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
    for (_, p) in [&files[0], &files[files.len() - 1]] {
        every_prefix_is_rejected(&std::fs::read(p).unwrap(), &p.display().to_string());
    }
}

#[test]
fn image_cells_outside_the_folder_and_special_files_are_rejected_never_opened() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let imgs = d.join("data/imgs");
    let outside = d.join("outside");
    std::fs::create_dir_all(imgs.join("sub")).unwrap();
    std::fs::create_dir_all(imgs.join(".hidden")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let jpg = jpeg_bytes(48, 32, 2);
    std::fs::write(imgs.join("good.jpg"), &jpg).unwrap();
    image::RgbImage::from_pixel(20, 20, image::Rgb([200, 10, 10]))
        .save(imgs.join("good2.png"))
        .unwrap();
    std::fs::write(imgs.join(".hidden/h.jpg"), &jpg).unwrap();
    std::fs::write(imgs.join("cut90.jpg"), &jpg[..jpg.len() * 9 / 10]).unwrap();
    std::fs::write(imgs.join("cut10.jpg"), &jpg[..jpg.len() / 10]).unwrap();
    // Sparse: no disk space, but its size is over the limit.
    std::fs::File::create(imgs.join("big.jpg"))
        .unwrap()
        .set_len(MAX_IMAGE_BYTES + 1)
        .unwrap();
    mkfifo(&imgs.join("pipe.jpg"));
    // Outside the folder: a valid image (which must not be trained on), a FIFO (opening it
    // would block forever) and a file nobody may read.
    std::fs::write(outside.join("x.jpg"), &jpg).unwrap();
    mkfifo(&outside.join("fifo.jpg"));
    std::fs::write(outside.join("secret.jpg"), &jpg).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(
        outside.join("secret.jpg"),
        std::fs::Permissions::from_mode(0o000),
    )
    .unwrap();
    std::os::unix::fs::symlink("../../outside/x.jpg", imgs.join("link_out.jpg")).unwrap();
    std::os::unix::fs::symlink("../../outside/fifo.jpg", imgs.join("link_fifo.jpg")).unwrap();
    std::os::unix::fs::symlink("good.jpg", imgs.join("link_in.jpg")).unwrap();

    let abs = |p: &Path| p.display().to_string();
    let rows: Vec<(&str, String, &str)> = vec![
        ("1", "good.jpg".into(), ""),
        (
            "2",
            "../../outside/x.jpg".into(),
            "image outside the image folder",
        ),
        (
            "3",
            abs(&outside.join("x.jpg")),
            "image outside the image folder",
        ),
        ("4", "link_out.jpg".into(), "image outside the image folder"),
        (
            "5",
            "../../outside/fifo.jpg".into(),
            "image outside the image folder",
        ),
        (
            "6",
            "link_fifo.jpg".into(),
            "image outside the image folder",
        ),
        (
            "7",
            abs(&outside.join("secret.jpg")),
            "image outside the image folder",
        ),
        (
            "8",
            "../../outside/secret.jpg".into(),
            "image outside the image folder",
        ),
        ("9", "/etc/passwd".into(), "image outside the image folder"),
        ("10", "/dev/zero".into(), "image outside the image folder"),
        ("11", "sub".into(), "image not a regular file"),
        ("12", "pipe.jpg".into(), "image not a regular file"),
        ("13", "big.jpg".into(), "image too large"),
        ("14", ".hidden/h.jpg".into(), "hidden image path"),
        ("15", "cut90.jpg".into(), "undecodable image"),
        ("16", "cut10.jpg".into(), "undecodable image"),
        ("17", "sub/../good2.png".into(), ""),
        ("18", "link_in.jpg".into(), ""),
    ];
    let mut csv = String::from("product_id,image,title,description,category,subcategory,split\n");
    for (id, cell, _) in &rows {
        csv.push_str(&format!(
            "{id},{cell},Item {id},Text {id},Tops,Shirts,train\n"
        ));
    }
    std::fs::write(d.join("data/products.csv"), csv).unwrap();
    std::fs::write(
        d.join("pipeline.toml"),
        "[stages.ingest]\n[stages.ingest.params]\nsource = \"csv\"\ncsv = \"data/products.csv\"\nimage_root = \"data/imgs\"\n",
    )
    .unwrap();

    let (success, out) = run_with_limit(d, &["run", "ingest"], Duration::from_secs(300));
    assert!(success, "{out}");
    let want_rejected = rows.iter().filter(|r| !r.2.is_empty()).count();
    assert!(out.contains(&format!("rejected: {want_rejected}")), "{out}");

    let a = d.join("artifacts/ingest/latest");
    let products = fashionbert::schema::read_products(&a.join("products.parquet")).unwrap();
    let kept: Vec<(&str, &str)> = products
        .iter()
        .map(|p| (p.product_id.as_str(), p.image.as_str()))
        .collect();
    // `..` and links inside the folder are resolved: the stored path names the file itself.
    assert_eq!(
        kept,
        [
            ("1", "data/imgs/good.jpg"),
            ("17", "data/imgs/good2.png"),
            ("18", "data/imgs/good.jpg")
        ]
    );

    let rejects = fashionbert::table::read_parquet(&a.join("rejects.parquet")).unwrap();
    let ids = fashionbert::table::strings(&rejects, "product_id").unwrap();
    let reasons = fashionbert::table::strings(&rejects, "reason").unwrap();
    let lines = fashionbert::table::i64s(&rejects, "line").unwrap();
    let all = reasons.join("\n");
    assert_eq!(reasons.len(), want_rejected, "{all}");
    for (k, (id, cell, want)) in rows.iter().enumerate() {
        if want.is_empty() {
            continue;
        }
        let i = ids
            .iter()
            .position(|x| x == id)
            .unwrap_or_else(|| panic!("row {id} ({cell}) is not rejected:\n{all}"));
        assert!(
            reasons[i].starts_with(&format!("{want}: ")),
            "row {id} ({cell}): want {want:?}, got {:?}",
            reasons[i]
        );
        assert!(!reasons[i].ends_with('\n') && !reasons[i].contains('\n'));
        // Nothing outside was read: no read error, no "permission denied", no decoding.
        if *want == "image outside the image folder" {
            let r = reasons[i].to_lowercase();
            assert!(
                !r.contains("permission") && !r.contains("decode") && !r.contains("format"),
                "row {id}: {r}"
            );
            // Rejected while reading the CSV, so the reject names its line.
            assert_eq!(lines[i], k as i64 + 2, "row {id}");
        }
    }
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("larger than the 64 MiB limit")),
        "{all}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("truncated JPEG")),
        "{all}"
    );
    // Counted by reason in the manifest.
    let m = fashionbert::dag::Manifest::read(&a).unwrap();
    assert_eq!(m.counts["rejected"], want_rejected as u64);
    assert_eq!(m.counts["products"], 3);
    let by = &m.notes["rejected_by_reason"];
    assert_eq!(by["image outside the image folder"], 9, "{by}");
    assert_eq!(by["image not a regular file"], 2, "{by}");
    assert_eq!(by["image too large"], 1, "{by}");
    assert_eq!(by["hidden image path"], 1, "{by}");
    assert_eq!(by["undecodable image"], 2, "{by}");
    // The FIFOs are untouched: nobody opened them.
    use std::os::unix::fs::FileTypeExt;
    assert!(
        std::fs::metadata(outside.join("fifo.jpg"))
            .unwrap()
            .file_type()
            .is_fifo()
    );

    // Every image that went into a product is in the cache key: changing one re-runs ingest.
    let (_, st) = run_with_limit(d, &["status"], Duration::from_secs(120));
    assert!(st.contains("cached") && !st.contains("will run"), "{st}");
    std::fs::write(imgs.join("good.jpg"), jpeg_bytes(48, 32, 4)).unwrap();
    let (_, st) = run_with_limit(d, &["status"], Duration::from_secs(120));
    assert!(
        st.contains("will run"),
        "a changed image must invalidate ingest:\n{st}"
    );
}
