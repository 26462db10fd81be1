//! The FashionBERT pipeline's stages. Each module declares its `SPEC` (inputs, params,
//! outputs) at the top and implements [`crate::dag::Stage`].

pub mod embed;
pub mod evaluate;
pub mod features;
pub mod ingest;
pub mod negatives;
pub mod pairs;
pub mod patches;
pub mod records;
pub mod tokenize;
pub mod train;

use crate::dag::{ParamDefault, ParamKind, ParamSpec, Registry};

/// Keys of the `[runtime]` section (not part of any cache key).
pub const RUNTIME: &[ParamSpec] = &[
    ParamSpec::new(
        "device",
        ParamKind::Choice(&["auto", "flex", "tch", "tch-cuda"]),
        ParamDefault::Str("auto"),
        "compute device: auto (CUDA if available, else libtorch CPU, else flex), flex (pure Rust CPU), tch (libtorch CPU), tch-cuda",
    ),
    ParamSpec::new(
        "threads",
        ParamKind::Int,
        ParamDefault::Int(0),
        "CPU threads for compute and data loading (0 = all cores)",
    )
    .range(0.0, 1024.0),
    ParamSpec::new(
        "replicas",
        ParamKind::Int,
        ParamDefault::Int(1),
        "data-parallel replicas for `train`: 1 = one device; N = the first N CUDA GPUs with tch-cuda (each computes a chunk of every batch; the loss and gradients are the whole batch's), or N copies on the CPU device (exercises the same path, no faster)",
    )
    .range(1.0, 1024.0),
];

/// Every stage of the FashionBERT pipeline.
pub fn registry() -> Registry {
    Registry::new(RUNTIME)
        .with(ingest::Ingest)
        .with(pairs::Pairs)
        .with(negatives::Negatives)
        .with(tokenize::Tokenize)
        .with(patches::Patches)
        .with(features::Features)
        .with(records::RecordsStage)
        .with(train::Train)
        .with(evaluate::Evaluate)
        .with(embed::Embed)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::dag::{Params, StageParams};

    /// Every param says what it does (`fashionbert params` shows it), and each stage's typed
    /// params read its defaults.
    #[test]
    fn every_param_is_documented_and_the_defaults_read_into_the_typed_params() {
        for spec in super::registry().specs() {
            for p in spec.params {
                assert!(
                    !p.doc.trim().is_empty(),
                    "{}.{} has no doc",
                    spec.name,
                    p.name
                );
            }
        }
        fn defaults<T: StageParams>() -> T {
            T::from_params(&Params::with_defaults(T::specs(), BTreeMap::new())).unwrap()
        }
        assert_eq!(defaults::<super::negatives::NegativesParams>().seed, 7);
        assert_eq!(defaults::<super::patches::PatchesParams>().grid, 8);
        assert_eq!(defaults::<super::tokenize::TokenizeParams>().max_len, 64);
        assert_eq!(
            defaults::<super::features::FeaturesParams>().dtype,
            crate::featstore::FeatDType::F16
        );
        assert_eq!(defaults::<super::ingest::IngestParams>().csv, None);
        assert_eq!(defaults::<super::train::TrainParams>().config, None);
        assert_eq!(
            defaults::<super::evaluate::EvaluateParams>().score,
            crate::eval::scoring::ScoreName::Itm
        );
    }
}
