//! TensorFlow variable names (EasyTransfer's FashionBERT, Google's BERT) and ours, both ways.
//!
//! Ours are the PyTorch-style names of [`crate::models::fashionbert`] in PyTorch layouts
//! (Linear weights `[out, in]`). TensorFlow's dense kernels are `[in, out]` and are transposed;
//! so are EasyTransfer's `image_projector` `(2048, H)` and MPM `output_weights` `(H, 2048)`.
//! The alignment head's `cls/seq_relationship/output_weights` is `(2, H)` in TensorFlow too.
//! LayerNorms are `…/LayerNorm/{gamma,beta}` (`tf.contrib.layers.layer_norm`), the image
//! embeddings' `ImageEmbLayerNorm`.

use std::collections::{BTreeMap, BTreeSet};

use crate::models::fashionbert::FashionBertConfig;

/// How a TensorFlow tensor becomes ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Layout {
    AsIs,
    /// A 2-D transpose.
    Transpose,
}

use Layout::{AsIs, Transpose as T};

/// One rule: TensorFlow name, our name; `{i}` stands for an encoder layer's index.
#[rustfmt::skip]
const RULES: &[(&str, &str, Layout)] = &[
    ("bert/embeddings/word_embeddings", "bert.embeddings.word_embeddings.weight", AsIs),
    ("bert/embeddings/position_embeddings", "bert.embeddings.position_embeddings.weight", AsIs),
    ("bert/embeddings/token_type_embeddings", "bert.embeddings.token_type_embeddings.weight", AsIs),
    ("bert/embeddings/LayerNorm/gamma", "bert.embeddings.LayerNorm.weight", AsIs),
    ("bert/embeddings/LayerNorm/beta", "bert.embeddings.LayerNorm.bias", AsIs),
    ("bert/image_embeddings/image_projector", "bert.image_embeddings.image_projector.weight", T),
    ("bert/image_embeddings/patch_position_embeddings", "bert.image_embeddings.patch_position_embeddings.weight", AsIs),
    ("bert/image_embeddings/patch_type_embeddings", "bert.image_embeddings.patch_type_embeddings.weight", AsIs),
    ("bert/image_embeddings/ImageEmbLayerNorm/gamma", "bert.image_embeddings.LayerNorm.weight", AsIs),
    ("bert/image_embeddings/ImageEmbLayerNorm/beta", "bert.image_embeddings.LayerNorm.bias", AsIs),
    ("bert/encoder/layer_{i}/attention/self/query/kernel", "bert.encoder.layer.{i}.attention.self.query.weight", T),
    ("bert/encoder/layer_{i}/attention/self/query/bias", "bert.encoder.layer.{i}.attention.self.query.bias", AsIs),
    ("bert/encoder/layer_{i}/attention/self/key/kernel", "bert.encoder.layer.{i}.attention.self.key.weight", T),
    ("bert/encoder/layer_{i}/attention/self/key/bias", "bert.encoder.layer.{i}.attention.self.key.bias", AsIs),
    ("bert/encoder/layer_{i}/attention/self/value/kernel", "bert.encoder.layer.{i}.attention.self.value.weight", T),
    ("bert/encoder/layer_{i}/attention/self/value/bias", "bert.encoder.layer.{i}.attention.self.value.bias", AsIs),
    ("bert/encoder/layer_{i}/attention/output/dense/kernel", "bert.encoder.layer.{i}.attention.output.dense.weight", T),
    ("bert/encoder/layer_{i}/attention/output/dense/bias", "bert.encoder.layer.{i}.attention.output.dense.bias", AsIs),
    ("bert/encoder/layer_{i}/attention/output/LayerNorm/gamma", "bert.encoder.layer.{i}.attention.output.LayerNorm.weight", AsIs),
    ("bert/encoder/layer_{i}/attention/output/LayerNorm/beta", "bert.encoder.layer.{i}.attention.output.LayerNorm.bias", AsIs),
    ("bert/encoder/layer_{i}/intermediate/dense/kernel", "bert.encoder.layer.{i}.intermediate.dense.weight", T),
    ("bert/encoder/layer_{i}/intermediate/dense/bias", "bert.encoder.layer.{i}.intermediate.dense.bias", AsIs),
    ("bert/encoder/layer_{i}/output/dense/kernel", "bert.encoder.layer.{i}.output.dense.weight", T),
    ("bert/encoder/layer_{i}/output/dense/bias", "bert.encoder.layer.{i}.output.dense.bias", AsIs),
    ("bert/encoder/layer_{i}/output/LayerNorm/gamma", "bert.encoder.layer.{i}.output.LayerNorm.weight", AsIs),
    ("bert/encoder/layer_{i}/output/LayerNorm/beta", "bert.encoder.layer.{i}.output.LayerNorm.bias", AsIs),
    ("bert/pooler/dense/kernel", "bert.pooler.dense.weight", T),
    ("bert/pooler/dense/bias", "bert.pooler.dense.bias", AsIs),
    ("cls/predictions/transform/dense/kernel", "cls.predictions.transform.dense.weight", T),
    ("cls/predictions/transform/dense/bias", "cls.predictions.transform.dense.bias", AsIs),
    ("cls/predictions/transform/LayerNorm/gamma", "cls.predictions.transform.LayerNorm.weight", AsIs),
    ("cls/predictions/transform/LayerNorm/beta", "cls.predictions.transform.LayerNorm.bias", AsIs),
    ("cls/predictions/output_bias", "cls.predictions.bias", AsIs),
    ("cls/seq_relationship/output_weights", "cls.seq_relationship.weight", AsIs),
    ("cls/seq_relationship/output_bias", "cls.seq_relationship.bias", AsIs),
    ("cls/img_predictions/output_weights", "cls.img_predictions.weight", T),
];

/// `name` against `pattern` (one optional `{i}`): the layer index, or `Some(None)` for a
/// pattern without one.
fn matches(pattern: &str, name: &str) -> Option<Option<usize>> {
    match pattern.split_once("{i}") {
        None => (pattern == name).then_some(None),
        Some((pre, post)) => {
            let digits = name.strip_prefix(pre)?.strip_suffix(post)?;
            let ok = !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
            ok.then(|| digits.parse().ok()).flatten().map(Some)
        }
    }
}

/// `name` through the rules: TensorFlow → ours, or ours → TensorFlow when `reverse`.
fn translate(name: &str, reverse: bool) -> Option<(String, Layout)> {
    RULES.iter().find_map(|r| {
        let (src, dst) = if reverse { (r.1, r.0) } else { (r.0, r.1) };
        matches(src, name).map(|i| {
            let out = match i {
                Some(i) => dst.replace("{i}", &i.to_string()),
                None => dst.to_string(),
            };
            (out, r.2)
        })
    })
}

/// Our name for a TensorFlow variable (without outer scope), and how its layout changes.
pub fn to_ours(tf: &str) -> Option<(String, Layout)> {
    translate(tf, false)
}

/// The TensorFlow variable name for one of our tensors.
pub fn to_tf(ours: &str) -> Option<(String, Layout)> {
    translate(ours, true)
}

/// Optimizer state and step counters (Adam slots `…/adam_m`, `…/adam_v` of BERT's
/// AdamWeightDecayOptimizer, `…/Adam`, `…/Adam_1`, `beta{1,2}_power` of `tf.train.AdamOptimizer`,
/// `global_step`, TensorFlow 2's object graph): not weights, never loaded.
pub fn is_training_state(name: &str) -> bool {
    let last = name.rsplit('/').next().unwrap_or(name);
    matches!(
        last,
        "adam_m" | "adam_v" | "Adam" | "Adam_1" | "global_step" | "beta1_power" | "beta2_power"
    ) || name == "_CHECKPOINTABLE_OBJECT_GRAPH"
}

/// Which model a checkpoint holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Flavor {
    /// EasyTransfer's FashionBERT (`pai-imagebert`): image embeddings and the three heads; its
    /// `cls/seq_relationship` is the alignment head (label 1 = matched).
    EasyTransfer,
    /// Google's BERT: text only; its `cls/seq_relationship` is next-sentence prediction (label 0
    /// = IsNext), the opposite convention, so it is never loaded into the alignment head.
    GoogleBert,
}

/// The scope the checkpoint puts around `bert/…` (e.g. `pretrain/`; usually empty), found from
/// the word embeddings; None when there are none.
pub fn outer_scope<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<String> {
    const WORD: &str = "bert/embeddings/word_embeddings";
    names
        .into_iter()
        .filter_map(|n| n.strip_suffix(WORD))
        .filter(|s| s.is_empty() || s.ends_with('/'))
        .min_by_key(|s| s.len())
        .map(str::to_string)
}

/// EasyTransfer when any image part is there, else Google BERT.
pub fn flavor<'a>(names: impl IntoIterator<Item = &'a str>) -> Flavor {
    let image = names
        .into_iter()
        .any(|n| n.contains("bert/image_embeddings/") || n.contains("cls/img_predictions/"));
    if image {
        Flavor::EasyTransfer
    } else {
        Flavor::GoogleBert
    }
}

/// Our tensors (names and PyTorch shapes) of a model of this size that a checkpoint can
/// provide: the text BERT with its heads, and with `image` the image embeddings and the
/// masked-patch head. The contrastive and pair heads (`itc.*`, `itm.*`) are ours only.
pub fn expected(cfg: &FashionBertConfig, image: bool) -> BTreeMap<String, Vec<usize>> {
    let c = &cfg.bert;
    let (h, v, f) = (c.hidden_size, c.vocab_size, cfg.patch_feature_size);
    let mut m = BTreeMap::new();
    let mut put = |n: String, s: &[usize]| {
        m.insert(n, s.to_vec());
    };
    put("bert.embeddings.word_embeddings.weight".into(), &[v, h]);
    put(
        "bert.embeddings.position_embeddings.weight".into(),
        &[c.max_position_embeddings, h],
    );
    put(
        "bert.embeddings.token_type_embeddings.weight".into(),
        &[c.type_vocab_size, h],
    );
    for p in [
        "bert.embeddings.LayerNorm",
        "bert.pooler.dense",
        "cls.predictions.transform.LayerNorm",
        "cls.predictions.transform.dense",
    ] {
        put(format!("{p}.bias"), &[h]);
        if p.ends_with("LayerNorm") {
            put(format!("{p}.weight"), &[h]);
        } else {
            put(format!("{p}.weight"), &[h, h]);
        }
    }
    for i in 0..c.num_hidden_layers {
        let l = format!("bert.encoder.layer.{i}");
        for (m, o, n) in [
            ("attention.self.query", h, h),
            ("attention.self.key", h, h),
            ("attention.self.value", h, h),
            ("attention.output.dense", h, h),
            ("intermediate.dense", c.intermediate_size, h),
            ("output.dense", h, c.intermediate_size),
        ] {
            put(format!("{l}.{m}.weight"), &[o, n]);
            put(format!("{l}.{m}.bias"), &[o]);
        }
        for ln in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(format!("{l}.{ln}.weight"), &[h]);
            put(format!("{l}.{ln}.bias"), &[h]);
        }
    }
    put("cls.predictions.bias".into(), &[v]);
    put("cls.seq_relationship.weight".into(), &[2, h]);
    put("cls.seq_relationship.bias".into(), &[2]);
    if image {
        let im = "bert.image_embeddings";
        put(format!("{im}.image_projector.weight"), &[h, f]);
        put(
            format!("{im}.patch_position_embeddings.weight"),
            &[cfg.num_patches, h],
        );
        put(format!("{im}.patch_type_embeddings.weight"), &[2, h]);
        put(format!("{im}.LayerNorm.weight"), &[h]);
        put(format!("{im}.LayerNorm.bias"), &[h]);
        put("cls.img_predictions.weight".into(), &[f, h]);
    }
    m
}

/// The text backbone: what every initialisation must provide.
pub fn is_backbone(ours: &str) -> bool {
    ["bert.embeddings.", "bert.encoder.", "bert.pooler."]
        .iter()
        .any(|p| ours.starts_with(p))
}

/// How strictly a checkpoint must match the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Every tensor of the flavor, nothing else (a conversion).
    Exact,
    /// The backbone must be there; heads and image embeddings not in the checkpoint stay
    /// random; encoder layers beyond the model's are not used (a training initialisation).
    Init,
    /// As `Init`, but variables that are unknown or of the wrong shape are skipped (listed)
    /// and nothing is required.
    Partial,
}

/// One variable to load.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Mapped {
    pub tf: String,
    pub ours: String,
    pub layout: Layout,
}

/// What a checkpoint gives a model, decided from names and shapes alone.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Plan {
    pub scope: String,
    pub load: Vec<Mapped>,
    /// Optimizer state and counters.
    pub training_state: Vec<String>,
    /// Variables not loaded, each with why.
    pub unused: Vec<String>,
    /// Our tensors the checkpoint does not provide (left as initialised).
    pub missing: Vec<String>,
}

/// The problems that make a checkpoint unusable under a policy, each naming the variable.
#[derive(Debug, Default, PartialEq)]
pub struct Mismatch {
    pub missing: Vec<String>,
    pub unexpected: Vec<String>,
    pub bad_shape: Vec<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        let list = |v: &[String]| {
            let mut s = v.iter().take(12).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 12 {
                s.push_str(&format!(" and {} more", v.len() - 12));
            }
            s
        };
        if !self.missing.is_empty() {
            parts.push(format!("missing variables: {}", list(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected variables: {}", list(&self.unexpected)));
        }
        if !self.bad_shape.is_empty() {
            parts.push(format!("wrong shapes: {}", list(&self.bad_shape)));
        }
        write!(f, "{}", parts.join("; "))
    }
}

/// Matches a checkpoint's variables (`name → TF shape`, a checkpoint of `flavor`) to a model
/// of this size, with or without the image side (`image`: a FashionBERT, not a text BERT).
pub fn plan(
    vars: &BTreeMap<String, Vec<usize>>,
    cfg: &FashionBertConfig,
    flavor: Flavor,
    image: bool,
    policy: Policy,
) -> Result<Plan, Mismatch> {
    let scope = outer_scope(vars.keys().map(String::as_str)).unwrap_or_default();
    let want = expected(cfg, image);
    let mut plan = Plan {
        scope: scope.clone(),
        ..Plan::default()
    };
    let mut bad = Mismatch::default();
    let mut seen = BTreeSet::new();
    for (name, shape) in vars {
        if is_training_state(name) {
            plan.training_state.push(name.clone());
            continue;
        }
        let mapped = name.strip_prefix(scope.as_str()).and_then(to_ours);
        let Some((ours, layout)) = mapped else {
            match policy {
                Policy::Partial => plan.unused.push(format!("{name} (unknown)")),
                _ => bad.unexpected.push(name.clone()),
            }
            continue;
        };
        if flavor == Flavor::GoogleBert && ours.starts_with("cls.seq_relationship.") {
            plan.unused.push(format!(
                "{name} (next-sentence head: label 0 = IsNext, not the alignment head's convention)"
            ));
            continue;
        }
        let Some(want_shape) = want.get(&ours) else {
            // An encoder layer beyond the model's.
            match policy {
                Policy::Exact => bad.unexpected.push(name.clone()),
                _ => plan
                    .unused
                    .push(format!("{name} (beyond the model's layers)")),
            }
            continue;
        };
        let tf_shape = match layout {
            Layout::Transpose => want_shape.iter().rev().copied().collect(),
            Layout::AsIs => want_shape.clone(),
        };
        if *shape != tf_shape {
            let msg = format!("{name} is {shape:?}, the model needs {tf_shape:?}");
            match policy {
                Policy::Partial => plan.unused.push(format!("{msg} (skipped)")),
                _ => {
                    bad.bad_shape.push(msg);
                    seen.insert(ours); // reported once, as misshapen, not also as missing
                }
            }
            continue;
        }
        seen.insert(ours.clone());
        plan.load.push(Mapped {
            tf: name.clone(),
            ours,
            layout,
        });
    }
    for ours in want.keys().filter(|o| !seen.contains(*o)) {
        let nsp_of_google =
            flavor == Flavor::GoogleBert && ours.starts_with("cls.seq_relationship.");
        let required = match policy {
            Policy::Exact => {
                !nsp_of_google && (flavor == Flavor::EasyTransfer || is_backbone(ours))
            }
            Policy::Init => is_backbone(ours),
            Policy::Partial => false,
        };
        if required {
            let tf = to_tf(ours)
                .map(|(t, _)| format!("{scope}{t}"))
                .unwrap_or_default();
            bad.missing.push(tf);
        } else {
            plan.missing.push(ours.clone());
        }
    }
    if bad == Mismatch::default() {
        Ok(plan)
    } else {
        Err(bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::bert::BertConfig;

    fn small() -> FashionBertConfig {
        let mut b = BertConfig::new();
        b.vocab_size = 50;
        b.hidden_size = 8;
        b.num_hidden_layers = 2;
        b.num_attention_heads = 2;
        b.intermediate_size = 12;
        b.max_position_embeddings = 70;
        let mut c = FashionBertConfig::new(b);
        c.patch_feature_size = 6;
        c.num_patches = 4;
        c
    }

    /// TF names and shapes of a complete checkpoint of `cfg`, built through `to_tf`.
    fn tf_vars(
        cfg: &FashionBertConfig,
        flavor: Flavor,
        scope: &str,
    ) -> BTreeMap<String, Vec<usize>> {
        expected(cfg, flavor == Flavor::EasyTransfer)
            .into_iter()
            .map(|(ours, shape)| {
                let (tf, layout) = to_tf(&ours).unwrap_or_else(|| panic!("no TF name for {ours}"));
                let shape = match layout {
                    Layout::Transpose => shape.into_iter().rev().collect(),
                    Layout::AsIs => shape,
                };
                (format!("{scope}{tf}"), shape)
            })
            .collect()
    }

    #[test]
    fn every_name_maps_both_ways() {
        let cfg = small();
        for (ours, _) in expected(&cfg, true) {
            let (tf, l1) = to_tf(&ours).unwrap();
            let (back, l2) = to_ours(&tf).unwrap();
            assert_eq!((back.as_str(), l1), (ours.as_str(), l2));
        }
        // Every rule is used, and the model's names are exactly the reference's.
        assert_eq!(expected(&cfg, true).len(), RULES.len() - 16 + 16 * 2);
        assert_eq!(
            to_ours("bert/encoder/layer_11/attention/self/query/kernel"),
            Some((
                "bert.encoder.layer.11.attention.self.query.weight".into(),
                Layout::Transpose
            ))
        );
        assert_eq!(
            to_ours("cls/seq_relationship/output_weights"),
            Some(("cls.seq_relationship.weight".into(), Layout::AsIs))
        );
        assert_eq!(
            to_ours("cls/img_predictions/output_weights"),
            Some(("cls.img_predictions.weight".into(), Layout::Transpose))
        );
        assert_eq!(to_ours("bert/encoder/layer_x/output/dense/bias"), None);
        assert_eq!(to_ours("bert/encoder/layer_/output/dense/bias"), None);
        assert_eq!(to_ours("bert/embeddings/word_embeddings/adam_m"), None);
        assert_eq!(to_tf("itc.logit_scale"), None);
    }

    #[test]
    fn complete_checkpoints_plan_exactly() {
        let cfg = small();
        for scope in ["", "pretrain/"] {
            let mut vars = tf_vars(&cfg, Flavor::EasyTransfer, scope);
            vars.insert(
                format!("{scope}bert/pooler/dense/kernel/adam_m"),
                vec![8, 8],
            );
            vars.insert("global_step".into(), vec![]);
            assert_eq!(
                flavor(vars.keys().map(String::as_str)),
                Flavor::EasyTransfer
            );
            let p = plan(&vars, &cfg, Flavor::EasyTransfer, true, Policy::Exact).unwrap();
            assert_eq!(p.scope, scope);
            assert_eq!(p.load.len(), expected(&cfg, true).len());
            assert_eq!(p.training_state.len(), 2);
            assert!(p.missing.is_empty() && p.unused.is_empty());
        }
    }

    #[test]
    fn google_bert_leaves_the_image_side_random_and_the_nsp_head_unused() {
        let cfg = small();
        let vars = tf_vars(&cfg, Flavor::GoogleBert, "");
        assert_eq!(flavor(vars.keys().map(String::as_str)), Flavor::GoogleBert);
        // Initialising a FashionBERT from it: the image side is not in the checkpoint, and the
        // next-sentence head is not the alignment head.
        let p = plan(&vars, &cfg, Flavor::GoogleBert, true, Policy::Init).unwrap();
        assert!(
            p.load
                .iter()
                .all(|m| !m.ours.starts_with("cls.seq_relationship"))
        );
        assert_eq!(p.unused.len(), 2, "{:?}", p.unused);
        assert!(p.missing.iter().any(|m| m == "cls.seq_relationship.weight"));
        assert!(
            p.missing
                .contains(&"bert.image_embeddings.image_projector.weight".to_string())
        );
        // Converting it to a text BERT: complete.
        let p = plan(&vars, &cfg, Flavor::GoogleBert, false, Policy::Exact).unwrap();
        assert_eq!(p.load.len(), expected(&cfg, false).len() - 2);
        // A Google BERT without its heads still initialises (they stay random).
        let mut bare = vars.clone();
        bare.retain(|k, _| k.starts_with("bert/"));
        plan(&bare, &cfg, Flavor::GoogleBert, true, Policy::Init).unwrap();
        assert!(plan(&bare, &cfg, Flavor::EasyTransfer, true, Policy::Exact).is_err());
    }

    #[test]
    fn missing_unexpected_and_misshapen_variables_are_named() {
        let cfg = small();
        let mut vars = tf_vars(&cfg, Flavor::EasyTransfer, "");
        vars.remove("bert/encoder/layer_1/output/LayerNorm/beta");
        vars.insert("bert/encoder/layer_0/extra/kernel".into(), vec![8, 8]);
        vars.insert("bert/pooler/dense/kernel".into(), vec![8, 9]);
        let e = plan(&vars, &cfg, Flavor::EasyTransfer, true, Policy::Exact).unwrap_err();
        assert_eq!(e.missing, ["bert/encoder/layer_1/output/LayerNorm/beta"]);
        assert_eq!(e.unexpected, ["bert/encoder/layer_0/extra/kernel"]);
        assert_eq!(e.bad_shape.len(), 1);
        let text = e.to_string();
        assert!(
            text.contains("bert/pooler/dense/kernel is [8, 9], the model needs [8, 8]"),
            "{text}"
        );
        // Partial: the same checkpoint loads what it can and lists the rest.
        let p = plan(&vars, &cfg, Flavor::EasyTransfer, true, Policy::Partial).unwrap();
        assert_eq!(p.unused.len(), 2, "{:?}", p.unused);
        assert!(p.missing.contains(&"bert.pooler.dense.weight".to_string()));
        // Init of a model with fewer layers: the extra layer is unused, not an error.
        let mut one = small();
        one.bert.num_hidden_layers = 1;
        let full = tf_vars(&cfg, Flavor::EasyTransfer, "");
        let p = plan(&full, &one, Flavor::EasyTransfer, true, Policy::Init).unwrap();
        assert_eq!(p.unused.len(), 16);
        assert!(plan(&full, &one, Flavor::EasyTransfer, true, Policy::Exact).is_err());
    }

    #[test]
    fn training_state_is_recognised() {
        for n in [
            "global_step",
            "bert/pooler/dense/kernel/adam_m",
            "scope/bert/pooler/dense/kernel/adam_v",
            "bert/pooler/dense/bias/Adam_1",
            "beta1_power",
        ] {
            assert!(is_training_state(n), "{n}");
        }
        assert!(!is_training_state("bert/pooler/dense/kernel"));
    }
}
