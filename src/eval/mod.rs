//! Evaluation: retrieval metrics (corrected and EasyTransfer-compatible), scoring with a trained
//! model, the original's prediction-file format, and the report's plots.

pub mod breakdown;
pub mod metrics;
pub mod original;
pub mod predfile;
pub mod probe;
pub mod rank;
pub mod report;
pub mod scoring;
pub mod sets;
