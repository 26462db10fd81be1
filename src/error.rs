//! The library's error type: every variant says which file, row or field, and what to do.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Dag(#[from] crate::dag::DagError),
    #[error(transparent)]
    Table(#[from] crate::table::TableError),
    #[error(transparent)]
    Param(#[from] crate::dag::params::ParamError),
    #[error(transparent)]
    Image(#[from] crate::images::decode::ImageError),
    #[error(transparent)]
    Tfjs(#[from] crate::weights::tfjs::TfjsError),
    /// Reading a tensor back from the compute device (what was being read, and why it failed).
    #[error("reading {what} back from the device: {source}")]
    ReadBack {
        what: &'static str,
        source: burn::tensor::TensorReadError,
    },
    /// Model weights that cannot be read or written (safetensors or a PyTorch file, through
    /// burn's stores).
    #[error("{}: {source}", path.display())]
    Weights {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A training checkpoint (model or optimiser state) that cannot be read or written.
    #[error("checkpoint {}: {source}", path.display())]
    Checkpoint {
        path: PathBuf,
        source: burn::store::RecordError,
    },
    #[error("safetensors: {0}")]
    Safetensors(#[from] safetensors::SafeTensorError),
    #[error(transparent)]
    TfCheckpoint(#[from] crate::weights::tfckpt::TfCkptError),
    /// A Hugging Face `config.json` that is not a BERT config this crate can build.
    #[error("{}: {source}", path.display())]
    BertConfig {
        path: PathBuf,
        source: crate::models::bert::BertConfigError,
    },
    /// An image or a drawing that cannot be written.
    #[error("writing {}: {source}", path.display())]
    Render {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The tokenizer failed on a text.
    #[error("tokenizing {text:?}: {source}")]
    Tokenize {
        text: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Bad input data: a file, optionally a row and a field, and what is wrong with it.
    #[error("{}{}{}: {message}", path.display(), row.map(|r| format!(", row {r}")).unwrap_or_default(), field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
    Input {
        path: PathBuf,
        row: Option<usize>,
        field: Option<String>,
        message: String,
    },
    /// A model, checkpoint or weights problem.
    #[error("{0}")]
    Model(String),
    /// Weights that do not fit the model's config (the config saved beside them, most likely).
    #[error("{source} (does {} match these weights?)", config.display())]
    WeightsMismatch { config: PathBuf, source: Box<Error> },
    /// Training stopped at a non-finite loss.
    #[error(
        "a loss became non-finite at step {step} (total {total}, mlm {mlm}, alignment {alignment}, mpm {mpm}, grad norm {grad_norm}); the last good checkpoint (step {last_good}) is in {} — lower the learning rate and run again with --resume",
        checkpoint.display()
    )]
    NonFiniteLoss {
        step: usize,
        total: f32,
        mlm: f32,
        alignment: f32,
        mpm: f32,
        grad_norm: f32,
        last_good: u64,
        checkpoint: PathBuf,
    },
    #[error("{0}")]
    Msg(String),
}

impl Error {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// For `tensor.try_into_vec_as::<E>().map_err(Error::read_back("logits"))`.
    pub fn read_back(what: &'static str) -> impl FnOnce(burn::tensor::TensorReadError) -> Error {
        move |source| Error::ReadBack { what, source }
    }

    /// For `image.save(&path).map_err(Error::render(&path))` and drawing backends.
    pub fn render<E: std::error::Error + Send + Sync + 'static>(
        path: &Path,
    ) -> impl FnOnce(E) -> Error + '_ {
        move |e| Error::Render {
            path: path.to_path_buf(),
            source: Box::new(e),
        }
    }

    pub fn msg(m: impl Into<String>) -> Self {
        Error::Msg(m.into())
    }

    pub fn input(path: &Path, message: impl Into<String>) -> Self {
        Error::Input {
            path: path.to_path_buf(),
            row: None,
            field: None,
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a path to an io::Result.
/// Creates the folder an `--out` flag names (and its parents); a file already there is an error
/// that says so (not the OS's "File exists").
pub fn create_out_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        return Err(Error::msg(format!(
            "--out {}: a file is there, not a folder: give a folder (it is created if missing) or move the file",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir).at(dir)
}

pub trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    /// Issue 31: `--out` naming a file says so, instead of "File exists (os error 17)"; a
    /// missing folder is made, an existing one kept.
    #[test]
    fn an_out_folder_that_is_a_file_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("existing");
        std::fs::write(&f, b"x").unwrap();
        let e = super::create_out_dir(&f).unwrap_err().to_string();
        assert!(
            e.contains("a file is there, not a folder") && !e.contains("os error"),
            "{e}"
        );
        let new = dir.path().join("a/b");
        super::create_out_dir(&new).unwrap();
        super::create_out_dir(&new).unwrap();
        assert!(new.is_dir());
    }
}
