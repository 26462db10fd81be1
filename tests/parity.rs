//! Numbers that must match the reference implementations, run from Python in the test:
//! torchvision's ResNet-50 (v1.5, and v1 with the stride moved and eps 1e-3), Hugging Face's
//! BertModel on the real MiniLM weights, and an independent PyTorch FashionBERT written from
//! the reference document (logits, every loss, the adaptive weights, gradients).

mod common;

use burn::tensor::{Device, Int, Tensor, TensorData};
use common::*;
use fashionbert::models::bert::BertConfig;
use fashionbert::models::fashionbert::{
    Batch, FashionBertConfig, ItcBatch, LossWeighting, MaskedPatchInput, losses,
};
use fashionbert::models::io;
use fashionbert::models::resnet::Convention;

fn devices() -> Vec<(&'static str, Device)> {
    let mut v = vec![("flex", Device::flex())];
    #[allow(deprecated)]
    v.push(("tch", Device::libtorch()));
    v
}

/// Random torchvision ResNet-50 weights (BatchNorm statistics randomised too) and random
/// preprocessed inputs; Python runs torchvision, we run ours on the same files.
#[test]
fn resnet50_matches_torchvision_in_both_conventions() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = d.join("w.safetensors");
    let x = d.join("x.safetensors");
    py(&[
        "-c",
        r#"
import sys, torch, torchvision
from safetensors.torch import save_file
torch.manual_seed(0)
m = torchvision.models.resnet50()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.normal_(0, 0.1); mod.running_var.uniform_(0.5, 1.5)
        mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.normal_(0, 0.1)
sd = {k: v.contiguous() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
save_file(sd, sys.argv[1], metadata={"format": "pt"})
torch.save(m.state_dict(), sys.argv[3])
save_file({"images": torch.randn(6, 3, 32, 32)}, sys.argv[2])
"#,
        w.to_str().unwrap(),
        x.to_str().unwrap(),
        d.join("w.pth").to_str().unwrap(),
    ]);
    let input = load_st(&x);
    let (shape, pixels) = input["images"].clone();
    for conv in [Convention::V1_5, Convention::V1] {
        let y = d.join(format!("y-{}.safetensors", conv.name()));
        py(&[
            &script("resnet_reference.py"),
            "forward",
            "--weights",
            w.to_str().unwrap(),
            "--convention",
            conv.name(),
            "--input",
            x.to_str().unwrap(),
            "--output",
            y.to_str().unwrap(),
        ]);
        let want = load_st(&y);
        for (name, device) in devices() {
            let model =
                fashionbert::weights::load_resnet50(w.to_str().unwrap(), d, conv, &device).unwrap();
            let t = Tensor::<4>::from_data(
                TensorData::new(pixels.clone(), [shape[0], shape[1], shape[2], shape[3]]),
                &device,
            );
            let pooled = model.pooled(t.clone());
            let logits: Vec<f32> = model.logits(pooled.clone()).try_into_vec_as().unwrap();
            let pooled: Vec<f32> = pooled.try_into_vec_as().unwrap();
            let e = max_abs_diff(&pooled, &want["pooled"].1);
            assert!(e < 1e-3, "{} {name}: pooled max abs error {e}", conv.name());
            let e = max_abs_diff(&logits, &want["logits"].1);
            assert!(e < 1e-3, "{} {name}: logits max abs error {e}", conv.name());
            // BatchNorm folded into the convolutions computes the same function.
            let folded: Vec<f32> = model.fold().pooled(t).try_into_vec_as().unwrap();
            let e = max_abs_diff(&folded, &want["pooled"].1);
            assert!(e < 1e-3, "{} {name} folded: max abs error {e}", conv.name());
            // The same weights as a torchvision state dict (.pth) load to the same network.
            let from_pth = fashionbert::weights::load_resnet50(
                d.join("w.pth").to_str().unwrap(),
                d,
                conv,
                &device,
            )
            .unwrap();
            let p: Vec<f32> = from_pth
                .fold()
                .pooled(Tensor::<4>::from_data(
                    TensorData::new(pixels.clone(), [shape[0], shape[1], shape[2], shape[3]]),
                    &device,
                ))
                .try_into_vec_as()
                .unwrap();
            assert!(
                max_abs_diff(&p, &folded) < 1e-5,
                ".pth and .safetensors load differently"
            );
            eprintln!("resnet50 {} on {name}: max abs error {e:.2e}", conv.name());
        }
    }
}

/// Hugging Face's `BertModel` outputs (`bert_reference.py`, with `extra` flags) for the model
/// folder `model` on `[input_ids, attention_mask, token_type_ids]` of shape `[b, l]`, via files
/// in `dir`.
fn hf_bert_reference(
    dir: &std::path::Path,
    model: &std::path::Path,
    inputs: [&Vec<i64>; 3],
    [b, l]: [usize; 2],
    extra: &[&str],
) -> std::collections::HashMap<String, (Vec<usize>, Vec<f32>)> {
    let inp = dir.join("in.safetensors");
    save_st(
        &inp,
        ["input_ids", "attention_mask", "token_type_ids"]
            .into_iter()
            .zip(inputs)
            .map(|(name, v)| (name, St::I64(vec![b, l], v.clone())))
            .collect(),
    );
    let out = dir.join("out.safetensors");
    let mut args = vec![
        script("bert_reference.py"),
        "--model-dir".into(),
        model.to_str().unwrap().to_string(),
        "--inputs".into(),
        inp.to_str().unwrap().to_string(),
        "--output".into(),
        out.to_str().unwrap().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    py(&args.iter().map(String::as_str).collect::<Vec<_>>());
    load_st(&out)
}

/// The encoder against Hugging Face's BertModel, on the real all-MiniLM-L6-v2 weights.
#[test]
fn bert_encoder_matches_huggingface_on_minilm() {
    let weights = weights_dir();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let minilm = weights.join("minilm");
    let cfg = io::read_bert_config(&minilm.join("config.json")).unwrap();
    let (b, l) = (3usize, 24usize);
    let ids: Vec<i64> = (0..b * l)
        .map(|i| {
            if i % l == 0 {
                101
            } else {
                1000 + (i as i64 * 7919) % 28000
            }
        })
        .collect();
    let mask: Vec<i64> = (0..b * l)
        .map(|i| if i / l == 1 && i % l > 15 { 0 } else { 1 })
        .collect();
    let types: Vec<i64> = (0..b * l).map(|i| if i % l > 12 { 1 } else { 0 }).collect();
    let want = hf_bert_reference(d, &minilm, [&ids, &mask, &types], [b, l], &[]);
    for (name, device) in devices() {
        let model = io::load_bert(&minilm.join("model.safetensors"), &cfg, &device).unwrap();
        let t =
            |v: &Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v.clone(), [b, l]), &device);
        let m = Tensor::<2>::from_data(
            TensorData::new(mask.iter().map(|&x| x as f32).collect::<Vec<_>>(), [b, l]),
            &device,
        );
        let (hs, pooled) = model.forward(t(&ids), m, t(&types));
        assert_eq!(hs.len(), cfg.num_hidden_layers + 1);
        let mut worst = 0f32;
        for (i, h) in hs.into_iter().enumerate() {
            let got: Vec<f32> = h.try_into_vec_as().unwrap();
            let e = max_abs_diff(&got, &want[&format!("hidden_states.{i}")].1);
            worst = worst.max(e);
            assert!(e < 1e-4, "{name}: hidden state {i} max abs error {e}");
        }
        let got: Vec<f32> = pooled.try_into_vec_as().unwrap();
        assert!(max_abs_diff(&got, &want["pooler_output"].1) < 1e-4);
        eprintln!("MiniLM encoder on {name}: worst hidden-state error {worst:.2e}");
    }
}

fn small_config(masked: &str) -> (serde_json::Value, FashionBertConfig) {
    let json = serde_json::json!({
        "vocab_size": 200, "hidden_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
        "intermediate_size": 96, "max_position_embeddings": 64, "type_vocab_size": 2,
        "layer_norm_eps": 1e-12, "hidden_act": "gelu_new", "masked_patch_input": masked,
    });
    let mut bert = BertConfig::from_hf_json(&json.to_string()).unwrap();
    bert.hidden_dropout_prob = 0.0;
    bert.attention_probs_dropout_prob = 0.0;
    (json, FashionBertConfig::new(bert))
}

fn batch_from(
    inputs: &std::collections::HashMap<String, (Vec<usize>, Vec<f32>)>,
    device: &Device,
) -> Batch {
    let f2 = |n: &str| {
        let (s, v) = &inputs[n];
        Tensor::<2>::from_data(TensorData::new(v.clone(), [s[0], s[1]]), device)
    };
    let i2 = |n: &str| {
        let (s, v) = &inputs[n];
        Tensor::<2, Int>::from_data(
            TensorData::new(
                v.iter().map(|&x| x as i64).collect::<Vec<_>>(),
                [s[0], s[1]],
            ),
            device,
        )
    };
    let (fs, fv) = &inputs["image_feature"];
    let (ps, pv) = &inputs["masked_patch_positions"];
    let (b, p) = (fs[0], fs[1]);
    let mut masked = vec![0f32; b * p];
    let mut weights = vec![0f32; pv.len()];
    for r in 0..b {
        let row = &pv[r * ps[1]..(r + 1) * ps[1]];
        for (j, &q) in row.iter().enumerate() {
            masked[r * p + q as usize] = 1.0;
            weights[r * ps[1] + j] = 1.0 / row.iter().filter(|&&x| x == q).count() as f32;
        }
    }
    let labels = &inputs["labels"].1;
    Batch {
        input_ids: i2("input_ids"),
        input_mask: f2("input_mask"),
        segment_ids: i2("segment_ids"),
        image_feature: Tensor::<3>::from_data(TensorData::new(fv.clone(), [b, p, fs[2]]), device),
        image_mask: f2("image_mask"),
        patch_masked: Tensor::<3>::from_data(TensorData::new(masked, [b, p, 1]), device),
        masked_patch_positions: i2("masked_patch_positions"),
        masked_patch_weights: Tensor::<2>::from_data(
            TensorData::new(weights, [ps[0], ps[1]]),
            device,
        ),
        masked_lm_positions: i2("masked_lm_positions"),
        masked_lm_ids: i2("masked_lm_ids"),
        masked_lm_weights: f2("masked_lm_weights"),
        labels: Tensor::<1, Int>::from_data(
            TensorData::new(labels.iter().map(|&x| x as i64).collect::<Vec<_>>(), [b]),
            device,
        ),
        itc: None,
    }
}

/// FashionBERT's logits, losses, adaptive weights and gradients against the PyTorch
/// reference, on shared random weights, in both masked-patch modes.
#[test]
fn fashionbert_matches_the_pytorch_reference() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for mode in ["zero_patch", "zero_vector"] {
        let (json, cfg) = small_config(mode);
        let c = d.join(format!("{mode}.json"));
        std::fs::write(&c, json.to_string()).unwrap();
        let (w, i, o) = (
            d.join(format!("{mode}-w.st")),
            d.join(format!("{mode}-i.st")),
            d.join(format!("{mode}-o.st")),
        );
        let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
        py(&[
            &script("fashionbert_reference.py"),
            "init",
            "--config",
            &s(&c),
            "--seed",
            "3",
            "--output",
            &s(&w),
        ]);
        py(&[
            &script("fashionbert_reference.py"),
            "make-inputs",
            "--config",
            &s(&c),
            "--batch",
            "3",
            "--seed",
            "4",
            "--pad-patches",
            "3",
            "--output",
            &s(&i),
        ]);
        py(&[
            &script("fashionbert_reference.py"),
            "forward",
            "--config",
            &s(&c),
            "--weights",
            &s(&w),
            "--inputs",
            &s(&i),
            "--output",
            &s(&o),
            "--grads",
        ]);
        let inputs = load_st(&i);
        let want = load_st(&o);
        for (name, device) in devices() {
            let device = device.autodiff();
            let mut model = cfg.init(&device);
            io::load_weights(&mut model, &w).unwrap();
            let batch = batch_from(&inputs, &device);
            let masked = match inputs.get("zero_patch_feature") {
                Some((_, z)) if mode == "zero_patch" => MaskedPatchInput::ZeroPatch(z.clone()),
                _ => MaskedPatchInput::ZeroVector,
            };
            let out = model.forward(&batch, &masked);
            let l = losses(&out, &batch, &LossWeighting::Adaptive { detach: true });
            let v = |t: Tensor<2>| -> Vec<f32> { t.try_into_vec_as().unwrap() };
            let check = |what: &str, got: Vec<f32>, tol: f32| {
                let e = max_abs_diff(&got, &want[what].1);
                assert!(e < tol, "{mode} {name}: {what} max abs error {e}");
            };
            check(
                "sequence_output",
                out.sequence.clone().try_into_vec_as().unwrap(),
                1e-4,
            );
            check("pooled_output", v(out.pooled.clone()), 1e-4);
            check("mlm_logits", v(out.mlm_logits.clone()), 1e-4);
            check("tia_logits", v(out.tia_logits.clone()), 1e-4);
            check("mpm_logits", v(out.mpm_logits.clone()), 1e-4);
            check("loss_mlm", l.mlm.clone().try_into_vec_as().unwrap(), 1e-5);
            check("loss_tia", l.tia.clone().try_into_vec_as().unwrap(), 1e-5);
            check("loss_mpm", l.mpm.clone().try_into_vec_as().unwrap(), 1e-6);
            check(
                "loss_weights",
                l.weights.clone().try_into_vec_as().unwrap(),
                1e-6,
            );
            check(
                "loss_total",
                l.total.clone().try_into_vec_as().unwrap(),
                1e-5,
            );
            // The adaptive weights are the formula's.
            let g: Vec<f32> = [&l.mlm, &l.tia, &l.mpm]
                .iter()
                .map(|t| (*t).clone().into_scalar::<f32>())
                .collect();
            let s: Vec<f64> = {
                let e: Vec<f64> = g.iter().map(|x| (*x as f64).exp()).collect();
                let z: f64 = e.iter().sum();
                e.iter().map(|x| x / z).collect()
            };
            let inv: Vec<f64> = s.iter().map(|x| 1.0 / (3.0 - x * x)).collect();
            let z: f64 = inv.iter().sum();
            let got: Vec<f32> = l.weights.clone().try_into_vec_as().unwrap();
            for k in 0..3 {
                assert!((got[k] as f64 - inv[k] / z).abs() < 1e-6);
            }
            // Gradients of the total loss.
            let grads = l.total.backward();
            let gw =
                |t: &Tensor<2>| -> Vec<f32> { t.grad(&grads).unwrap().try_into_vec_as().unwrap() };
            let transpose = |v: Vec<f32>, r: usize, c: usize| -> Vec<f32> {
                (0..c)
                    .flat_map(|j| (0..r).map(move |i| (i, j)))
                    .map(|(i, j)| v[i * c + j])
                    .collect()
            };
            let h = cfg.bert.hidden_size;
            let word = gw(&model.bert.embeddings.word_embeddings.weight.val());
            let e = max_abs_diff(
                &word,
                &want["grad.bert.embeddings.word_embeddings.weight"].1,
            );
            assert!(e < 1e-4, "{mode} {name}: word embedding grad error {e}");
            let proj = transpose(
                gw(&model.bert.image_embeddings.image_projector.weight.val()),
                2048,
                h,
            );
            let e = max_abs_diff(
                &proj,
                &want["grad.bert.image_embeddings.image_projector.weight"].1,
            );
            assert!(e < 1e-4, "{mode} {name}: projector grad error {e}");
            let q = transpose(
                gw(&model.bert.encoder.layer[0]
                    .attention
                    .self_
                    .query
                    .weight
                    .val()),
                h,
                h,
            );
            let e = max_abs_diff(
                &q,
                &want["grad.bert.encoder.layer.0.attention.self.query.weight"].1,
            );
            assert!(e < 1e-4, "{mode} {name}: query grad error {e}");
            let mpm = transpose(gw(&model.cls.img_predictions.weight.val()), h, 2048);
            let e = max_abs_diff(&mpm, &want["grad.cls.img_predictions.weight"].1);
            assert!(e < 1e-4, "{mode} {name}: MPM head grad error {e}");
            eprintln!("fashionbert {mode} on {name}: logits, losses, weights and gradients match");
        }
    }
}

/// The contrastive (ITC) loss, its similarities and the gradients of (total + ITC) against the
/// PyTorch reference on shared random weights; rows 0 and 1 stand for one product (soft targets).
/// The model also has the alignment head's pair term (`itm_pair_dim`), so its logits and
/// gradients are checked here too.
#[test]
fn itc_loss_matches_the_pytorch_reference() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mut json, mut cfg) = small_config("zero_vector");
    json["itc_dim"] = serde_json::json!(16);
    cfg.itc_dim = 16;
    json["itm_pair_dim"] = serde_json::json!(8);
    cfg.itm_pair_dim = 8;
    let c = d.join("itc.json");
    std::fs::write(&c, json.to_string()).unwrap();
    let (w, i, o) = (d.join("w.st"), d.join("i.st"), d.join("o.st"));
    let s = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let r = script("fashionbert_reference.py");
    py(&[
        &r,
        "init",
        "--config",
        &s(&c),
        "--seed",
        "5",
        "--output",
        &s(&w),
    ]);
    py(&[
        &r,
        "make-inputs",
        "--config",
        &s(&c),
        "--batch",
        "4",
        "--seed",
        "6",
        "--output",
        &s(&i),
    ]);
    py(&[
        &r,
        "forward",
        "--config",
        &s(&c),
        "--weights",
        &s(&w),
        "--inputs",
        &s(&i),
        "--output",
        &s(&o),
        "--grads",
    ]);
    let inputs = load_st(&i);
    let want = load_st(&o);
    for (name, device) in devices() {
        let device = device.autodiff();
        let mut model = cfg.init(&device);
        io::load_weights(&mut model, &w).unwrap();
        let mut batch = batch_from(&inputs, &device);
        let int = |n: &str| -> Vec<i64> { inputs[n].1.iter().map(|&x| x as i64).collect() };
        let (ts, tv) = &inputs["itc_targets"];
        let (ms, mv) = &inputs["itc_input_mask"];
        let itc = ItcBatch {
            rows: Tensor::<1, Int>::from_data(TensorData::new(int("itc_rows"), [ts[0]]), &device),
            input_ids: Tensor::<2, Int>::from_data(
                TensorData::new(int("itc_input_ids"), [ms[0], ms[1]]),
                &device,
            ),
            input_mask: Tensor::<2>::from_data(
                TensorData::new(mv.clone(), [ms[0], ms[1]]),
                &device,
            ),
            segment_ids: Tensor::<2, Int>::zeros([ms[0], ms[1]], &device),
            targets: Tensor::<2>::from_data(TensorData::new(tv.clone(), [ts[0], ts[1]]), &device),
        };
        batch.itc = Some(itc.clone());
        let out = model.forward(&batch, &MaskedPatchInput::ZeroVector);
        let e = max_abs_diff(
            &out.tia_logits.clone().try_into_vec_as::<f32>().unwrap(),
            &want["tia_logits"].1,
        );
        assert!(
            e < 1e-5,
            "{name}: alignment logits (with the pair term) error {e}"
        );
        let l = losses(&out, &batch, &LossWeighting::Adaptive { detach: true });
        let (li, sim) = model.itc_forward(&batch, &itc);
        let got: Vec<f32> = li.clone().try_into_vec_as().unwrap();
        let e = max_abs_diff(&got, &want["loss_itc"].1);
        assert!(
            e < 1e-5,
            "{name}: ITC loss error {e} ({got:?} vs {:?})",
            want["loss_itc"].1
        );
        let e = max_abs_diff(&sim.try_into_vec_as::<f32>().unwrap(), &want["itc_sim"].1);
        assert!(e < 1e-4, "{name}: ITC similarity error {e}");
        let grads = (l.total + li).backward();
        let gw = |t: &Tensor<2>| -> Vec<f32> { t.grad(&grads).unwrap().try_into_vec_as().unwrap() };
        let transpose = |v: Vec<f32>, r: usize, c: usize| -> Vec<f32> {
            (0..c)
                .flat_map(|j| (0..r).map(move |i| (i, j)))
                .map(|(i, j)| v[i * c + j])
                .collect()
        };
        let h = cfg.bert.hidden_size;
        let itc_head = model.itc.as_ref().unwrap();
        let itm = model.itm.as_ref().unwrap();
        for (what, got) in [
            (
                "grad.itm.text_proj.weight",
                transpose(gw(&itm.text_proj.weight.val()), h, 8),
            ),
            (
                "grad.itm.image_proj.weight",
                transpose(gw(&itm.image_proj.weight.val()), h, 8),
            ),
            (
                "grad.itm.classifier.weight",
                transpose(gw(&itm.classifier.weight.val()), 8, 2),
            ),
            (
                "grad.itc.text_proj.weight",
                transpose(gw(&itc_head.text_proj.weight.val()), h, 16),
            ),
            (
                "grad.itc.image_proj.weight",
                transpose(gw(&itc_head.image_proj.weight.val()), h, 16),
            ),
            (
                "grad.bert.embeddings.word_embeddings.weight",
                gw(&model.bert.embeddings.word_embeddings.weight.val()),
            ),
            (
                "grad.bert.image_embeddings.image_projector.weight",
                transpose(
                    gw(&model.bert.image_embeddings.image_projector.weight.val()),
                    2048,
                    h,
                ),
            ),
        ] {
            let e = max_abs_diff(&got, &want[what].1);
            assert!(e < 1e-4, "{name}: {what} error {e}");
        }
        let gs: Vec<f32> = itc_head
            .logit_scale
            .val()
            .grad(&grads)
            .unwrap()
            .try_into_vec_as()
            .unwrap();
        let e = max_abs_diff(&gs, &want["grad.itc.logit_scale"].1);
        assert!(e < 1e-5, "{name}: logit_scale grad error {e}");
        eprintln!("ITC on {name}: loss, similarities and gradients match");
    }
}

/// The `grid` extractor (one pass over the whole image, the cells of the stride-32 map) against
/// torchvision's ResNet-50 run on the same preprocessed images, at grid_scale 1 and 2.
#[test]
fn grid_features_match_torchvision_whole_image_pass() {
    use fashionbert::extract::{FeatureExtractor, GridExtractor};
    use fashionbert::schema::Grid;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let w = d.join("w.safetensors");
    let out = d.join("out.safetensors");
    // grid 2: 64-px input (2×2 map) at scale 1, 128-px input (4×4 map pooled 2×2) at scale 2.
    py(&[
        "-c",
        r#"
import sys, torch, torchvision
from safetensors.torch import save_file
torch.manual_seed(1)
m = torchvision.models.resnet50()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.normal_(0, 0.1); mod.running_var.uniform_(0.5, 1.5)
        mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.normal_(0, 0.1)
m.eval()
sd = {k: v.contiguous() for k, v in m.state_dict().items() if not k.endswith("num_batches_tracked")}
save_file(sd, sys.argv[1], metadata={"format": "pt"})
body = torch.nn.Sequential(*list(m.children())[:-2])
out = {}
with torch.no_grad():
    for scale in (1, 2):
        x = torch.randn(3, 3, 64 * scale, 64 * scale)
        f = body(x)
        if scale > 1:
            f = torch.nn.functional.avg_pool2d(f, scale)
        out[f"x{scale}"] = x
        out[f"cells{scale}"] = f.flatten(2).transpose(1, 2).contiguous()   # (N, cells, 2048)
save_file(out, sys.argv[2])
"#,
        w.to_str().unwrap(),
        out.to_str().unwrap(),
    ]);
    let want = load_st(&out);
    let grid = Grid {
        image_size: 64,
        grid: 2,
        patch_size: 32,
        masked_patches: 1,
        fit_pad: false,
    };
    for (name, device) in devices() {
        let net =
            fashionbert::weights::load_resnet50(w.to_str().unwrap(), d, Convention::V1_5, &device)
                .unwrap()
                .fold();
        for scale in [1u32, 2] {
            let ex = GridExtractor {
                grid,
                scale,
                convention: Convention::V1_5,
            };
            assert_eq!(ex.input_side(), 64 * scale);
            let (shape, x) = want[&format!("x{scale}")].clone();
            assert_eq!(x.len(), 3 * ex.pixels_per_image());
            let got = ex.features(&net, &device, x, shape[0]).unwrap();
            let reference = &want[&format!("cells{scale}")].1;
            let e = max_abs_diff(&got, reference);
            // Un-pooled cells of a random-statistics network reach large values: the bound is
            // 1e-3 relative to the largest feature (the pooled test's absolute 1e-3 averages
            // over the cells).
            let top = reference.iter().fold(1f32, |m, v| m.max(v.abs()));
            assert!(
                e < 1e-3 * top,
                "grid scale {scale} on {name}: max abs error {e} (largest feature {top})"
            );
            eprintln!(
                "grid features (scale {scale}) on {name}: max abs error {e:.2e}, largest feature {top:.1}"
            );
        }
        let zero = GridExtractor {
            grid,
            scale: 1,
            convention: Convention::V1_5,
        }
        .masked_feature(&net, &device)
        .unwrap();
        assert!(zero.len() == 2048 && zero.iter().all(|&v| v == 0.0));
    }
}

/// A trained model's folder is a Hugging Face BERT folder (issue 32): `transformers`'
/// `BertModel.from_pretrained(folder)` loads the text encoder with no weight missing or
/// mismatched, and computes the hidden states ours does; the FashionBERT parts round-trip
/// through `fashionbert.json`.
#[test]
fn a_saved_model_loads_with_transformers_from_pretrained() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mut bert = BertConfig::new();
    bert.vocab_size = 120;
    bert.hidden_size = 32;
    bert.num_hidden_layers = 2;
    bert.num_attention_heads = 4;
    bert.intermediate_size = 64;
    bert.max_position_embeddings = 40;
    let mut cfg = FashionBertConfig::new(bert);
    cfg.patch_feature_size = 16;
    cfg.num_patches = 4;
    cfg.text_len = 12;
    cfg.itc_dim = 8;
    cfg.itm_pair_dim = 8;
    let device = Device::flex();
    device.seed(3);
    let model = cfg.init(&device);
    let m = d.join("model");
    io::save(&model, &cfg, &m).unwrap();
    assert_eq!(io::read_config(&m).unwrap(), cfg);
    let hf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(m.join("config.json")).unwrap()).unwrap();
    assert_eq!(hf["model_type"], "bert");
    assert_eq!(hf["hidden_size"], 32);
    assert!(
        hf.get("bert").is_none() && hf.get("itc_dim").is_none(),
        "{hf}"
    );

    let (b, l) = (2usize, 12usize);
    let ids: Vec<i64> = (0..b * l).map(|i| (i as i64 * 37) % 120).collect();
    let mask: Vec<i64> = (0..b * l)
        .map(|i| if i / l == 1 && i % l > 8 { 0 } else { 1 })
        .collect();
    let types: Vec<i64> = vec![0; b * l];
    let want = hf_bert_reference(d, &m, [&ids, &mask, &types], [b, l], &["--from-pretrained"]);
    let ours = io::load_bert(&m.join("model.safetensors"), &cfg.bert, &device).unwrap();
    let t = |v: &Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v.clone(), [b, l]), &device);
    let mf = Tensor::<2>::from_data(
        TensorData::new(mask.iter().map(|&x| x as f32).collect::<Vec<_>>(), [b, l]),
        &device,
    );
    let (hs, _) = ours.forward(t(&ids), mf, t(&types));
    for (i, h) in hs.into_iter().enumerate() {
        let got: Vec<f32> = h.try_into_vec_as().unwrap();
        let e = max_abs_diff(&got, &want[&format!("hidden_states.{i}")].1);
        assert!(e < 1e-4, "hidden state {i}: max abs error {e}");
    }
}
