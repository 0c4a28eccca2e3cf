#!/usr/bin/env bash
# `make gpu-kit`: the packages the GPU machine lacks (Python 3.12, x86_64 Linux, no network there), downloaded here
# into an ignored folder that travels with the working tree (docs/performance.md, "GPU acceptance check").
#
# That machine has torch 2.11+cu130, transformers 5.17.0, accelerate 1.15.0, peft, safetensors, tokenizers, numpy,
# pyyaml, jinja2, tqdm, matplotlib and pytest; not TRL, datasets, math-verify or DeepSpeed. The kit:
#   $KIT/wheels/  ≤ 10 MiB: trl, datasets and the deps it may lack (dill, multiprocess, xxhash, fsspec,
#                 huggingface_hub), math-verify, latex2sympy2_extended, antlr4-python3-runtime; DeepSpeed's runtime
#                 deps (hjson, ninja, py-cpuinfo, msgpack, einops, pydantic, nvidia-ml-py, ...) and setuptools to
#                 build it without a network; pip takes from it only what the image lacks or has too old;
#   $KIT/sdist/   the DeepSpeed 0.19.8 source distribution (no wheel exists; it builds there, ops compiled JIT);
#   $KIT/heavy/   pyarrow and pandas, which TRL and datasets import at start-up: their wheels are 55 MB and 12 MB,
#                 which no 10 MiB kit holds, so their unpacked contents travel as one xz archive (about 39 MiB);
#                 scripts/gpu_check.sh re-zips them into the original wheels (RECORD hashes intact) when needed;
#                 beside it python-dateutil, six and click, which pandas and a newer hub may need.
# Everything together is about 49 MiB, under the 64 MiB that may travel with the working tree.
set -euo pipefail
cd "$(dirname "$0")/.."
KIT="${KIT:-gpu-kit}"
PYTHON="${PYTHON:-python3}"
if [[ -x .venv/bin/python && "$PYTHON" == python3 ]]; then PYTHON=.venv/bin/python; fi
# GPU_KIT_PYTHON_VERSION and GPU_KIT_XZ_LEVEL exist for rehearsing the offline install on another Python.
TARGET=(--only-binary=:all: --python-version "${GPU_KIT_PYTHON_VERSION:-3.12}" --implementation cp --no-deps
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64)

# huggingface_hub 1.33.0: datasets 5.2 needs >= 1.31, transformers 5.17 < 2.0; used only if the image's is older.
CORE=(trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 xxhash==4.1.0 fsspec==2026.9.0
  huggingface_hub==1.33.0
  math-verify==0.9.0 latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2
  hjson==3.1.0 ninja==1.13.2 py-cpuinfo==9.0.0 msgpack==1.2.4 einops==0.8.2 pydantic==2.14.4 pydantic_core==2.50.5
  annotated-types==0.8.0 typing-inspection==0.4.5 typing_extensions==4.16.0 nvidia-ml-py==13.615.71
  setuptools==84.2.1)
HEAVY=(pyarrow==26.0.1 pandas==3.1.1)
# Loose beside the archive (the 10 MiB are spent): pandas 3.1 needs python-dateutil >= 2.9, which an image with an
# older matplotlib may lack; huggingface_hub 1.33 needs click >= 8.4.2 should pip have to upgrade the hub.
LOOSE=(python-dateutil==2.9.0.post0 six==1.17.0 click==8.5.1)

mkdir -p "$KIT/wheels" "$KIT/sdist" "$KIT/heavy"
"$PYTHON" -m pip download --quiet "${TARGET[@]}" -d "$KIT/wheels" "${CORE[@]}"
"$PYTHON" -m pip download --quiet --no-binary :all: --no-deps -d "$KIT/sdist" deepspeed==0.19.8
"$PYTHON" -m pip download --quiet "${TARGET[@]}" -d "$KIT/heavy" "${LOOSE[@]}"
if [[ ! -s "$KIT/heavy/pyarrow-pandas.tar.xz" ]]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  "$PYTHON" -m pip download --quiet "${TARGET[@]}" -d "$tmp/whl" "${HEAVY[@]}"
  for whl in "$tmp"/whl/*.whl; do
    name=$(basename "$whl")
    mkdir -p "$tmp/tree/$name"
    "$PYTHON" -m zipfile -e "$whl" "$tmp/tree/$name"
  done
  tar -C "$tmp/tree" -cf - . | xz "-${GPU_KIT_XZ_LEVEL:-9}" -T0 > "$KIT/heavy/pyarrow-pandas.tar.xz.part"
  mv "$KIT/heavy/pyarrow-pandas.tar.xz.part" "$KIT/heavy/pyarrow-pandas.tar.xz"
fi
core=$(du -cb "$KIT"/wheels/*.whl "$KIT"/sdist/* | tail -1 | cut -f1)
total=$(du -sb "$KIT" | cut -f1)
echo "gpu-kit: $KIT: wheels + sdist $((core / 1024)) KiB (limit 10240), with pyarrow/pandas $((total / 1024)) KiB"
(( core <= 10 * 1024 * 1024 )) || { echo "error: $KIT/wheels + sdist exceed 10 MiB" >&2; exit 1; }
