#!/usr/bin/env bash
# All GPU benchmarks in one device call; see --help. Keeps going when a step fails.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WHEELS="$HERE/wheels"
PY="${PYTHON:-}"
SITE="${KIT_SITE:-/tmp/espnet-kit-site}"
DEADLINE="${KIT_DEADLINE_S:-540}"
DRY_RUN=0

usage() {
  cat <<EOF
usage: bash bench/device/run_gpu_benchmarks.sh [--deadline S] [--dry-run]

Run on a lent GPU machine from the repository root, as the whole device command, with the
wheel kit carried along (bench/device/fetch_wheels.sh builds it here first):
  run(command="bash bench/device/run_gpu_benchmarks.sh", carry=["bench/device/wheels"], timeout_s=600)

  1. pip install --no-index --no-deps --target \$KIT_SITE (default /tmp/espnet-kit-site) of every
     wheel in bench/device/wheels (fallback: unzip them there); PYTHONPATH = repo root (so the
     working tree's espnet_llm_plugin is the one imported) + \$KIT_SITE + the machine's own packages
  2. smoke check (90 s cap): CUDA available, import espnet2.tasks.asr, espnet_llm_plugin, faiss
  3. the tests marked gpu (pytest -m gpu tests, 120 s cap; needs the kit's pytest wheel)
  4. benchmarks on --device cuda, each with its own timeout, trimmed so that the whole script
     ends within --deadline seconds (default \$KIT_DEADLINE_S or 540; the device tool allows 600):
       llm_train_step@1b      --preset 1b (frozen/LoRA/full, checkpointing off+on, MFU)   200 s
       llm_decoding_rtf@1b    --preset 1b --utts 2                                        120 s
       datastore_search       --sizes 10000 100000 1000000 (faiss CPU rows + torch GPU)     60 s
       knnlm_decoding         --datastore_size 1000000 --indexes torch,flat                 90 s
       datastore_search@10M   --sizes 10000000 (torch exact search; bandwidth fraction)     80 s
     A benchmark that fails or times out is recorded and the next one runs.
  5. \$OUT/summary.md (status, wall time and the results table of every step; also printed)

Outputs go to \$OUT (the device tool's output folder; default bench/results/device-<UTC date>):
  summary.md, run.log (this script's whole log), nvidia-smi.txt, pip-freeze.txt, smoke.txt,
  bench/<step>/{<name>.json,<name>.md,run.log}.
Environment: PYTHON (default python3), KIT_SITE, KIT_DEADLINE_S, OUT.

options:
  --deadline S   seconds for the whole script (default $DEADLINE)
  --dry-run      print the plan (commands and timeouts) and exit without running anything
  -h, --help     this text
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --deadline) DEADLINE="$2"; shift 2 ;;
    --dry-run) DRY_RUN=1; shift ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# step name | timeout cap (s) | arguments after `python bench/`
STEPS=(
  "llm_train_step@1b|200|llm_train_step.py --preset 1b"
  "llm_decoding_rtf@1b|120|llm_decoding_rtf.py --preset 1b --utts 2"
  "datastore_search|60|datastore_search.py --sizes 10000 100000 1000000"
  "knnlm_decoding|90|knnlm_decoding.py --datastore_size 1000000 --indexes torch,flat"
  "datastore_search@10M|80|datastore_search.py --sizes 10000000"
)
RESERVE=20       # seconds kept for pip freeze + summary after the last benchmark
MIN_STEP=30      # a benchmark with less time left than this is skipped

if [[ -z "$PY" ]]; then  # the first Python that has torch (the machine's preinstalled one)
  for c in python3 python python3.12; do
    if command -v "$c" >/dev/null 2>&1 && "$c" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is None)" 2>/dev/null; then
      PY="$c"; break
    fi
  done
  PY="${PY:-python3}"
fi

if [[ "$DRY_RUN" -eq 1 ]]; then
  echo "python: $PY; wheels: $(ls "$WHEELS"/*.whl 2>/dev/null | wc -l) in $WHEELS; site: $SITE; deadline ${DEADLINE}s"
  for s in "${STEPS[@]}"; do
    IFS='|' read -r key cap args <<<"$s"
    echo "timeout ${cap}s: $PY bench/$args --device cuda --out_dir \$OUT/bench/$key"
  done
  exit 0
fi

START=$SECONDS
OUT="${OUT:-$REPO/bench/results/device-$(date -u +%F)}"
mkdir -p "$OUT/bench"
exec > >(tee -a "$OUT/run.log") 2>&1
cd "$REPO"
SUMMARY_ROWS=()
log() { printf '[%4ds] %s\n' "$((SECONDS - START))" "$*"; }
record() { SUMMARY_ROWS+=("| $1 | $2 | $3 | $4 | $5 |"); log "$1: $2 (rc $3, ${4}s of ${5}s)"; }

log "repo $REPO, OUT $OUT, deadline ${DEADLINE}s"
nvidia-smi >"$OUT/nvidia-smi.txt" 2>&1 || log "nvidia-smi failed (see nvidia-smi.txt)"
GPU_DESC="$(nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,power.limit \
  --format=csv,noheader 2>/dev/null | head -n 1 || true)"
echo "GPU: ${GPU_DESC:-unknown}" | tee -a "$OUT/nvidia-smi.txt"
"$PY" -V || { log "no $PY"; exit 1; }

# ---- 1. install the kit
t0=$SECONDS
rm -rf "$SITE"
mkdir -p "$SITE"
shopt -s nullglob
wheels=("$WHEELS"/*.whl)
shopt -u nullglob
if [[ ${#wheels[@]} -eq 0 ]]; then
  log "no wheels in $WHEELS: was it carried? (carry: [\"bench/device/wheels\"])"
  record install failed 1 0 0
elif timeout 180 "$PY" -m pip install --no-index --no-deps --no-compile --disable-pip-version-check \
    --quiet --target "$SITE" "${wheels[@]}"; then
  record install "ok (pip, ${#wheels[@]} wheels)" 0 $((SECONDS - t0)) 180
else
  rc=$?
  log "pip install --target failed (rc $rc): unzipping the wheels into $SITE instead"
  rm -rf "$SITE" && mkdir -p "$SITE"
  if "$PY" - "$SITE" "${wheels[@]}" <<'EOF'
import sys, zipfile
site, wheels = sys.argv[1], sys.argv[2:]
for w in wheels:  # purelib/platlib wheels: the importable files sit at the top level
    with zipfile.ZipFile(w) as z:
        z.extractall(site, [n for n in z.namelist() if not n.split("/", 1)[0].endswith(".data")])
print(f"unzipped {len(wheels)} wheels into {site}")
EOF
  then record install "ok (unzip fallback)" "$rc" $((SECONDS - t0)) 180
  else record install failed $? $((SECONDS - t0)) 180
  fi
fi
export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}" KIT_SITE="$SITE"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1

# ---- 2. smoke check
t0=$SECONDS
timeout 90 "$PY" - >"$OUT/smoke.txt" 2>&1 <<'EOF'
import time
t = time.time()
import torch
assert torch.cuda.is_available(), "CUDA is not available"
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name(0))
from espnet_llm_plugin.quiet import quiet_espnet_import
with quiet_espnet_import():  # no nltk download attempts (the machine is offline)
    import espnet2.tasks.asr
import espnet, espnet_llm_plugin, faiss, numpy, peft, scipy, transformers
print("espnet", espnet.__version__, "| espnet_llm_plugin", espnet_llm_plugin.__file__,
      "| faiss", faiss.__version__, "| transformers", transformers.__version__, "| peft", peft.__version__,
      "| numpy", numpy.__version__, "| scipy", scipy.__version__)
print(f"smoke ok in {time.time() - t:.1f} s")
# the kit was installed with --no-deps: list requirements of its packages that this machine's
# versions do not meet (information only; left-out packages such as matplotlib show as absent)
try:
    import importlib.metadata as md, os
    from packaging.requirements import Requirement
    for dist in md.distributions(path=[os.environ["KIT_SITE"]]):
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                print(f"requirement absent: {dist.metadata['Name']} -> {line}")
                continue
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                print(f"requirement unmet: {dist.metadata['Name']} -> {line} (have {have})")
except Exception as e:  # information only
    print(f"requirement check skipped: {type(e).__name__}: {e}")
EOF
rc=$?
cat "$OUT/smoke.txt"
record smoke "$([[ $rc -eq 0 ]] && echo ok || echo failed)" "$rc" $((SECONDS - t0)) 90

# ---- 3. the GPU-marked tests (skipped on CPU-only machines), with the working tree's code
t0=$SECONDS
log "gpu tests: timeout 120s: $PY -m pytest -q -m gpu tests"
timeout -k 10 120 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests >"$OUT/gpu-tests.txt" 2>&1 </dev/null
rc=$?
tail -n 5 "$OUT/gpu-tests.txt"
record gpu_tests "$([[ $rc -eq 0 ]] && echo ok || echo failed)" "$rc" $((SECONDS - t0)) 120

# ---- 4. benchmarks
for s in "${STEPS[@]}"; do
  IFS='|' read -r key cap args <<<"$s"
  dir="$OUT/bench/$key"
  mkdir -p "$dir"
  left=$((DEADLINE - (SECONDS - START) - RESERVE))
  limit=$(( cap < left ? cap : left ))
  if (( limit < MIN_STEP )); then
    record "$key" "skipped (deadline: ${left}s left)" - 0 "$cap"
    continue
  fi
  log "$key: timeout ${limit}s: $PY bench/$args --device cuda --out_dir $dir"
  t0=$SECONDS
  # shellcheck disable=SC2086  # $args is a list of words on purpose
  timeout -k 10 "$limit" "$PY" bench/$args --device cuda --out_dir "$dir" >"$dir/run.log" 2>&1 </dev/null
  rc=$?
  case $rc in
    0) status=ok ;;
    124|137) status=timeout ;;
    *) status=failed ;;
  esac
  record "$key" "$status" "$rc" $((SECONDS - t0)) "$limit"
  [[ $rc -eq 0 ]] || tail -n 15 "$dir/run.log"
done

# ---- 5. environment and summary
timeout 15 "$PY" -m pip freeze --disable-pip-version-check >"$OUT/pip-freeze.txt" 2>&1 || true
{
  echo "# GPU benchmarks ($(date -u +%FT%TZ))"
  echo
  echo "GPU: ${GPU_DESC:-unknown}; $("$PY" -V 2>&1); kit: ${#wheels[@]} wheels"
  echo
  echo "| step | status | rc | wall s | timeout s |"
  echo "|---|---|---|---|---|"
  printf '%s\n' "${SUMMARY_ROWS[@]}"
  echo
  echo "total wall time: $((SECONDS - START)) s"
  for s in "${STEPS[@]}"; do
    IFS='|' read -r key _ _ <<<"$s"
    for md in "$OUT/bench/$key"/*.md; do
      [[ -f "$md" ]] || continue
      echo
      echo "## $key"
      echo
      cat "$md"
    done
  done
} >"$OUT/summary.md"
cat "$OUT/summary.md"
# exit status 0 only when every step passed
if printf '%s\n' "${SUMMARY_ROWS[@]}" | grep -qE '\| (failed|timeout|skipped)'; then exit 1; fi
exit 0
