#!/usr/bin/env python3
"""Hugging Face `BertModel` hidden states, the reference for the Rust BERT loader/encoder (e.g. all-MiniLM-L6-v2).

  bert_reference.py --model-dir DIR --inputs I.safetensors --output O.safetensors [--device cuda]

DIR holds config.json + model.safetensors (HF BertModel names, with or without a `bert.` prefix). I holds int64
`input_ids`, `attention_mask`, `token_type_ids` (B, L). O receives f32 `last_hidden_state` (B, L, H),
`pooler_output` (B, H) and `hidden_states.{i}` (B, L, H) for i = 0 (embeddings) .. num_hidden_layers.
Runs offline (HF_HUB_OFFLINE=1), eval mode, float32, eager attention.
"""
import argparse
import os
import sys

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import torch  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--inputs", required=True)
    ap.add_argument("--output", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--from-pretrained", action="store_true",
                    help="load with BertModel.from_pretrained(DIR) as a user would, and fail on any missing or "
                         "mismatched weight (unexpected ones, e.g. heads, are listed)")
    args = ap.parse_args(argv)

    from transformers import BertConfig, BertModel
    cfg_path, w_path = (os.path.join(args.model_dir, f) for f in ("config.json", "model.safetensors"))
    for path in (cfg_path, w_path):
        if not os.path.isfile(path):
            fail(f"{path} not found")
    try:
        inp = load_file(args.inputs)
    except Exception as e:
        fail(f"cannot read inputs {args.inputs}: {e}")
    names = ("input_ids", "attention_mask", "token_type_ids")
    for k in names:
        if k not in inp:
            fail(f"inputs lack {k!r}")
        if inp[k].dim() != 2 or inp[k].shape != inp["input_ids"].shape or inp[k].is_floating_point():
            fail(f"{k} must be an integer (B, L) tensor shaped like input_ids")

    config = BertConfig.from_json_file(cfg_path)
    config._attn_implementation = "eager"
    if inp["input_ids"].shape[1] > config.max_position_embeddings:
        fail(f"sequence length {inp['input_ids'].shape[1]} > max_position_embeddings")
    if int(inp["input_ids"].max()) >= config.vocab_size or int(inp["input_ids"].min()) < 0:
        fail("input_ids out of vocabulary range")
    if args.from_pretrained:
        model, info = BertModel.from_pretrained(args.model_dir, output_loading_info=True,
                                                attn_implementation="eager")
        missing = [k for k in info["missing_keys"] if not k.endswith("position_ids")]
        if missing or info["mismatched_keys"]:
            fail(f"from_pretrained: missing {missing[:8]}, mismatched {info['mismatched_keys'][:8]}")
        print(f"from_pretrained: {len(info['unexpected_keys'])} unexpected tensors (heads), none missing",
              file=sys.stderr)
        return run(model, inp, names, args)
    model = BertModel(config, add_pooling_layer=True)
    state = load_file(w_path)
    if any(k.startswith("bert.") for k in state):
        state = {k[5:]: v for k, v in state.items() if k.startswith("bert.")}
    state = {k: v.float() for k, v in state.items() if not k.endswith("position_ids")}  # buffer, not a weight
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.endswith("position_ids")]
    if missing:
        fail(f"weights lack {missing[:8]}")
    if unexpected:
        print(f"warning: ignoring unexpected tensors {unexpected[:8]}", file=sys.stderr)
    return run(model, inp, names, args)


def run(model, inp, names, args):
    dev = torch.device(args.device)
    model = model.to(dev).float().eval()
    with torch.inference_mode():
        out = model(**{k: inp[k].long().to(dev) for k in names}, output_hidden_states=True, return_dict=True)
    res = {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output}
    res.update({f"hidden_states.{i}": h for i, h in enumerate(out.hidden_states)})
    save_file({k: v.float().cpu().clone() for k, v in res.items()}, args.output)  # clone: no shared storage
    return 0


if __name__ == "__main__":
    sys.exit(main())
