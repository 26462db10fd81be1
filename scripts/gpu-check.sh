#!/usr/bin/env bash
# The GPU check, prepared to run as one command on a CUDA machine that has PyTorch 2.11 but no
# Rust toolchain and no network (the project's lent H100/H200 machines):
#
#   here:   make build && scripts/gpu-check.sh pack          # → .gpu/ (binaries, compressed)
#   there:  bash scripts/gpu-check.sh run "$OUT"             # benchmarks + a short training run
#
# `run` points the binaries at that machine's libtorch (the PyPI torch's torch/lib), runs the
# features and training benchmarks side by side with PyTorch on the GPU, then the default
# synthetic pipeline on `tch-cuda`, and leaves logs and BENCHMARKS.md in the output folder.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  pack)
    mkdir -p .gpu
    for b in fashionbert bench; do zstd -q -f -19 "target/release/$b" -o ".gpu/$b.zst"; done
    ls -la .gpu
    ;;
  run)
    out="${2:-gpu-out}"; mkdir -p "$out"
    export LD_LIBRARY_PATH="$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')"
    export TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 FB_PYTHON=python3
    mkdir -p /tmp/fb-bin
    for b in fashionbert bench; do zstd -q -d -f ".gpu/$b.zst" -o "/tmp/fb-bin/$b"; chmod +x "/tmp/fb-bin/$b"; done
    nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$out/gpu.txt"
    /tmp/fb-bin/bench --device cuda --only features --images 512 --batch-images 64 --peer-args "--channels-last" --out "$out/BENCHMARKS.md" 2>&1 | tee "$out/bench-features.log"
    /tmp/fb-bin/bench --device cuda --only train --train-config bench/configs/fashionbert-base.json --batch 256 --steps 20 --peer-args "--bf16 --fused" --out "$out/BENCHMARKS.md" 2>&1 | tee "$out/bench-train-base.log"
    /tmp/fb-bin/bench --device cuda --only train --train-config bench/configs/fashionbert-minilm.json --batch 256 --steps 20 --peer-args "--bf16 --fused" --out "$out/BENCHMARKS.md" 2>&1 | tee "$out/bench-train-minilm.log"
    /tmp/fb-bin/fashionbert run --config pipeline.toml --set runtime.device=tch-cuda --set features.weights=random:1 2>&1 | tee "$out/pipeline.log"
    cp artifacts/evaluate/latest/metrics.json "$out/" 2>/dev/null || true
    ;;
  *) echo "usage: $0 pack | run OUT"; exit 2 ;;
esac
