#!/usr/bin/env bash
# One GPU lease, prepared: what `make gpu-wheels` put in .whl/ installed once, then each PART in the order given,
# each under its own time limit, so that a part that runs long costs only itself and what ran is kept.
#   check          the GPU check (benchmarks/gpu_check.py): five pipelines, generate, the device/training tests
#   135m 360m 1.7b benchmarks/gpu_step.py at that shape: ours, TRL 1.12, ours with the static cache, a profiled step
#                  (DEVICE=cpu INSTALL=0 GPU_PY=.venv/bin/python ... cpu-small: the script tried without a GPU)
# Results and logs go to $OUT (the device tool's folder; runs/gpu without it), at most two files a part.
# docs/benchmarks.md "On a GPU" has the calls. Limits in seconds: CHECK_S (280), STEP_S (260); STEPS (4).
#   bash benchmarks/gpu_session.sh check 1.7b
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/gpu}
py=${GPU_PY:-python3}
device=${DEVICE:-cuda}
site=${GPU_SITE:-/tmp/site}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false

for need in .whl/trl112 .whl/smollm2-tokenizer .whl/harmless-base-test.jsonl.gz; do
  [ -e "$need" ] || { echo "gpu-session: no $need here: run make gpu-wheels and carry .whl" >&2; exit 2; }
done
pip_install() { "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$@"; }
# INSTALL=0: GPU_PY has the project already (the CPU try in .venv); TRL 1.12 goes to a folder of its own anyway
if [ "${INSTALL:-1}" = 1 ] && [ ! -e "$site/.installed" ]; then
  pip_install "$site" .whl/*.whl && touch "$site/.installed" || exit 2
fi
[ -d "$site-trl112/trl" ] || pip_install "$site-trl112" .whl/trl112/*.whl || exit 2
export PYTHONPATH=$site PATH=$site/bin:$PATH
[ "$device" = cpu ] || nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

status=0
for part in "$@"; do
  started=$SECONDS
  case $part in
    check)
      # gpu_check's limit is per pipeline, test run and generate (which follows the rlhf pipeline): room for it
      timeout -k 10 "${CHECK_S:-280}" "$py" -m benchmarks.gpu_check --timeout $((${CHECK_S:-280} - 60)) \
        $([ "$device" = cpu ] && echo --cpu) --json "$out/gpu-check.json" >"$out/gpu-check.log" 2>&1
      ;;
    *)  # a shape of gpu_step's, which refuses any other
      timeout -k 10 "${STEP_S:-260}" "$py" -m benchmarks.gpu_step --device "$device" --shape "$part" --steps "${STEPS:-4}" \
        --tokenizer .whl/smollm2-tokenizer --prompts .whl/harmless-base-test.jsonl.gz --trl-path "$site-trl112" \
        --variant static:static_cache=true --profile --json "$out/gpu-step-$part.json" >"$out/gpu-step-$part.log" 2>&1
      ;;
  esac
  code=$?
  [ "$code" = 0 ] || status=1
  echo "== $part: exit $code after $((SECONDS - started)) s"
  tail -n 30 "$out"/*"$part".log
done
exit $status
