#!/bin/bash
# Submits a sharded stage's array and the merge that waits for it (STAGE: `features` by default):
#   deploy/slurm/submit.sh pipelines/fashion-gen.toml 16
#   STAGE=evaluate deploy/slurm/submit.sh pipelines/fashion-gen.toml 8
set -euo pipefail
CONFIG=${1:?usage: submit.sh CONFIG [SHARDS]}
SHARDS=${2:-16}
here=$(cd "$(dirname "$0")" && pwd)
export STAGE=${STAGE:-features}
array=$(sbatch --parsable --export=ALL --array="0-$((SHARDS - 1))" "$here/features-shards.sbatch" "$CONFIG")
sbatch --export=ALL --dependency="afterok:${array%%;*}" "$here/merge.sbatch" "$CONFIG"
