#!/usr/bin/env bash
# Ablations (RESULTS.md): each run is a pipeline with one `--set` change. Upstream stages are
# shared through the cache; only what a change touches runs again (a `negatives` change re-runs
# negatives … evaluate but not features; `features.extractor` re-runs features).
# Prints the validation and retrieval metrics of each variant.
#
#   bash scripts/ablations.sh [variant ...]                      # the default pipeline
#   CONFIG=pipelines/fashion-real.toml BUDGET="--set train.epochs=1 --set evaluate.queries=200" \
#     bash scripts/ablations.sh baseline random-init             # fashion-real at a reduced budget
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/fashionbert}
CONFIG=${CONFIG:-pipeline.toml}
read -r -a BUDGET <<< "${BUDGET:-}"

declare -A VARIANT=(
  [baseline]=""
  [random-init]="--set train.init=random --set train.config=../weights/minilm/config.json"
  [lr-2e-3]="--set train.lr=2e-3"
  [small-scratch]="--set train.init=random --set train.config=../configs/fashionbert-small.json --set train.lr=2e-3"
  [fixed-weights]="--set train.loss_weights=fixed"
  [zero-vector]="--set train.masked_patch_input=zero_vector"
  [no-mpm]="--set train.loss_weights=fixed --set train.w_mpm=0"
  # The real-data alignment recipe (pipelines/fashion-real.toml is the baseline then):
  [neg-subcategory]="--set negatives.strategy=subcategory"
  [neg-random]="--set negatives.strategy=random"
  [neg-static]="--set negatives.rounds=1"
  [no-itc]="--set train.w_itc=0 --set evaluate.score=itm"
  [itm-mined]="--set train.itm_negatives=itc"
  [score-itm]="--set evaluate.score=itm"
  [score-itc]="--set evaluate.score=itc"
  [patches]="--set features.extractor=patches --set train.masked_patch_input=zero_patch"
  [original]="--set negatives.strategy=subcategory --set negatives.rounds=1 --set train.w_itc=0 --set train.lr_new=0 --set evaluate.score=itm"
)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(baseline fixed-weights no-mpm zero-vector)

for name in "${names[@]}"; do
  [ -n "${VARIANT[$name]+x}" ] || { echo "unknown variant $name (have: ${!VARIANT[*]})"; exit 2; }
  # shellcheck disable=SC2086
  sets=(${BUDGET[@]+"${BUDGET[@]}"} ${VARIANT[$name]})
  echo "== $name: ${sets[*]}"
  start=$(date +%s)
  "$BIN" run --config "$CONFIG" "${sets[@]}" > "/tmp/ablation-$name.log" 2>&1 \
    || { tail -20 "/tmp/ablation-$name.log"; exit 1; }
  dirs=$("$BIN" status --config "$CONFIG" "${sets[@]}" --json \
    | python3 -c 'import json,sys; p={s["stage"]: s["dir"] for s in json.load(sys.stdin)}; print(p["train"], p["evaluate"])')
  read -r train eval <<< "$dirs"
  echo "   wall $(( $(date +%s) - start )) s; entries: $train $eval"
  python3 - "$train/summary.json" "$eval/metrics.json" <<'EOF'
import json, sys
t, m = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
v = t["valid"]
print(f"   train {t['seconds']:.0f} s, {t['steps']} steps; valid alignment acc {v['tia_accuracy']:.3f}, "
      f"ITC acc {v.get('itc_accuracy', 0):.3f}, MLM acc {v['mlm_accuracy']:.3f}, "
      f"losses mlm {v['loss_mlm']:.3f} tia {v['loss_tia']:.3f} mpm {v['loss_mpm']:.3f} itc {v.get('loss_itc', 0):.3f}")
print(f"   score: {m['eval_set']['score'].split(':')[0]}")
for d in ("img2txt", "txt2img"):
    r = m[d]
    print(f"   {d}: " + " ".join(f"{k}={r[k]:.3f}" for k in ("rank@1", "rank@5", "rank@10", "rank@100", "mrr", "acc", "auc")))
    if "probe" in m:
        r = m["probe"][d]
        print(f"   {d} (probe): " + " ".join(f"{k}={r[k]:.3f}" for k in ("rank@1", "rank@5", "rank@10", "mrr", "auc")))
EOF
done
