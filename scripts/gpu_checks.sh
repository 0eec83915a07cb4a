#!/usr/bin/env bash
# Everything that needs a GPU, in one go: the CUDA-marked tests and the GPU build benchmark.
# Usage (on a machine with CUDA, from the repository root, with the package installed):
#   bash scripts/gpu_checks.sh
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device visible'; print(torch.cuda.get_device_name(0))"
python -m pytest -q -m cuda tests/
python benchmarks/build.py --device cuda
