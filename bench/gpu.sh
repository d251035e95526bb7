#!/usr/bin/env bash
# facefleet on a bare NVIDIA machine: set up, then print 720p frames/s and training images/s.
#
#   bash bench/gpu.sh [bench/gpu.py options]     e.g.  bash bench/gpu.sh --frames 1800
#
# Needs: an NVIDIA driver, python3 (3.11+) with venv, this repository, and the data folder
# (FACEFLEET_TEST_DATA, default ../shared/data: the hamilton clip, its gallery, LFW).
# Installs into .venv-gpu: facefleet with the pinned CUDA torch (2.14.1 / torchvision 0.29.1)
# and onnxruntime-gpu in place of onnxruntime, so the RetinaFace detector runs on the GPU
# too. Packages come from PyPI, or from a wheel folder: PIP_FIND_LINKS=/path PIP_NO_INDEX=1.
# Figures land in bench/results/gpu.json.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FACEFLEET_GPU_VENV:-.venv-gpu}

command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
    --format=csv,noheader || echo "warning: nvidia-smi not found; torch decides below" >&2

if [ ! -x "$VENV/bin/facefleet" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --upgrade pip
    "$VENV/bin/pip" install --quiet -e .
fi
# The CUDA build of onnxruntime, when the platform has one (else the detector stays on CPU).
if ! "$VENV/bin/python" -c "import onnxruntime as o, sys; \
sys.exit('CUDAExecutionProvider' not in o.get_available_providers())" 2>/dev/null; then
    ORT=$("$VENV/bin/python" -c "import onnxruntime; print(onnxruntime.__version__)")
    if "$VENV/bin/pip" install --quiet "onnxruntime-gpu==$ORT"; then
        "$VENV/bin/pip" uninstall --quiet -y onnxruntime
        "$VENV/bin/pip" install --quiet --force-reinstall --no-deps "onnxruntime-gpu==$ORT"
    else
        echo "warning: no onnxruntime-gpu $ORT for this platform; detection runs on the CPU" >&2
    fi
fi
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'cuda', \
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

mkdir -p bench/results
export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
exec "$VENV/bin/python" bench/gpu.py --json bench/results/gpu.json "$@"
