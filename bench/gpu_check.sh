#!/usr/bin/env bash
# The issue-11 device check, prepared for a session that has a GPU: one short script.
#   bench/gpu_check.sh [OUT_DIR]        (default runs/gpu_check; PYTHON=… to pick the interpreter)
# 1. a short real run on CUDA through every speed path (amp "auto" → bf16, TF32, fused SGD,
#    torch.compile, round_to, the event writer thread, the data-wait clock);
# 2. bench_gpu.py at full size (ViT-S/4, 50,000 images, batches 128 and 512);
# 3. bench_compact.py on CUDA (compacted export vs masked model latency).
# Everything it prints is also written under OUT_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/gpu_check}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
torch.cuda.get_device_name(0), 'bf16', torch.cuda.is_bf16_supported())" | tee -a "$OUT/gpu.txt"

"$PY" -m tuiprune run demo --run-dir "$OUT/run" --set run.device=cuda \
    --set train.compile=true --set prune.round_to=8 --set prune.states=2 \
    --set train.epochs=1 2>&1 | tee "$OUT/run.txt"

"$PY" bench/bench_gpu.py --device cuda --json "$OUT/bench_gpu.json" 2>&1 \
    | tee "$OUT/bench_gpu.txt"

"$PY" bench/bench_compact.py --device cuda --batches 1 64 --json "$OUT/bench_compact.json" \
    2>&1 | tee "$OUT/bench_compact.txt"
