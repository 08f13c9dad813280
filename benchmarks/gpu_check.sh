#!/usr/bin/env bash
# GPU check for issue 5 (scale): run ONCE on a machine with a CUDA GPU, as one short script.
#
#   bash benchmarks/gpu_check.sh            # results under ${OUT:-benchmarks/results}
#
# What it does (estimated 3-6 minutes on an H100/H200 with 16 CPU cores; the device tool allows
# 10 minutes per command, so the steps below have their own time limits):
#   1. the GPU tests (pytest -m gpu tests/scale): fast inference path on CUDA == CPU, out-of-core
#      predict on CUDA agrees with the CPU run;
#   2. the benchmark at 1 M and 10 M transcripts with --device cuda (1 M: read, graph, one train
#      epoch, predict, baseline, export, out-of-core; 10 M: out-of-core predict end to end), and
#      the time-to-quality run on the 186 k crop;
#   3. nvidia-smi and the package versions, next to the JSON and the Markdown table.
# Targets (issue 5): predict >= 5 M transcripts/s on the GPU, one train epoch on 1 M transcripts
# <= 10 s. Compare "predict" (in memory, graph prebuilt) and "train 1 epoch" in the 1m column.
#
# Python: the GPU image's python3 has torch, torch_geometric, lightning, pyarrow, pandas, scipy,
# scikit-image, psutil; segger also needs shapely, anndata (+ natsort, array-api-compat,
# legacy-api-wrap), dask + distributed (+ partd, locket, tblib, zict; cloudpickle, toolz, msgpack,
# sortedcontainers are there). Nothing can be downloaded on that machine: carry cp312
# manylinux wheels in .whl/ (see /work/.library/device/README.md) and set WHEELS=.whl, e.g.
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#     -d .whl shapely anndata natsort array-api-compat legacy-api-wrap dask distributed partd locket tblib zict
# (pure-python ones come as py3-none-any wheels: add --platform any or download them without the
#  platform flags). The 1 M / 10 M inputs are generated on the machine (/tmp, ~10 s).
#
# Data: only the repository travels to the device machine. Copy the 186 k crop (9 MB) into an
# ignored folder and carry it, e.g. here:
#   echo /.gpu_data/ >> .git/info/exclude; mkdir -p .gpu_data
#   cp -r /work/shared/data/xenium_breast_bidcell .gpu_data/
# then run with carry=[".gpu_data", ".whl"] and the command
#   SEGGER_SHARED_DATA=$PWD/.gpu_data WHEELS=.whl bash benchmarks/gpu_check.sh
# (the 15 k lung crop is packaged in src/segger/sample_data).
set -u -o pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
RES=${OUT:-benchmarks/results}
mkdir -p "$RES"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
if [ -n "${WHEELS:-}" ] && ls "$WHEELS"/*.whl >/dev/null 2>&1; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
# the shared crops: ../shared/data beside the checkout, else /work/shared/data; the lung crop is packaged
export SEGGER_SHARED_DATA=${SEGGER_SHARED_DATA:-$( [ -d ../shared/data ] && echo "$PWD/../shared/data" || echo /work/shared/data )}

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  $PY - <<'EOF'
import importlib
for m in ["torch", "torch_geometric", "pytorch_lightning", "pyarrow", "pandas", "shapely", "anndata", "dask", "distributed", "scipy"]:
    try:
        mod = importlib.import_module(m)
        print(f"{m} {getattr(mod, '__version__', '?')}")
    except Exception as exc:
        print(f"MISSING {m}: {exc}")
import torch
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "")
EOF
} 2>&1 | tee "$RES/gpu_env.txt"
if [ ! -f "$SEGGER_SHARED_DATA/xenium_breast_bidcell/transcripts.parquet" ]; then
  echo "the 186k breast crop is not at $SEGGER_SHARED_DATA/xenium_breast_bidcell: copy shared/data into the repo (carry it) and set SEGGER_SHARED_DATA" | tee -a "$RES/gpu_env.txt"
  exit 2
fi

# 1. GPU tests (skip cleanly where there is no CUDA)
timeout 150 $PY -m pytest -q -p no:cacheprovider -m gpu tests/scale -W ignore 2>&1 | tail -n 15 | tee "$RES/gpu_tests.txt"

# 2. the benchmark on CUDA (1 M and 10 M) and time to quality
timeout 400 $PY benchmarks/run.py --sizes 1m,10m --device cuda --scratch /tmp/segger_scale \
  --json "$RES/scale-cuda.json" --markdown "$RES/scale-cuda.md" 2>&1 | tail -n 60 | tee "$RES/gpu_bench.txt"
