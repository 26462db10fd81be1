//! fashionbert: fashion image–text data preparation, FashionBERT pretraining and cross-modal
//! retrieval evaluation, as a declarative pipeline.
//!
//! - [`dag`]: the generic pipeline runner (config, graph, content hashing, artefact store).
//! - [`stages`]: the FashionBERT pipeline's stages, one module each.
//! - [`table`]: parquet helpers; [`progress`]: bars and logging.

pub mod catalogue;
pub mod cli;
pub mod dag;
pub mod device;
pub mod error;
pub mod eval;
pub mod extract;
pub mod featstore;
pub mod images;
pub mod models;
pub mod progress;
pub mod schema;
pub mod search;
pub mod serve;
pub mod show;
pub mod sources;
pub mod stages;
pub mod table;
pub mod text;
pub mod training;
pub mod tsv;
pub mod weights;

pub use error::{Error, Result};
