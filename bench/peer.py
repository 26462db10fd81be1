#!/usr/bin/env python3
"""PyTorch peer for `make bench`: the same work as the Rust pipeline's stages, timed, one JSON line per run.

  peer.py features --images-list FILE [--image-size 256 --grid 8 --patch-input 32 --batch-images 8 --threads T
                   --workers W --limit N --device cuda --bf16 --channels-last --compile]
      For each image path: PIL decode -> RGB -> bilinear resize to image-size^2 -> 8x8 row-major grid of patches ->
      (bilinear resize of each patch to patch-input if it differs) -> Caffe preprocessing (RGB->BGR, 0-255, minus
      (103.939, 116.779, 123.68)) -> torchvision resnet50 (random weights, fc removed, eval, inference_mode) ->
      2048-d pooled feature per patch. Decoding+resizing runs in a DataLoader with W worker processes (W = 0: in the
      main thread); T = torch intra-op threads. Images/s over the whole list, timed after one warm-up batch.
  peer.py train --config C.json [--batch 8 --steps 10 --warmup 2 --threads T --device cuda --bf16 --fused --compile]
      FashionBERT training steps on random record-shaped inputs (64 text + 64 patch tokens): embeddings, heads,
      losses and adaptive loss weights from tests/python/fashionbert_reference.py, encoder = transformers BertEncoder
      (gelu_new, SDPA attention), dropout 0.1 (train mode), Adam(betas (0.9, 0.98), eps 1e-6, constant lr),
      clip_grad_norm_(1.0). Warm-up steps are excluded; CUDA is synchronized around the timed region.
      C.json = the config format of fashionbert_reference.py (e.g. 6x384x12x1536 MiniLM, 12x768x12x3072 BERT-base).
  peer.py score --config C.json [--pairs 1024 --batch 256 --threads T --device cuda --bf16]
      Retrieval scoring as `evaluate` does it: the alignment logits of unmasked (image, text) records through the
      same model (eval mode, no dropout, torch.inference_mode, SDPA attention), `--batch` pairs per forward pass.
      Pairs/s over `--pairs` pairs, timed after one warm-up batch.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "python"))
import fashionbert_reference as ref  # noqa: E402

CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def setup(args):
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        fail("--device cuda but CUDA is not available")
    torch.manual_seed(0)
    return dev


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def device_name(dev):
    return torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"


def autocast(dev, on):
    return torch.autocast(dev.type, dtype=torch.bfloat16, enabled=on)


# ----------------------------------------------------------------------------------------------------- features
class Images(torch.utils.data.Dataset):
    def __init__(self, paths, size):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        import numpy as np
        from PIL import Image
        with Image.open(self.paths[i]) as im:
            im = im.convert("RGB").resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1)  # uint8 (3, S, S), RGB


def bench_features(args):
    import torch.nn.functional as F
    import torchvision
    dev = setup(args)
    try:
        with open(args.images_list) as f:
            paths = [line.strip() for line in f if line.strip()]
    except OSError as e:
        fail(f"cannot read {args.images_list}: {e}")
    paths = paths[:args.limit] if args.limit else paths
    if not paths:
        fail("the image list is empty")
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        fail(f"{len(missing)} listed images do not exist, e.g. {missing[0]}")
    if args.image_size % args.grid:
        fail("--image-size must be a multiple of --grid")
    g, ps = args.grid, args.image_size // args.grid

    model = torchvision.models.resnet50(weights=None)
    model.fc = torch.nn.Identity()
    model = model.eval().to(dev)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    net = torch.compile(model) if args.compile else model
    mean = torch.tensor(CAFFE_MEAN_BGR, device=dev).view(1, 3, 1, 1)

    def extract(batch):  # uint8 (N, 3, S, S) RGB -> (N, g*g, 2048)
        x = batch.to(dev, non_blocking=True).float()
        n = x.shape[0]
        x = x.view(n, 3, g, ps, g, ps).permute(0, 2, 4, 1, 3, 5).reshape(n * g * g, 3, ps, ps)  # row-major patches
        if args.patch_input != ps:
            x = F.interpolate(x, size=(args.patch_input, args.patch_input), mode="bilinear", align_corners=False)
        x = x.flip(1) - mean                                                                      # Caffe: BGR - mean
        if args.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(dev, args.bf16):
            return net(x).float().view(n, g * g, -1)

    def loader(items):
        return torch.utils.data.DataLoader(Images(items, args.image_size), batch_size=args.batch_images,
                                           num_workers=args.workers, pin_memory=dev.type == "cuda")

    with torch.inference_mode():
        for batch in loader(paths[:args.batch_images]):  # warm-up (and compilation)
            extract(batch)
        sync(dev)
        t0 = time.perf_counter()
        n = 0
        for batch in loader(paths):
            feats = extract(batch)
            n += feats.shape[0]
        sync(dev)
        secs = time.perf_counter() - t0
    assert feats.shape[1:] == (g * g, 2048)
    print(json.dumps({"bench": "features", "impl": "pytorch", "images": n, "seconds": round(secs, 4),
                      "images_per_s": round(n / secs, 2), "patches_per_s": round(n * g * g / secs, 1),
                      "image_size": args.image_size, "grid": g, "patch_input": args.patch_input,
                      "batch_images": args.batch_images, "threads": torch.get_num_threads(),
                      "decode": f"DataLoader, {args.workers} workers" if args.workers else "main thread",
                      "device": device_name(dev), "bf16": args.bf16, "channels_last": args.channels_last,
                      "compile": args.compile, "torch": torch.__version__}))


# -------------------------------------------------------------------------------------------------------- train
class PeerFashionBert(torch.nn.Module):
    """Reference embeddings/heads/losses around a Hugging Face BertEncoder."""

    def __init__(self, cfg, dropout, attn, mask_dtype=torch.float32, seed=0):
        super().__init__()
        from transformers import BertConfig
        from transformers.models.bert.modeling_bert import BertEncoder
        self.cfg, self.dropout, self.mask_dtype = cfg, dropout, mask_dtype  # mask dtype = attention compute dtype
        bc = BertConfig(**{k: cfg[k] for k in ref.CONFIG_KEYS}, hidden_act="gelu_new",
                        layer_norm_eps=cfg["layer_norm_eps"], hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
        bc._attn_implementation = attn
        self.encoder = BertEncoder(bc)
        init = ref.init_params(cfg, seed)
        enc = "bert.encoder."
        self.encoder.load_state_dict({k[len(enc):]: v for k, v in init.items() if k.startswith(enc)})
        self.rest = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v)
                                            for k, v in init.items() if not k.startswith(enc)})

    def params(self):
        """The non-encoder parameters by their reference names."""
        return {k.replace("__", "."): v for k, v in self.rest.items()}

    def forward(self, inp):
        p = self.params()
        emb, ext = ref.embed(p, self.cfg, inp, self.dropout if self.training else 0.0)
        seq = self.encoder(emb, attention_mask=ext.to(self.mask_dtype)).last_hidden_state
        _, mlm, tia, mpm = ref.heads(p, self.cfg, seq, inp)
        out = ref.losses(inp, mlm.float(), tia.float(), mpm.float())
        return out["loss_total"], out["loss_weights"]


def load_config(path):
    try:
        return ref.load_config(path)
    except ref.InputError as e:
        fail(str(e))


def bench_train(args):
    dev = setup(args)
    cfg = load_config(args.config)
    if args.batch < 1 or args.steps < 1 or args.warmup < 0:
        fail("--batch and --steps must be >= 1, --warmup >= 0")
    model = PeerFashionBert(cfg, args.dropout, args.attn, torch.bfloat16 if args.bf16 else torch.float32)
    model = model.to(dev).train()
    n_params = sum(p.numel() for p in model.parameters())
    inp = {k: v.to(dev) for k, v in ref.make_inputs(cfg, args.batch, seed=1).items()}
    opt = torch.optim.Adam(model.parameters(), lr=args.lr, betas=(0.9, 0.98), eps=1e-6, fused=args.fused or None)
    fwd = torch.compile(model) if args.compile else model

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast(dev, args.bf16):
            loss, _ = fwd(inp)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.detach()

    for _ in range(args.warmup):
        step()
    sync(dev)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        loss = step()
    sync(dev)
    secs = time.perf_counter() - t0
    loss = float(loss)
    if not loss == loss:
        fail("loss became NaN")
    print(json.dumps({"bench": "train", "impl": "pytorch", "samples_per_s": round(args.batch * args.steps / secs, 3),
                      "step_ms": round(1000 * secs / args.steps, 2), "params": n_params, "batch": args.batch,
                      "steps": args.steps, "warmup": args.warmup, "seconds": round(secs, 4), "last_loss": loss,
                      "layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"], "threads": torch.get_num_threads(),
                      "device": device_name(dev), "bf16": args.bf16, "fused": args.fused, "compile": args.compile,
                      "attn": args.attn, "torch": torch.__version__}))


def bench_score(args):
    dev = setup(args)
    cfg = load_config(args.config)
    if args.batch < 1 or args.pairs < 1:
        fail("--batch and --pairs must be >= 1")
    model = PeerFashionBert(cfg, 0.0, args.attn, torch.bfloat16 if args.bf16 else torch.float32)
    model = model.to(dev).eval()
    p = model.params()
    inp = {k: v.to(dev) for k, v in ref.make_inputs(cfg, args.batch, seed=1).items()}

    def score():  # unmasked records -> (B, 2) alignment logits
        with autocast(dev, args.bf16):
            emb, ext = ref.embed(p, cfg, inp, 0.0, masked=False)
            seq = model.encoder(emb, attention_mask=ext.to(model.mask_dtype)).last_hidden_state
            pooled = torch.tanh(ref.linear(seq[:, 0], p, "bert.pooler.dense"))
            return ref.linear(pooled, p, "cls.seq_relationship").float()

    with torch.inference_mode():
        score()
        sync(dev)
        t0 = time.perf_counter()
        n = 0
        while n < args.pairs:
            logits = score()
            n += logits.shape[0]
        sync(dev)
        secs = time.perf_counter() - t0
    print(json.dumps({"bench": "score", "impl": "pytorch", "pairs": n, "seconds": round(secs, 4),
                      "pairs_per_s": round(n / secs, 2), "batch": args.batch, "threads": torch.get_num_threads(),
                      "layers": cfg["num_hidden_layers"], "hidden": cfg["hidden_size"], "device": device_name(dev),
                      "bf16": args.bf16, "attn": args.attn, "torch": torch.__version__}))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0 = torch default)")
    common.add_argument("--device", default="cpu")
    common.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    common.add_argument("--compile", action="store_true", help="torch.compile the model")
    a = sub.add_parser("features", parents=[common], help="patch-feature extraction throughput")
    a.add_argument("--images-list", required=True, help="text file, one image path per line")
    a.add_argument("--image-size", type=int, default=256)
    a.add_argument("--grid", type=int, default=8)
    a.add_argument("--patch-input", type=int, default=32)
    a.add_argument("--batch-images", type=int, default=8)
    a.add_argument("--workers", type=int, default=0, help="DataLoader decode workers (0 = main thread)")
    a.add_argument("--limit", type=int, default=0, help="use only the first N images")
    a.add_argument("--channels-last", action="store_true")
    a = sub.add_parser("train", parents=[common], help="training-step throughput")
    a.add_argument("--config", required=True)
    a.add_argument("--batch", type=int, default=8)
    a.add_argument("--steps", type=int, default=10)
    a.add_argument("--warmup", type=int, default=2)
    a.add_argument("--lr", type=float, default=1e-4)
    a.add_argument("--dropout", type=float, default=0.1)
    a.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    a.add_argument("--fused", action="store_true", help="fused Adam")
    a = sub.add_parser("score", parents=[common], help="retrieval-scoring throughput (alignment logits)")
    a.add_argument("--config", required=True)
    a.add_argument("--pairs", type=int, default=1024)
    a.add_argument("--batch", type=int, default=256)
    a.add_argument("--attn", choices=("sdpa", "eager"), default="sdpa")
    args = ap.parse_args(argv)
    {"features": bench_features, "train": bench_train, "score": bench_score}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
