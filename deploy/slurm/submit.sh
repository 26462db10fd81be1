#!/bin/bash
# Submits the sharded `features` array and the merge that waits for it:
#   deploy/slurm/submit.sh pipelines/fashion-gen.toml 16
set -euo pipefail
CONFIG=${1:?usage: submit.sh CONFIG [SHARDS]}
SHARDS=${2:-16}
here=$(cd "$(dirname "$0")" && pwd)
array=$(sbatch --parsable --array="0-$((SHARDS - 1))" "$here/features-shards.sbatch" "$CONFIG")
sbatch --dependency="afterok:${array%%;*}" "$here/merge.sbatch" "$CONFIG"
