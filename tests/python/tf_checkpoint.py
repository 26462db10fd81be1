#!/usr/bin/env python3
"""Writes real TensorFlow checkpoints (TF1 checkpoint V2, `tf.compat.v1.train.Saver`) for tests/tf_checkpoint.rs.

Runs in its own venv with PyPI tensorflow-cpu (the Makefile's `venv-tf`), never in the torch venv.

  fixture --out DIR
      DIR/small.ckpt: one variable per dtype (float32, float16, bfloat16, int32, int64, a scalar, global_step) with
      fixed values; the reader's unit tests check them without TensorFlow.
  write --config C.json --flavor easytransfer|google --prefix P [--seed N] [--shards 1|2] [--slots none|adamw|adam]
        [--scope S/] [--dtype float32|float16|bfloat16] [--hf OUT.safetensors] [--digest OUT.json]
      Variables named as EasyTransfer's FashionBERT (`bert/embeddings/*`, `bert/image_embeddings/*`,
      `bert/encoder/layer_N/*`, `bert/pooler/*`, `cls/predictions/*`, `cls/seq_relationship/*`, `cls/img_predictions/*`)
      or Google BERT's (no image parts), with TF shapes (kernels [in, out]), random values; optionally Adam slots and
      global_step, an outer scope, two shards (variables on two CPU devices, Saver(sharded=True)).
      --hf: the same values under the PyTorch reference's names and layouts (Linear weights [out, in]), mapped here
      independently of the Rust mapping. --digest: for every variable as tf.train.load_checkpoint(P).get_tensor reads
      it, its dtype, shape and the sha256 of its values' little-endian bytes (floats widened to float32, exactly;
      integers as int64), keyed by TF name.
"""
import argparse
import hashlib
import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

tf.get_logger().setLevel("ERROR")


def tf_variables(cfg, flavor):
    """Ordered [(tf name, TF shape, hf name, transpose)]."""
    V, H, I = cfg["vocab_size"], cfg["hidden_size"], cfg["intermediate_size"]
    out = [("bert/embeddings/word_embeddings", (V, H), "bert.embeddings.word_embeddings.weight", False),
           ("bert/embeddings/position_embeddings", (cfg["max_position_embeddings"], H),
            "bert.embeddings.position_embeddings.weight", False),
           ("bert/embeddings/token_type_embeddings", (cfg["type_vocab_size"], H),
            "bert.embeddings.token_type_embeddings.weight", False),
           ("bert/embeddings/LayerNorm/gamma", (H,), "bert.embeddings.LayerNorm.weight", False),
           ("bert/embeddings/LayerNorm/beta", (H,), "bert.embeddings.LayerNorm.bias", False)]
    if flavor == "easytransfer":
        F, P = cfg["patch_feature_size"], cfg["num_patches"]
        out += [("bert/image_embeddings/image_projector", (F, H), "bert.image_embeddings.image_projector.weight", True),
                ("bert/image_embeddings/patch_position_embeddings", (P, H),
                 "bert.image_embeddings.patch_position_embeddings.weight", False),
                ("bert/image_embeddings/patch_type_embeddings", (2, H),
                 "bert.image_embeddings.patch_type_embeddings.weight", False),
                ("bert/image_embeddings/ImageEmbLayerNorm/gamma", (H,), "bert.image_embeddings.LayerNorm.weight", False),
                ("bert/image_embeddings/ImageEmbLayerNorm/beta", (H,), "bert.image_embeddings.LayerNorm.bias", False)]
    for i in range(cfg["num_hidden_layers"]):
        t, h = f"bert/encoder/layer_{i}/", f"bert.encoder.layer.{i}."
        for mod, (n_in, n_out) in [("attention/self/query", (H, H)), ("attention/self/key", (H, H)),
                                   ("attention/self/value", (H, H)), ("attention/output/dense", (H, H)),
                                   ("intermediate/dense", (H, I)), ("output/dense", (I, H))]:
            hm = h + mod.replace("/", ".")
            out += [(t + mod + "/kernel", (n_in, n_out), hm + ".weight", True),
                    (t + mod + "/bias", (n_out,), hm + ".bias", False)]
        for ln in ["attention/output/LayerNorm", "output/LayerNorm"]:
            hl = h + ln.replace("/", ".")
            out += [(t + ln + "/gamma", (H,), hl + ".weight", False), (t + ln + "/beta", (H,), hl + ".bias", False)]
    out += [("bert/pooler/dense/kernel", (H, H), "bert.pooler.dense.weight", True),
            ("bert/pooler/dense/bias", (H,), "bert.pooler.dense.bias", False),
            ("cls/predictions/transform/dense/kernel", (H, H), "cls.predictions.transform.dense.weight", True),
            ("cls/predictions/transform/dense/bias", (H,), "cls.predictions.transform.dense.bias", False),
            ("cls/predictions/transform/LayerNorm/gamma", (H,), "cls.predictions.transform.LayerNorm.weight", False),
            ("cls/predictions/transform/LayerNorm/beta", (H,), "cls.predictions.transform.LayerNorm.bias", False),
            ("cls/predictions/output_bias", (V,), "cls.predictions.bias", False),
            ("cls/seq_relationship/output_weights", (2, H), "cls.seq_relationship.weight", False),
            ("cls/seq_relationship/output_bias", (2,), "cls.seq_relationship.bias", False)]
    if flavor == "easytransfer":
        out.append(("cls/img_predictions/output_weights", (H, cfg["patch_feature_size"]),
                    "cls.img_predictions.weight", True))
    return out


def random_values(shape, rng, name):
    if name.endswith("/gamma"):
        return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    return (0.05 * rng.standard_normal(shape)).astype(np.float32)


def save_graph(values, prefix, shards):
    """values: ordered {tf name: numpy array}; writes `prefix` with a TF1 Saver."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    graph = tf.Graph()
    with graph.as_default():
        tvars = []
        for k, (name, v) in enumerate(values.items()):
            with tf.device(f"/cpu:{k % shards}"):   # two devices: Saver(sharded=True) writes one shard each
                tvars.append(tf.compat.v1.get_variable(name, shape=v.shape, dtype=tf.as_dtype(v.dtype),
                                                       initializer=tf.compat.v1.zeros_initializer(), trainable=False))
        saver = tf.compat.v1.train.Saver(tvars, sharded=shards > 1)
        config = tf.compat.v1.ConfigProto(device_count={"CPU": shards}, allow_soft_placement=False)
        with tf.compat.v1.Session(graph=graph, config=config) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for var, v in zip(tvars, values.values()):
                var.load(v, sess)                       # fed, not embedded in the graph (BERT-base is 440 MB)
            written = saver.save(sess, prefix, write_meta_graph=False, write_state=False)
    if written != prefix:
        raise SystemExit(f"Saver wrote {written}, expected {prefix}")
    want = [f"{prefix}.data-{i:05d}-of-{shards:05d}" for i in range(shards)]
    missing = [w for w in want if not os.path.isfile(w)]
    if missing:
        raise SystemExit(f"Saver did not write {missing}")


def digest(prefix, path):
    """Every variable as TensorFlow reads it back: dtype, shape, sha256 of its values as little-endian float32
    (floats, widened exactly) or int64 (integers)."""
    reader = tf.train.load_checkpoint(prefix)
    dtypes = reader.get_variable_to_dtype_map()
    out = {}
    for name in sorted(reader.get_variable_to_shape_map()):
        v = np.asarray(reader.get_tensor(name))
        wide = np.float32 if dtypes[name].is_floating else np.int64
        out[name] = {"dtype": dtypes[name].name, "shape": list(v.shape),
                     "sha256": hashlib.sha256(v.astype(np.dtype(wide).newbyteorder("<")).tobytes()).hexdigest()}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)


def cmd_fixture(args):
    os.makedirs(args.out, exist_ok=True)
    prefix = os.path.join(args.out, "small.ckpt")
    values = {"f32": np.arange(6, dtype=np.float32).reshape(2, 3) / 2,
              "f16": np.array([-1.0, 0.25, 65504.0], dtype=np.float16),
              "bf16": tf.constant([1.0, -2.5, 0.15625, -(2.0 ** 127)], dtype=tf.bfloat16).numpy(),
              "i32": np.array([1, -2, 3, 2 ** 31 - 1], dtype=np.int32),
              "i64": np.array([-2 ** 63, 7], dtype=np.int64),
              "global_step": np.array(54198, dtype=np.int64),
              "scalar": np.array(3.25, dtype=np.float32)}
    save_graph(values, prefix, 1)
    with open(os.path.join(args.out, "checkpoint"), "w") as f:
        f.write('model_checkpoint_path: "small.ckpt"\nall_model_checkpoint_paths: "small.ckpt"\n')


def cmd_write(args):
    with open(args.config) as f:
        cfg = json.load(f)
    cfg.setdefault("patch_feature_size", 2048)
    cfg.setdefault("num_patches", 64)
    rng = np.random.default_rng(args.seed)
    dtype = {"float32": np.float32, "float16": np.float16, "bfloat16": tf.bfloat16.as_numpy_dtype}[args.dtype]
    values, hf = {}, {}
    for name, shape, hf_name, transpose in tf_variables(cfg, args.flavor):
        v = random_values(shape, rng, name).astype(dtype)
        values[args.scope + name] = v
        w = v.astype(np.float32)
        hf[hf_name] = np.ascontiguousarray(w.T if transpose else w)
    if args.slots != "none":
        for name in list(values):
            if args.slots == "adamw":
                slots = ["adam_m", "adam_v"]
            else:
                slots = ["Adam", "Adam_1"]
            for s in slots:
                values[f"{name}/{s}"] = np.abs(random_values(values[name].shape, rng, s)).astype(np.float32)
        values[args.scope + "global_step"] = np.array(54198, dtype=np.int64)
        if args.slots == "adam":
            values["beta1_power"] = np.array(0.9 ** 3, dtype=np.float32)
            values["beta2_power"] = np.array(0.98 ** 3, dtype=np.float32)
    save_graph(values, args.prefix, args.shards)
    if args.hf:
        save_file(hf, args.hf)
    if args.digest:
        digest(args.prefix, args.digest)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("fixture")
    a.add_argument("--out", required=True)
    a = sub.add_parser("write")
    a.add_argument("--config", required=True)
    a.add_argument("--flavor", choices=["easytransfer", "google"], required=True)
    a.add_argument("--prefix", required=True)
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--shards", type=int, choices=[1, 2], default=1)
    a.add_argument("--slots", choices=["none", "adamw", "adam"], default="none")
    a.add_argument("--scope", default="")
    a.add_argument("--dtype", choices=["float32", "float16", "bfloat16"], default="float32")
    a.add_argument("--hf")
    a.add_argument("--digest")
    args = ap.parse_args(argv)
    {"fixture": cmd_fixture, "write": cmd_write}[args.cmd](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
