#!/usr/bin/env python3
"""Reference BERT-uncased WordPiece tokenization (and the tokenizer benchmark peer) for the FashionBERT port.

  tokenize_reference.py --vocab vocab.txt (--input texts.txt | --csv products.csv) [--max-len 64]
                        [--impl fast|wordpiece|both] [--output ids.jsonl] [--bench] [--threads N] [--seed S]

Each text (one per line of --input; or `title + " " + description` per row of a --csv with those columns) becomes
`[CLS] wordpieces [SEP]`, the wordpieces truncated so that [SEP] stays and the total is <= --max-len, no padding.
--output writes one JSON list of ids per line.
  --impl fast       transformers.BertTokenizerFast(vocab_file, do_lower_case=True) (default)
  --impl wordpiece  tokenizers.BertWordPieceTokenizer(vocab, lowercase=True)
  --impl both       run both, print a JSON agreement summary, exit 1 on any disagreement (output = fast's ids)
--bench times the chosen impl over all texts (batch encode; file reading excluded) PLUS Google-BERT style masking of
the ids in Python (15 % of the non-special tokens, at least 1, at most 10; 80 % [MASK] / 10 % random / 10 % kept;
padding to --max-len and the 10 masked slots), and prints one JSON line
{"impl", "records", "seconds", "records_per_s", "tokenize_seconds", "mask_seconds", "threads"}.
--threads limits the tokenizers (Rust/rayon) thread pool; the default is all cores.
"""
import argparse
import json
import os
import random
import sys
import time


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def read_texts(args):
    if args.csv:
        import pandas as pd
        try:
            df = pd.read_csv(args.csv, keep_default_na=False, dtype=str)
        except Exception as e:
            fail(f"cannot read {args.csv}: {e}")
        if not {"title", "description"} <= set(df.columns):
            fail(f"{args.csv} needs title and description columns")
        return (df["title"] + " " + df["description"]).tolist()
    try:
        with open(args.input, encoding="utf-8") as f:
            return [line.rstrip("\r\n") for line in f]
    except (OSError, UnicodeDecodeError) as e:
        fail(f"cannot read {args.input}: {e}")


def _vocab_index(vocab, token):
    with open(vocab, encoding="utf-8") as f:
        return next((i for i, w in enumerate(f) if w.rstrip("\n") == token), None)


def make_encoder(impl, vocab, max_len):
    """-> function(list of texts) -> list of id lists."""
    if impl == "fast":
        import transformers
        from transformers import BertTokenizerFast
        if int(transformers.__version__.split(".")[0]) >= 5:  # v5 silently ignores vocab_file= (5-token toy vocab)
            with open(vocab, encoding="utf-8") as f:
                tok = BertTokenizerFast(vocab={w.rstrip("\n"): i for i, w in enumerate(f)}, do_lower_case=True)
        else:
            tok = BertTokenizerFast(vocab_file=vocab, do_lower_case=True)
        if tok.convert_tokens_to_ids("[SEP]") != _vocab_index(vocab, "[SEP]"):
            fail("BertTokenizerFast did not load the vocabulary")
        return lambda texts: tok(texts, add_special_tokens=True, truncation=True, max_length=max_len)["input_ids"]
    from tokenizers import BertWordPieceTokenizer
    tok = BertWordPieceTokenizer(vocab, lowercase=True, strip_accents=True, handle_chinese_chars=True)
    tok.enable_truncation(max_length=max_len)
    return lambda texts: [e.ids for e in tok.encode_batch(texts, add_special_tokens=True)]


def mask_record(ids, rng, vocab_size, max_len, max_pred=10, cls_id=101, sep_id=102, mask_id=103):
    """Google create_pretraining_data-style masking of one record, padded to fixed length (the tokenize stage's work)."""
    cand = [i for i, t in enumerate(ids) if t not in (cls_id, sep_id)]
    rng.shuffle(cand)
    pos = sorted(cand[:min(max_pred, max(1, round(0.15 * len(cand))))]) if cand else []
    out, labels = list(ids), []
    for p in pos:
        labels.append(ids[p])
        u = rng.random()
        if u < 0.8:
            out[p] = mask_id
        elif u < 0.9:
            out[p] = rng.randrange(vocab_size)
    pad = max_len - len(out)
    npad = max_pred - len(pos)
    return {"input_ids": out + [0] * pad, "input_mask": [1] * len(out) + [0] * pad,
            "masked_lm_positions": pos + [0] * npad, "masked_lm_ids": labels + [0] * npad,
            "masked_lm_weights": [1.0] * len(pos) + [0.0] * npad}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab", required=True)
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--input", help="UTF-8 text file, one text per line")
    src.add_argument("--csv", help="CSV with title,description columns (e.g. fashion-real/products.csv)")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--impl", choices=("fast", "wordpiece", "both"), default="fast")
    ap.add_argument("--output")
    ap.add_argument("--bench", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="tokenizers thread pool size (0 = all cores)")
    ap.add_argument("--seed", type=int, default=0, help="masking RNG seed (--bench)")
    args = ap.parse_args(argv)
    if args.max_len < 2:
        fail("--max-len must be >= 2")
    if args.bench and args.impl == "both":
        fail("--bench needs --impl fast or --impl wordpiece")
    if args.threads > 0:  # must be set before the Rust thread pool starts
        os.environ["RAYON_NUM_THREADS"] = os.environ["RAYON_RS_NUM_CPUS"] = str(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false" if args.threads == 1 else "true")
    if not os.path.isfile(args.vocab):
        fail(f"vocab {args.vocab} not found")
    with open(args.vocab, encoding="utf-8") as f:
        vocab_size = sum(1 for _ in f)
    texts = read_texts(args)

    impls = ("fast", "wordpiece") if args.impl == "both" else (args.impl,)
    results = {impl: make_encoder(impl, args.vocab, args.max_len) for impl in impls}
    if args.bench:
        encode = results[args.impl]
        encode(texts[:16])  # warm-up
        rng = random.Random(args.seed)
        t0 = time.perf_counter()
        ids = encode(texts)
        t1 = time.perf_counter()
        records = [mask_record(x, rng, vocab_size, args.max_len) for x in ids]
        t2 = time.perf_counter()
        assert len(records) == len(texts)
        print(json.dumps({"impl": args.impl, "records": len(texts), "seconds": round(t2 - t0, 6),
                          "records_per_s": round(len(texts) / (t2 - t0), 1), "tokenize_seconds": round(t1 - t0, 6),
                          "mask_seconds": round(t2 - t1, 6), "threads": args.threads or os.cpu_count(),
                          "max_len": args.max_len}))
        results = {args.impl: ids}
    else:
        results = {impl: enc(texts) for impl, enc in results.items()}
    status = 0
    if args.impl == "both":
        diff = [i for i, (a, b) in enumerate(zip(results["fast"], results["wordpiece"])) if a != b]
        print(json.dumps({"records": len(texts), "agree": len(texts) - len(diff), "disagree": len(diff),
                          "examples": [{"line": i, "fast": results["fast"][i], "wordpiece": results["wordpiece"][i]}
                                       for i in diff[:3]]}))
        status = 1 if diff else 0
    if args.output:
        with open(args.output, "w") as f:
            for ids in results["fast" if args.impl == "both" else args.impl]:
                f.write(json.dumps(ids) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
