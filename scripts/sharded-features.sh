#!/bin/bash
# A sharded stage (`features`, or STAGE=ingest / STAGE=evaluate) as N shard processes at once on
# this machine, then the merge; prints wall times. Arguments after N go to every command (`--set …`).
#   scripts/sharded-features.sh CONFIG [N] [ARGS…]   (RESULTS.md, "Sharded features on fashion-real")
# Logs: $LOGS/shard-I.log (default /tmp). The binary: $FASHIONBERT (default target/release/fashionbert).
set -euo pipefail
CONFIG=${1:?usage: scripts/sharded-features.sh CONFIG [N]}
N=${2:-4}
shift $(($# < 2 ? $# : 2))
STAGE=${STAGE:-features}
FASHIONBERT=${FASHIONBERT:-target/release/fashionbert}
LOGS=${LOGS:-/tmp}
t0=$(date +%s.%N)
pids=()
for ((i = 0; i < N; i++)); do
  "$FASHIONBERT" run "$STAGE" --config "$CONFIG" --shard "$i/$N" "$@" > "$LOGS/shard-$i.log" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
t1=$(date +%s.%N)
"$FASHIONBERT" merge "$STAGE" --config "$CONFIG" "$@"
t2=$(date +%s.%N)
echo "$N shards: $(echo "$t1 - $t0" | bc) s; merge: $(echo "$t2 - $t1" | bc) s"
