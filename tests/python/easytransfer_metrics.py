#!/usr/bin/env python3
"""Re-implementation of the behaviour of EasyTransfer FashionBERT's retrieval metric script (reference doc, section d),
bugs included, to check the Rust port's "faithful" metrics; --fixed gives the corrected (Kaleido-BERT) variant.

  easytransfer_metrics.py eval FILE [--task img2txt|txt2img] [--fixed]
  easytransfer_metrics.py write-example --output FILE [--queries 1000] [--candidates 101] [--batch 64]
                                        [--task img2txt|txt2img] [--seed 0] [--column]

`eval` reads a prediction file (one line per predict batch, 5 fields separated by \\x01, each the Python str() of a
list: text_prod_ids, image_prod_ids, prod_img_ids, labels, logits flattened to 2B) and prints one JSON line
{"acc", "auc", "rank@1", "rank@5", "rank@10", "rank@100", "groups", "examples"}:
  * acc  = #(argmax(logits) == label) / (#examples + 1e-5)  (ties -> class 0)
  * rank@K: docs are grouped by the query id string (image_prod_id for img2txt, text_prod_id for txt2img) exactly as
    split from the line, so every id but the first of a line keeps its leading space and a query spans two groups
    (--fixed removes spaces from the ids first); stable sort by logit[:, 1] (float32) descending; a group is a hit if
    one of its top min(K, n) docs has a truthy label; rank@K = hits / (#groups + 1e-5)
  * auc  = sklearn.metrics.roc_auc_score(labels, logit[:, 1])
`write-example` writes what the original predict loop would write for Q queries x C candidates (1 ground truth,
C - 1 negatives, at a random place in the query's block) scored by a perfect scorer (the ground truth has the highest
logit1), batch after batch: lists of bytes ids like [b'123', b'456'] (--column: the reader's (B, 1) arrays,
[[b'123'], [b'456']]), labels [1, 0, ...], logits flattened.
"""
import argparse
import json
import random
import sys

import numpy as np

SEP = "\x01"


def fail(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


def split_list(field):
    """The original parser: drop every '[' and ']', split on ','; the pieces keep their spaces."""
    return field.replace("[", "").replace("]", "").split(",")


def evaluate(path, task, fixed):
    groups, n_examples, n_correct, scores, labels_all = {}, 0, 0, [], []
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        fail(f"cannot read {path}: {e}")
    with f:
        for lineno, line in enumerate(f, 1):
            fields = line.rstrip("\n").split(SEP)
            if len(fields) != 5:
                fail(f"{path}:{lineno}: expected 5 \\x01-separated fields, got {len(fields)}")
            text_ids, image_ids, _img_ids = (split_list(x) for x in fields[:3])
            if fixed:
                text_ids, image_ids = ([s.replace(" ", "") for s in ids] for ids in (text_ids, image_ids))
            try:
                labels = np.array([int(x) for x in split_list(fields[3])], dtype=np.int32)
                logits = np.array([float(x) for x in split_list(fields[4])], dtype=np.float32).reshape(-1, 2)
            except ValueError as e:
                fail(f"{path}:{lineno}: bad labels or logits: {e}")
            n = len(text_ids)
            if not (len(image_ids) == n == len(labels) == len(logits)):
                fail(f"{path}:{lineno}: field lengths differ ({len(text_ids)}, {len(image_ids)}, {len(labels)}, "
                     f"{len(logits)} logit pairs)")
            n_examples += n
            n_correct += int((logits.argmax(1) == labels).sum())
            queries = text_ids if task == "txt2img" else image_ids
            for q, score, label in zip(queries, logits[:, 1], labels):
                groups.setdefault(q, []).append((score, label))
            scores.extend(logits[:, 1].tolist())
            labels_all.extend(labels.tolist())
    if n_examples == 0:
        fail(f"{path} holds no predictions")
    out = {"acc": n_correct / (n_examples + 1e-5)}
    try:
        from sklearn.metrics import roc_auc_score
        out["auc"] = float(roc_auc_score(labels_all, scores))
    except ValueError:  # a single class: AUC undefined
        out["auc"] = None
    ranked = [sorted(docs, key=lambda d: d[0], reverse=True) for docs in groups.values()]  # stable
    for k in (1, 5, 10, 100):
        hits = sum(any(label for _, label in docs[:min(k, len(docs))]) for docs in ranked)
        out[f"rank@{k}"] = hits / (len(groups) + 1e-5)
    out.update(groups=len(groups), examples=n_examples)
    return out


def write_example(path, queries, candidates, batch, task, seed, column):
    """Perfect-scorer predictions in the original predict-loop format."""
    rng = random.Random(seed)
    records = []  # (text_prod_id, image_prod_id, prod_img_id, label, logit0, logit1)
    for q in range(queries):
        query_id = 1_000_000 + q
        negatives = rng.sample(range(2_000_000, 2_000_000 + 50 * candidates), candidates - 1)
        gt_at = rng.randrange(candidates)
        for c in range(candidates):
            is_gt = c == gt_at
            doc_id = query_id if is_gt else negatives[c - (c > gt_at)]
            logit1 = 4.0 + rng.random() if is_gt else -rng.uniform(0.5, 4.0)
            text_id, image_id = (doc_id, query_id) if task == "img2txt" else (query_id, doc_id)
            records.append((text_id, image_id, 1 + rng.randrange(5), int(is_gt), -logit1, logit1))
    wrap = (lambda v: [v]) if column else (lambda v: v)
    with open(path, "w", encoding="utf-8") as f:
        for start in range(0, len(records), batch):
            chunk = records[start:start + batch]
            cols = [[wrap(str(r[i]).encode()) for r in chunk] for i in range(3)]
            labels = [wrap(r[3]) for r in chunk]
            logits = np.array([[r[4], r[5]] for r in chunk], dtype=np.float32).reshape(-1).tolist()
            f.write(SEP.join([str(cols[0]), str(cols[1]), str(cols[2]), str(labels), str(logits)]) + "\n")
    return len(records)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("eval", help="ACC, AUC and Rank@K of a prediction file")
    a.add_argument("file")
    a.add_argument("--task", choices=("img2txt", "txt2img"),
                   help="grouping key; default: from the file name (txt2img if it contains 'txt2img'), else img2txt")
    a.add_argument("--fixed", action="store_true", help="strip spaces from the ids (Kaleido-BERT's fix)")
    a = sub.add_parser("write-example", help="perfect-scorer prediction file in the original format")
    a.add_argument("--output", required=True)
    a.add_argument("--queries", type=int, default=1000)
    a.add_argument("--candidates", type=int, default=101)
    a.add_argument("--batch", type=int, default=64)
    a.add_argument("--task", choices=("img2txt", "txt2img"), default="img2txt")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--column", action="store_true", help="write ids and labels as (B, 1) nested lists")
    args = ap.parse_args(argv)
    if args.cmd == "eval":
        task = args.task or ("txt2img" if "txt2img" in args.file else "img2txt")
        print(json.dumps({"task": task, "fixed": args.fixed, **evaluate(args.file, task, args.fixed)}))
    else:
        if args.queries < 1 or args.candidates < 1 or args.batch < 1:
            fail("--queries, --candidates and --batch must be >= 1")
        n = write_example(args.output, args.queries, args.candidates, args.batch, args.task, args.seed, args.column)
        print(json.dumps({"written": args.output, "examples": n, "lines": -(-n // args.batch)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
