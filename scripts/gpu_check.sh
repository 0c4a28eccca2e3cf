#!/usr/bin/env bash
# GPU acceptance check, one command on the GPU machine (docs/performance.md, "GPU acceptance check"): installs the
# kit of `make gpu-kit` offline where TRL, datasets, math-verify or DeepSpeed are missing, then runs
# scripts/gpu_check.py on a Qwen2-architecture model of Qwen2.5-0.5B's shape (random weights) and writes
# $OUT/gpu_check.md and $OUT/gpu_check.json (the table), $OUT/gpu_check.log, $OUT/install.log.
#
#   make gpu-kit                                          # here, with the package registry: fills gpu-kit/
#   OUT=$OUT bash scripts/gpu_check.sh                    # there, repository root, gpu-kit/ carried: ≤ 8 minutes
#   GPU_CHECK_DEVICE=cpu OUT=/tmp/gc bash scripts/gpu_check.sh   # CPU mode, tiny sizes: about a minute
#
# Environment (defaults in brackets): OUT [./gpu_check_out], GPU_CHECK_DEVICE [cuda], KIT [gpu-kit],
# BUDGET_S [450, wall-clock seconds for install + check; a section that would not fit is skipped and says so],
# PYTHON [the first of .venv/bin/python, python3, python that imports torch]. Exit status: 0 when every section is ok or skipped, 1 when one
# failed or raised (the table says which), 2 when the set-up is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
OUT="${OUT:-./gpu_check_out}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
KIT="${KIT:-gpu-kit}"
BUDGET_S="${BUDGET_S:-450}"
if [[ -z "${PYTHON:-}" ]]; then  # the first Python that has torch
  for candidate in .venv/bin/python python3 python; do
    if "$candidate" -c "import torch" 2>/dev/null; then PYTHON=$candidate; break; fi
  done
  [[ -n "${PYTHON:-}" ]] || { echo "error: no Python with torch (.venv/bin/python, python3, python); set PYTHON" >&2; exit 2; }
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # air_align from this tree: nothing to install for it
if [[ "$DEVICE" != cuda && "$DEVICE" != cpu ]]; then
  echo "error: GPU_CHECK_DEVICE=$DEVICE; use cuda (the GPU machine) or cpu (tiny sizes)" >&2; exit 2
fi
if [[ "$DEVICE" == cuda ]]; then
  "$PYTHON" -c "import torch, sys; torch.cuda.is_available() or sys.exit(2)" || {
    echo "error: torch sees no GPU ($PYTHON: torch.cuda.is_available() is False); run the CPU mode with" \
      "GPU_CHECK_DEVICE=cpu" >&2; exit 2; }
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

importable() { "$PYTHON" -c "import importlib.util as u, sys; sys.exit(u.find_spec('$1') is None)" 2>/dev/null; }

# A distribution's own Python refuses pip without --break-system-packages (PEP 668); a venv or a conda env does not.
PIP=("$PYTHON" -m pip install --no-index)
if "$PYTHON" - <<'PY'
import os, sys, sysconfig
in_venv = sys.prefix != sys.base_prefix
sys.exit(0 if not in_venv and os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)
PY
then PIP+=(--break-system-packages); fi

missing=()
for m in trl datasets math_verify; do importable "$m" || missing+=("$m"); done
if (( ${#missing[@]} )); then
  if [[ ! -d "$KIT/wheels" ]]; then
    echo "error: ${missing[*]} not installed and no kit at $KIT/wheels: run \`make gpu-kit\` where the package" \
      "registry is reachable and let gpu-kit/ travel with the working tree" >&2
    exit 2
  fi
  links=(--find-links "$KIT/wheels" --find-links "$KIT/heavy")
  if ! importable pyarrow || ! importable pandas; then
    heavy="$KIT/heavy/pyarrow-pandas.tar.xz"
    [[ -s "$heavy" ]] || { echo "error: pyarrow/pandas missing and $heavy absent: run \`make gpu-kit\`" >&2; exit 2; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    "$PYTHON" -c "import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2], filter='data')" "$heavy" "$tmp"
    mkdir -p "$tmp/wheels"
    for tree in "$tmp"/*.whl; do  # each folder holds one unpacked wheel, named as the wheel
      (cd "$tree" && "$PYTHON" -m zipfile -c "$tmp/wheels/$(basename "$tree")" ./*)
    done
    links+=(--find-links "$tmp/wheels")
  fi
  echo "gpu_check.sh: installing ${missing[*]} offline from $KIT" >&2
  "${PIP[@]}" "${links[@]}" trl==1.16.0 datasets==5.2.0 math-verify==0.9.0 >> "$OUT/install.log" 2>&1 || {
    echo "error: the offline install failed; see $OUT/install.log:" >&2; tail -5 "$OUT/install.log" >&2; exit 2; }
fi

if [[ "$DEVICE" == cuda ]] && ! importable deepspeed; then
  sdist=$(ls "$KIT"/sdist/deepspeed-*.tar.gz 2>/dev/null | head -1 || true)
  if [[ -z "$sdist" ]]; then
    export GPU_CHECK_DEEPSPEED_STATUS="deepspeed is not installed and the kit has no sdist ($KIT/sdist)"
  else
    importable setuptools || "${PIP[@]}" --find-links "$KIT/wheels" setuptools >> "$OUT/install.log" 2>&1 || true
    # DS_BUILD_OPS=0: a pure-Python install whose CUDA ops compile on first use (ZeRO-2/3 with torch's AdamW need none).
    if DS_BUILD_OPS=0 timeout 240 "${PIP[@]}" --find-links "$KIT/wheels" --no-build-isolation "$sdist" \
        > "$OUT/deepspeed_install.log" 2>&1; then
      echo "gpu_check.sh: DeepSpeed built from $sdist" >&2
    else
      why=$(grep -v '^\s*$' "$OUT/deepspeed_install.log" | tail -3 | tr '\n' ' ' | cut -c1-400)
      export GPU_CHECK_DEEPSPEED_STATUS="the DeepSpeed sdist ($sdist) did not build here: $why (deepspeed_install.log)"
    fi
  fi
fi

left=$(( BUDGET_S - ($(date +%s) - start) ))
(( left > 120 )) || left=120
set +e
"$PYTHON" scripts/gpu_check.py --device "$DEVICE" --out "$OUT" --budget-s "$left" 2>&1 | tee "$OUT/gpu_check.log"
status=${PIPESTATUS[0]}
echo "gpu_check.sh: exit $status after $(( $(date +%s) - start )) s; table: $OUT/gpu_check.md" >&2
exit "$status"
