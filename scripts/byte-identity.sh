#!/usr/bin/env bash
# Do two fashionbert binaries write the same artefacts? Runs a reduced default pipeline with each
# into its own empty store and compares every file of every entry by sha256.
#
#   bash scripts/byte-identity.sh OLD_BIN NEW_BIN [OLD_CONFIG]
#
# OLD_CONFIG: the old binary's pipeline.toml when its format differs (default: this checkout's).
# Expected differences: manifests (versions, keys, timestamps) and wall-clock fields.
set -euo pipefail
cd "$(dirname "$0")/.."
old_bin=$1 new_bin=$2 old_cfg=${3:-pipeline.toml}
work=$(mktemp -d)
here=$(pwd)
reduce() {  # config file, store dir
  sed -e "s#^artifacts = .*#artifacts = \"$2\"#" -e "s#\"weights/#\"$here/weights/#" \
      -e "s#\"configs/#\"$here/configs/#" -e 's#^products = [0-9]*#products = 600#' \
      -e 's#^epochs = [0-9]*#epochs = 2#' -e 's#^validate_every = [0-9]*#validate_every = 20#' "$1"
}
reduce "$old_cfg" "$work/old" > "$work/old.toml"
reduce pipeline.toml "$work/new" > "$work/new.toml"
"$old_bin" run --config "$work/old.toml" > "$work/old.log" 2>&1 || { tail "$work/old.log"; exit 1; }
"$new_bin" run --config "$work/new.toml" > "$work/new.log" 2>&1 || { tail "$work/new.log"; exit 1; }
python3 - "$work" <<'PY'
import hashlib, os, sys
work = sys.argv[1]
def files(store):
    out = {}
    for stage in sorted(os.listdir(store)):
        sd = os.path.join(store, stage)
        if stage.startswith(".") or not os.path.isdir(sd):
            continue
        for key in os.listdir(sd):
            kd = os.path.join(sd, key)
            if key == "latest" or not os.path.isdir(kd) or os.path.islink(kd):
                continue
            for dp, _, fs in os.walk(kd):
                for f in fs:
                    p = os.path.join(dp, f)
                    out[(stage, os.path.relpath(p, kd))] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out
o, n = files(os.path.join(work, "old")), files(os.path.join(work, "new"))
both = sorted(set(o) & set(n))
same = [k for k in both if o[k] == n[k]]
print(f"{len(same)} of {len(both)} shared files identical; only old: {len(set(o) - set(n))}, only new: {len(set(n) - set(o))}")
for k in both:
    if o[k] != n[k]:
        print("differs:", "/".join(k))
for k in sorted(set(o) ^ set(n)):
    print("only", "old:" if k in o else "new:", "/".join(k))
print("metrics.json", o.get(("evaluate", "metrics.json"), "")[:16], n.get(("evaluate", "metrics.json"), "")[:16])
PY
echo "stores and logs: $work"
