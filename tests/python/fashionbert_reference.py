#!/usr/bin/env python3
"""Independent PyTorch reference of EasyTransfer's FashionBERT ("pai-imagebert"), for numerical parity tests.

Written from shared/reference/easytransfer-fashionbert.md (sections a and b), deliberately without Hugging Face
modules, so that the Rust/burn port can be checked against a second, independent implementation.

  * 64 text tokens + 64 image-patch tokens = 128-token post-LN BERT encoder, tanh-GELU (gelu_new), key mask
    (1 - mask) * -10000.
  * Image embeddings: masked patches (boolean mask: a repeated position is still just masked) become zeros
    ("zero_vector") or `zero_patch_feature` ("zero_patch"), bias-free projector, separate patch-type / patch-position
    tables, own LayerNorm.
  * Heads: tied MLM decoder, TIA (2, H) head (label 1 = matched), bias-free MPM (2048, H) head.
  * Losses: weighted MLM CE / (sum w + 1e-5), mean TIA CE, keras-KLD MPM (clip [1e-7, 1]); adaptive weights
    w_i ∝ 1 / (3 - softmax(G)_i^2), detached.
  * Beyond the original, when the config has "itc_dim" > 0 (ALBEF-style ITC): text-only and image-only passes
    through the same encoder, masked mean pooling, itc.text_proj / itc.image_proj, L2 normalisation, similarity
    × exp(clamp(itc.logit_scale, 0, ln 100)), InfoNCE both ways against row/column-normalised targets; with
    --grads the gradient is that of loss_total + loss_itc.
  * Beyond the original, when "itm_pair_dim" > 0: the TIA logits gain a pair term, itm.classifier applied to
    itm.text_proj(mean text token) * itm.image_proj(mean image token) of the joint pass (masked means).

Subcommands (tensors travel as safetensors; Linear weights are [out, in]):
  init        --config C.json --seed N --output W.safetensors       random weights (N(0, 0.02); LayerNorm 1 / 0)
  make-inputs --config C.json --batch B --seed N --output I.safetensors [--duplicate-patch] [--pad-patches K]
  forward     --config C.json --weights W --inputs I --output O [--grads] [--device cuda]
  selftest    [--seed N]      float64 finite-difference check of --grads (+ cross-check of the encoder vs HF)
"""
import argparse
import json
import math
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

TEXT_LEN = 64
CONFIG_KEYS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
               "max_position_embeddings", "type_vocab_size")
CONFIG_DEFAULTS = {"layer_norm_eps": 1e-12, "patch_feature_size": 2048, "num_patches": 64, "masked_patch_num": 5,
                   "masked_text_num": 10, "masked_patch_input": "zero_vector", "itc_dim": 0,
                   "itm_pair_dim": 0}


class InputError(Exception):
    """Bad user input: reported on stderr, exit status 2."""


# ----------------------------------------------------------------------------------------------- config / params
def load_config(path):
    try:
        with open(path) as f:
            raw = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(f"cannot read config {path}: {e}")
    missing = [k for k in CONFIG_KEYS if k not in raw]
    if missing:
        raise InputError(f"config {path} lacks {missing}")
    cfg = {**CONFIG_DEFAULTS, **raw}
    if cfg["hidden_size"] % cfg["num_attention_heads"]:
        raise InputError("hidden_size must be a multiple of num_attention_heads")
    if cfg["masked_patch_input"] not in ("zero_vector", "zero_patch"):
        raise InputError(f"masked_patch_input must be zero_vector or zero_patch, not {cfg['masked_patch_input']!r}")
    if cfg["max_position_embeddings"] < TEXT_LEN:
        raise InputError(f"max_position_embeddings must be >= {TEXT_LEN}")
    return cfg


def param_shapes(cfg):
    """Ordered {name: shape} of every parameter (PyTorch layouts)."""
    V, H, I, F_ = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"], cfg["patch_feature_size"]
    s = {"bert.embeddings.word_embeddings.weight": (V, H),
         "bert.embeddings.position_embeddings.weight": (cfg["max_position_embeddings"], H),
         "bert.embeddings.token_type_embeddings.weight": (cfg["type_vocab_size"], H),
         "bert.embeddings.LayerNorm.weight": (H,), "bert.embeddings.LayerNorm.bias": (H,),
         "bert.image_embeddings.image_projector.weight": (H, F_),
         "bert.image_embeddings.patch_type_embeddings.weight": (2, H),
         "bert.image_embeddings.patch_position_embeddings.weight": (cfg["num_patches"], H),
         "bert.image_embeddings.LayerNorm.weight": (H,), "bert.image_embeddings.LayerNorm.bias": (H,)}
    for i in range(cfg["num_hidden_layers"]):
        p = f"bert.encoder.layer.{i}."
        for name, (o, n) in {"attention.self.query": (H, H), "attention.self.key": (H, H),
                             "attention.self.value": (H, H), "attention.output.dense": (H, H),
                             "intermediate.dense": (I, H), "output.dense": (H, I)}.items():
            s[p + name + ".weight"], s[p + name + ".bias"] = (o, n), (o,)
        for ln in ("attention.output.LayerNorm", "output.LayerNorm"):
            s[p + ln + ".weight"], s[p + ln + ".bias"] = (H,), (H,)
    D = cfg["itc_dim"]
    if D > 0:
        for side in ("text_proj", "image_proj"):
            s[f"itc.{side}.weight"], s[f"itc.{side}.bias"] = (D, H), (D,)
        s["itc.logit_scale"] = (1,)
    D2 = cfg["itm_pair_dim"]
    if D2 > 0:
        for side in ("text_proj", "image_proj"):
            s[f"itm.{side}.weight"], s[f"itm.{side}.bias"] = (D2, H), (D2,)
        s["itm.classifier.weight"], s["itm.classifier.bias"] = (2, D2), (2,)
    s.update({"bert.pooler.dense.weight": (H, H), "bert.pooler.dense.bias": (H,),
              "cls.predictions.transform.dense.weight": (H, H), "cls.predictions.transform.dense.bias": (H,),
              "cls.predictions.transform.LayerNorm.weight": (H,), "cls.predictions.transform.LayerNorm.bias": (H,),
              "cls.predictions.bias": (V,), "cls.seq_relationship.weight": (2, H), "cls.seq_relationship.bias": (2,),
              "cls.img_predictions.weight": (F_, H)})
    return s


def init_params(cfg, seed, dtype=torch.float32):
    """N(0, 0.02) for every matrix, embedding and bias (non-zero biases exercise the bias paths); LN = 1 / 0."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in param_shapes(cfg).items():
        if "LayerNorm" in name:
            out[name] = (torch.ones if name.endswith("weight") else torch.zeros)(shape, dtype=dtype)
        elif name == "itc.logit_scale":
            out[name] = torch.full(shape, math.log(1 / 0.07), dtype=dtype)
        else:
            out[name] = (torch.randn(shape, generator=g, dtype=torch.float64) * 0.02).to(dtype)
    return out


def check_params(cfg, params):
    shapes = param_shapes(cfg)
    missing = [k for k in shapes if k not in params]
    bad = [f"{k}: {tuple(params[k].shape)} != {shapes[k]}" for k in shapes if k in params
           and tuple(params[k].shape) != shapes[k]]
    extra = [k for k in params if k not in shapes]
    if missing or bad or extra:
        raise InputError(f"weights do not match the config: missing={missing[:5]} bad_shape={bad[:5]} "
                         f"unexpected={extra[:5]}")


def check_inputs(cfg, inp):
    B = inp["input_ids"].shape[0] if "input_ids" in inp else None
    P, NP, NT, FS = cfg["num_patches"], cfg["masked_patch_num"], cfg["masked_text_num"], cfg["patch_feature_size"]
    spec = {"input_ids": (B, TEXT_LEN), "input_mask": (B, TEXT_LEN), "segment_ids": (B, TEXT_LEN),
            "image_feature": (B, P, FS), "image_mask": (B, P), "masked_patch_positions": (B, NP),
            "masked_lm_positions": (B, NT), "masked_lm_ids": (B, NT), "masked_lm_weights": (B, NT), "labels": (B,)}
    for k, shape in spec.items():
        if k not in inp:
            raise InputError(f"inputs lack {k!r}")
        if tuple(inp[k].shape) != shape:
            raise InputError(f"input {k} has shape {tuple(inp[k].shape)}, expected {shape}")
    ranges = {"input_ids": cfg["vocab_size"], "masked_lm_ids": cfg["vocab_size"], "segment_ids": cfg["type_vocab_size"],
              "masked_patch_positions": P, "masked_lm_positions": TEXT_LEN, "labels": 2}
    for k, hi in ranges.items():
        t = inp[k]
        if t.is_floating_point() or (t.numel() and (t.min() < 0 or t.max() >= hi)):
            raise InputError(f"input {k} must be integers in [0, {hi})")
    if cfg["masked_patch_input"] == "zero_patch":
        z = inp.get("zero_patch_feature")
        if z is None or tuple(z.shape) != (FS,):
            raise InputError(f"masked_patch_input=zero_patch needs zero_patch_feature of shape ({FS},)")


# ------------------------------------------------------------------------------------------------------- model
def gelu_new(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def linear(x, p, name):
    return F.linear(x, p[name + ".weight"], p.get(name + ".bias"))


def layer_norm(x, p, name, eps):
    return F.layer_norm(x, x.shape[-1:], p[name + ".weight"], p[name + ".bias"], eps)


def dropout(x, rate):
    return F.dropout(x, rate, training=True) if rate > 0 else x


def gather_rows(x, positions):
    """x (B, L, D), positions (B, K) -> (B*K, D)."""
    idx = positions.long().unsqueeze(-1).expand(-1, -1, x.shape[-1])
    return x.gather(1, idx).reshape(-1, x.shape[-1])


def masked_image_feature(cfg, inp, dtype):
    """Raw features with the rows at masked_patch_positions replaced (boolean mask, duplicates harmless)."""
    feat = inp["image_feature"].to(dtype)
    mask = torch.zeros(feat.shape[:2], dtype=torch.bool, device=feat.device)
    mask.scatter_(1, inp["masked_patch_positions"].long(), True)
    if cfg["masked_patch_input"] == "zero_patch":
        repl = inp["zero_patch_feature"].to(dtype)
    else:
        repl = torch.zeros((), dtype=dtype, device=feat.device)
    return torch.where(mask.unsqueeze(-1), repl, feat)


def embed(p, cfg, inp, drop=0.0, masked=True):
    """-> (embeddings (B, 128, H), additive key mask (B, 1, 1, 128)). `drop` > 0 = training-mode dropout;
    `masked` = False leaves every patch as it is (retrieval scoring's unmasked records)."""
    eps, dt = cfg["layer_norm_eps"], p["bert.embeddings.word_embeddings.weight"].dtype
    ids, seg = inp["input_ids"].long(), inp["segment_ids"].long()
    text = (F.embedding(ids, p["bert.embeddings.word_embeddings.weight"])
            + p["bert.embeddings.position_embeddings.weight"][:ids.shape[1]]
            + F.embedding(seg, p["bert.embeddings.token_type_embeddings.weight"]))
    text = dropout(layer_norm(text, p, "bert.embeddings.LayerNorm", eps), drop)
    x = masked_image_feature(cfg, inp, dt) if masked else inp["image_feature"].to(dt)
    x = dropout(x, drop)                                        # original: dropout on the raw 2048-d features
    img = (F.linear(x, p["bert.image_embeddings.image_projector.weight"])
           + p["bert.image_embeddings.patch_type_embeddings.weight"][1]
           + p["bert.image_embeddings.patch_position_embeddings.weight"][:x.shape[1]])
    img = dropout(layer_norm(img, p, "bert.image_embeddings.LayerNorm", eps), drop)
    mask = torch.cat([inp["input_mask"], inp["image_mask"]], 1).to(dt)
    return torch.cat([text, img], 1), ((1.0 - mask) * -10000.0)[:, None, None, :]


def encoder(p, cfg, h, ext_mask):
    B, L, H = h.shape
    nh = cfg["num_attention_heads"]
    dh, eps = H // nh, cfg["layer_norm_eps"]
    for i in range(cfg["num_hidden_layers"]):
        pre = f"bert.encoder.layer.{i}."
        q, k, v = (linear(h, p, pre + "attention.self." + n).view(B, L, nh, dh).transpose(1, 2)
                   for n in ("query", "key", "value"))
        probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh) + ext_mask, dim=-1)
        ctx = (probs @ v).transpose(1, 2).reshape(B, L, H)
        h = layer_norm(linear(ctx, p, pre + "attention.output.dense") + h, p, pre + "attention.output.LayerNorm", eps)
        ff = linear(gelu_new(linear(h, p, pre + "intermediate.dense")), p, pre + "output.dense")
        h = layer_norm(ff + h, p, pre + "output.LayerNorm", eps)
    return h


def heads(p, cfg, seq, inp):
    """-> pooled (B, H), mlm (B*10, V), tia (B, 2), mpm (B*5, 2048)."""
    pooled = torch.tanh(linear(seq[:, 0], p, "bert.pooler.dense"))
    t = gather_rows(seq[:, :TEXT_LEN], inp["masked_lm_positions"])
    t = gelu_new(linear(t, p, "cls.predictions.transform.dense"))
    t = layer_norm(t, p, "cls.predictions.transform.LayerNorm", cfg["layer_norm_eps"])
    mlm = t @ p["bert.embeddings.word_embeddings.weight"].t() + p["cls.predictions.bias"]
    tia = linear(pooled, p, "cls.seq_relationship")
    if cfg["itm_pair_dim"] > 0:   # the pair term: mean text token x mean image token, projected
        tm, im = inp["input_mask"].to(seq.dtype), inp["image_mask"].to(seq.dtype)
        t_mean = (seq[:, :TEXT_LEN] * tm[..., None]).sum(1) / tm.sum(1, keepdim=True).clamp(min=1.0)
        i_mean = (seq[:, TEXT_LEN:] * im[..., None]).sum(1) / im.sum(1, keepdim=True).clamp(min=1.0)
        pair = linear(t_mean, p, "itm.text_proj") * linear(i_mean, p, "itm.image_proj")
        tia = tia + linear(pair, p, "itm.classifier")
    mpm = gather_rows(seq[:, TEXT_LEN:], inp["masked_patch_positions"]) @ p["cls.img_predictions.weight"].t()
    return pooled, mlm, tia, mpm


def losses(inp, mlm, tia, mpm, loss_weights=None):
    """The three losses, the adaptive weights (detached) and the total. `loss_weights` overrides the weights."""
    w = inp["masked_lm_weights"].reshape(-1).to(mlm.dtype)
    ce = -torch.log_softmax(mlm, -1).gather(1, inp["masked_lm_ids"].reshape(-1, 1).long()).squeeze(1)
    l_mlm = (w * ce).sum() / (w.sum() + 1e-5)
    l_tia = F.cross_entropy(tia, inp["labels"].long())
    target = gather_rows(inp["image_feature"].to(mpm.dtype), inp["masked_patch_positions"])   # raw, unmasked
    t = torch.softmax(target, -1).clamp(1e-7, 1.0)
    q = torch.softmax(mpm, -1).clamp(1e-7, 1.0)
    l_mpm = (t * torch.log(t / q)).sum(-1).mean()
    G = torch.stack([l_mlm, l_tia, l_mpm])
    if loss_weights is None:
        inv = 1.0 / (3.0 - torch.softmax(G.detach(), 0) ** 2)
        loss_weights = inv / inv.sum()
    return {"loss_mlm": l_mlm, "loss_tia": l_tia, "loss_mpm": l_mpm, "loss_weights": loss_weights,
            "loss_total": (loss_weights * G).sum()}


def itc(p, cfg, inp):
    """The contrastive loss of the rows `itc_rows`: -> (loss, scaled image->text similarities (N, N))."""
    eps = cfg["layer_norm_eps"]
    ids, mask = inp["itc_input_ids"].long(), inp["itc_input_mask"].float()
    text = (F.embedding(ids, p["bert.embeddings.word_embeddings.weight"])
            + p["bert.embeddings.position_embeddings.weight"][:ids.shape[1]]
            + p["bert.embeddings.token_type_embeddings.weight"][0])
    text = layer_norm(text, p, "bert.embeddings.LayerNorm", eps)
    h = encoder(p, cfg, text, ((1.0 - mask) * -10000.0)[:, None, None, :])
    t = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp(min=1.0)
    t = F.normalize(linear(t, p, "itc.text_proj"), dim=-1)
    feat = inp["image_feature"].float()[inp["itc_rows"].long()]
    img = (F.linear(feat, p["bert.image_embeddings.image_projector.weight"])
           + p["bert.image_embeddings.patch_type_embeddings.weight"][1]
           + p["bert.image_embeddings.patch_position_embeddings.weight"][:feat.shape[1]])
    img = layer_norm(img, p, "bert.image_embeddings.LayerNorm", eps)
    hi = encoder(p, cfg, img, torch.zeros(img.shape[0], 1, 1, img.shape[1], dtype=img.dtype))
    v = F.normalize(linear(hi.mean(1), p, "itc.image_proj"), dim=-1)
    scale = p["itc.logit_scale"].clamp(0.0, math.log(100.0)).exp()
    sim = scale * (v @ t.t())
    tg = inp["itc_targets"].float()
    i2t = -(torch.log_softmax(sim, 1) * (tg / tg.sum(1, keepdim=True))).sum(1).mean()
    t2i = -(torch.log_softmax(sim.t(), 1) * (tg.t() / tg.t().sum(1, keepdim=True))).sum(1).mean()
    return (i2t + t2i) / 2, sim


def forward(p, cfg, inp, loss_weights=None):
    emb, ext = embed(p, cfg, inp)
    seq = encoder(p, cfg, emb, ext)
    pooled, mlm, tia, mpm = heads(p, cfg, seq, inp)
    out = {"sequence_output": seq, "pooled_output": pooled, "mlm_logits": mlm, "tia_logits": tia,
           "mpm_logits": mpm, **losses(inp, mlm, tia, mpm, loss_weights)}
    if cfg["itc_dim"] > 0 and "itc_input_ids" in inp:
        out["loss_itc"], out["itc_sim"] = itc(p, cfg, inp)
    return out


# ------------------------------------------------------------------------------------------------------ inputs
def make_inputs(cfg, batch, seed, duplicate_patch=False, pad_patches=0):
    """Random but valid inputs: BERT-style text with [CLS]/[SEP]/padding and 80/10/10 masking, non-negative
    post-ReLU-average-like features, mixed labels."""
    g = torch.Generator().manual_seed(seed)
    V, P, FS = cfg["vocab_size"], cfg["num_patches"], cfg["patch_feature_size"]
    NT, NP = cfg["masked_text_num"], cfg["masked_patch_num"]
    big = V > 2000
    cls_id, sep_id, mask_id, lo = (101, 102, 103, 999) if big else (1, 2, 3, 4)
    if V <= lo + 1:
        raise InputError("vocab_size too small")
    r = lambda lo_, hi_: int(torch.randint(lo_, hi_, (1,), generator=g))
    ids = torch.zeros(batch, TEXT_LEN, dtype=torch.int64)
    mlm_pos = torch.zeros(batch, NT, dtype=torch.int64)
    mlm_ids, mlm_w = torch.zeros_like(mlm_pos), torch.zeros(batch, NT)
    lengths = []
    for b in range(batch):
        n = TEXT_LEN if b == 0 else r(8, TEXT_LEN + 1)          # example 0 unpadded, the others padded
        lengths.append(n)
        ids[b, :n] = torch.randint(lo, V, (n,), generator=g)
        ids[b, 0], ids[b, n - 1] = cls_id, sep_id
        k = min(NT, max(1, round(0.15 * (n - 2))))
        pos = (torch.randperm(n - 2, generator=g)[:k] + 1).sort().values
        mlm_pos[b, :k], mlm_ids[b, :k], mlm_w[b, :k] = pos, ids[b, pos], 1.0
        for j in pos.tolist():
            u = float(torch.rand((), generator=g))
            ids[b, j] = mask_id if u < 0.8 else (r(lo, V) if u < 0.9 else ids[b, j])
    input_mask = (torch.arange(TEXT_LEN)[None] < torch.tensor(lengths)[:, None]).long()
    feat = torch.relu(torch.randn(batch, P, FS, 4, generator=g) + 0.3).mean(-1) * 2.0
    feat = torch.round(feat * 1e5) / 1e5                           # 5 decimals, as in the original data files
    mpp = torch.stack([torch.randperm(P, generator=g)[:NP] for _ in range(batch)])
    if duplicate_patch and NP > 1:
        mpp[0, 1] = mpp[0, 0]
    image_mask = torch.ones(batch, P, dtype=torch.int64)
    if pad_patches:
        image_mask[0, P - pad_patches:] = 0
    labels = torch.randint(0, 2, (batch,), generator=g)
    labels[0] = 1
    if batch > 1:
        labels[1] = 0
    out = {"input_ids": ids, "input_mask": input_mask, "segment_ids": torch.zeros_like(ids), "image_feature": feat,
           "image_mask": image_mask, "masked_patch_positions": mpp, "masked_lm_positions": mlm_pos,
           "masked_lm_ids": mlm_ids, "masked_lm_weights": mlm_w, "labels": labels}
    if cfg["masked_patch_input"] == "zero_patch":
        out["zero_patch_feature"] = torch.relu(torch.randn(FS, generator=g) * 0.5)
    if cfg["itc_dim"] > 0:
        # Every row as a matched pair, its unmasked text; rows 0 and 1 stand for one product.
        clean = ids.clone()
        for b in range(batch):
            for j in range(NT):
                if mlm_w[b, j] > 0:
                    clean[b, mlm_pos[b, j]] = mlm_ids[b, j]
        tg = torch.eye(batch)
        if batch > 2:
            tg[0, 1] = tg[1, 0] = 1.0
        out.update({"itc_rows": torch.arange(batch), "itc_input_ids": clean, "itc_input_mask": input_mask.clone(),
                    "itc_targets": tg})
    return out


# ----------------------------------------------------------------------------------------------------- selftest
def selftest(seed):
    torch.manual_seed(seed)
    cfg = {"vocab_size": 97, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
           "intermediate_size": 24, "max_position_embeddings": 80, "type_vocab_size": 2, **CONFIG_DEFAULTS,
           "patch_feature_size": 32}
    failures = []
    for mode in ("zero_vector", "zero_patch"):
        cfg["masked_patch_input"] = mode
        p = {k: v.requires_grad_() for k, v in init_params(cfg, seed, torch.float64).items()}
        inp = make_inputs(cfg, 3, seed + 1, duplicate_patch=True, pad_patches=3)
        inp = {k: v.double() if v.is_floating_point() else v for k, v in inp.items()}
        check_inputs(cfg, inp)
        out = forward(p, cfg, inp)
        out["loss_total"].backward()
        out = {k: v.detach() for k, v in out.items()}
        w = out["loss_weights"]
        assert abs(float(w.sum()) - 1) < 1e-12 and float(w.min()) >= 2 / 7 - 1e-12 and float(w.max()) <= 3 / 7 + 1e-12
        # duplicated masked position: the patch is replaced exactly once (no sign flip)
        x = masked_image_feature(cfg, inp, torch.float64)
        want = inp["zero_patch_feature"] if mode == "zero_patch" else torch.zeros(cfg["patch_feature_size"])
        assert torch.equal(x[0, inp["masked_patch_positions"][0, 0]], want.double()), "boolean patch mask broken"
        # finite differences of sum_i w_i G_i with w held at its current value (the weights are detached)
        g = torch.Generator().manual_seed(seed)
        names = ["bert.embeddings.word_embeddings.weight", "bert.embeddings.LayerNorm.weight",
                 "bert.image_embeddings.image_projector.weight", "bert.image_embeddings.patch_type_embeddings.weight",
                 "bert.encoder.layer.0.attention.self.query.weight", "bert.encoder.layer.1.intermediate.dense.bias",
                 "bert.pooler.dense.weight", "cls.predictions.bias", "cls.seq_relationship.weight",
                 "cls.img_predictions.weight", "cls.predictions.transform.LayerNorm.bias"]
        worst = 0.0
        for name in names:
            t = p[name]
            flat_idx = [int(torch.argmax(t.grad.abs()))] + torch.randint(0, t.numel(), (2,), generator=g).tolist()
            for i in flat_idx:
                h = 1e-5
                with torch.no_grad():
                    orig = t.view(-1)[i].item()
                    t.view(-1)[i] = orig + h
                    up = float(forward(p, cfg, inp, w)["loss_total"])
                    t.view(-1)[i] = orig - h
                    dn = float(forward(p, cfg, inp, w)["loss_total"])
                    t.view(-1)[i] = orig
                fd, an = (up - dn) / (2 * h), float(t.grad.view(-1)[i])
                err = abs(fd - an) / max(1e-4, abs(fd) + abs(an))  # relative, absolute below 1e-4
                worst = max(worst, err)
                if err > 1e-6:
                    failures.append(f"{mode} {name}[{i}]: autograd {an:.9g} vs finite-diff {fd:.9g}")
        print(f"selftest {mode}: losses mlm={float(out['loss_mlm']):.6f} tia={float(out['loss_tia']):.6f} "
              f"mpm={float(out['loss_mpm']):.6f} weights={[round(float(v), 6) for v in w]}; "
              f"{len(names) * 3} gradient entries, worst relative error {worst:.2e}")
    try:  # cross-check of the hand-written encoder against Hugging Face's (not a dependency of `forward`)
        from transformers import BertConfig
        from transformers.models.bert.modeling_bert import BertEncoder
        hf = BertEncoder(BertConfig(**{k: cfg[k] for k in CONFIG_KEYS}, hidden_act="gelu_new",
                                    layer_norm_eps=cfg["layer_norm_eps"], attn_implementation="eager")).double().eval()
        hf.load_state_dict({k[len("bert.encoder."):]: v.detach() for k, v in p.items() if k.startswith("bert.encoder.")})
        with torch.no_grad():
            emb, ext = embed(p, cfg, inp)
            diff = float((hf(emb, attention_mask=ext).last_hidden_state - encoder(p, cfg, emb, ext)).abs().max())
        print(f"selftest encoder vs transformers BertEncoder (float64): max |diff| {diff:.2e}")
        if diff > 1e-10:
            failures.append(f"encoder differs from transformers BertEncoder by {diff}")
    except ImportError:
        print("selftest: transformers not installed, encoder cross-check skipped")
    if failures:
        print("SELFTEST FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("SELFTEST OK")
    return 0


# ------------------------------------------------------------------------------------------------------------ CLI
def load_tensors(path, what):
    try:
        return load_file(path)
    except Exception as e:  # safetensors raises several types
        raise InputError(f"cannot read {what} {path}: {e}")


def save(tensors, path):
    save_file({k: v.detach().float().cpu().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
               for k, v in tensors.items()}, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("init", help="random weights")
    a.add_argument("--config", required=True)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--output", required=True)
    a = sub.add_parser("make-inputs", help="random valid inputs")
    a.add_argument("--config", required=True)
    a.add_argument("--batch", type=int, default=2)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--duplicate-patch", action="store_true", help="repeat a masked patch position in example 0")
    a.add_argument("--pad-patches", type=int, default=0, help="set the last K image_mask entries of example 0 to 0")
    a.add_argument("--output", required=True)
    a = sub.add_parser("forward", help="outputs, losses and (optionally) gradients")
    a.add_argument("--config", required=True)
    a.add_argument("--weights", required=True)
    a.add_argument("--inputs", required=True)
    a.add_argument("--output", required=True)
    a.add_argument("--grads", action="store_true", help="also write grad.<param> of loss_total")
    a.add_argument("--device", default="cpu")
    a = sub.add_parser("selftest", help="finite-difference gradient check in float64")
    a.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "selftest":
            return selftest(args.seed)
        cfg = load_config(args.config)
        if args.cmd == "init":
            save(init_params(cfg, args.seed), args.output)
        elif args.cmd == "make-inputs":
            if args.batch < 1 or not 0 <= args.pad_patches < cfg["num_patches"]:
                raise InputError("--batch must be >= 1 and --pad-patches in [0, num_patches)")
            save(make_inputs(cfg, args.batch, args.seed, args.duplicate_patch, args.pad_patches), args.output)
        else:
            dev = torch.device(args.device)
            p = load_tensors(args.weights, "weights")
            check_params(cfg, p)
            inp = load_tensors(args.inputs, "inputs")
            check_inputs(cfg, inp)
            p = {k: v.to(dev, torch.float32).requires_grad_(args.grads) for k, v in p.items()}
            inp = {k: v.to(dev) for k, v in inp.items()}
            with torch.set_grad_enabled(args.grads):
                out = forward(p, cfg, inp)
                if args.grads:
                    (out["loss_total"] + out.get("loss_itc", 0.0)).backward()
                    out.update({"grad." + k: v.grad for k, v in p.items()})
            out = {k: v.reshape(1) if v.dim() == 0 else v for k, v in out.items()}
            save(out, args.output)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
