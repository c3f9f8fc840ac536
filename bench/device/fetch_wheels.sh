#!/usr/bin/env bash
# Download/build the wheels a lent GPU machine needs for bench/device/run_gpu_benchmarks.sh.
# See --help.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
DEST="$HERE/wheels"
PIP="$REPO/.venv/bin/pip"
PY="$REPO/.venv/bin/python"
MAX_MIB=55

usage() {
  cat <<EOF
usage: bash bench/device/fetch_wheels.sh [--dest DIR] [--max-mib N] [--pip PIP]

Fills bench/device/wheels/ (git-ignored) with every wheel that the GPU machine lacks for
  import espnet2.tasks.asr, espnet_llm_plugin
  bench/llm_train_step.py --preset 1b, bench/llm_decoding_rtf.py --preset 1b,
  bench/datastore_search.py and bench/knnlm_decoding.py on --device cuda.
The GPU machine (Python 3.12, no package registry) already has torch 2.11 (cu130), torchaudio,
transformers, peft, sentencepiece, accelerate, scipy, numba and their dependencies (numpy,
nvidia-*, tokenizers, safetensors, huggingface-hub, PyYAML, ...): those are not fetched.

  1. pip download --only-binary=:all: of the pinned cp312 manylinux x86_64 / py3-none-any
     wheels below (the versions 'pip install espnet==202511' resolved in .venv);
  2. pip wheel --no-deps of the source-only pure-Python ones (antlr4-python3-runtime 4.9.3,
     ci_sdr, Distance, fast_bss_eval) -> py3-none-any wheels;
  3. pip wheel --no-deps of this project (from a copy of its git-tracked files);
  4. bench/device/check_wheels.py (tags, Requires-Dist coverage), then the list and the total.
Fails when the total exceeds --max-mib (default $MAX_MIB MiB: a device call carries at most
64 MiB including the repository). Left out on purpose (not imported on the benchmarks' path):
matplotlib, tensorboard, lightning and their dependencies, pillow, pyworld; see LEFT_OUT in
bench/device/check_wheels.py. Needs network access to the package index; takes ~1 min.

options:
  --dest DIR     output directory (default: bench/device/wheels; emptied of *.whl first)
  --max-mib N    size limit in MiB (default: $MAX_MIB)
  --pip PIP      pip to use (default: .venv/bin/pip; pip 23.x: newer pips reject ci_sdr's metadata)
  -h, --help     this text
EOF
}

while [[ $# -gt 0 ]]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --dest) DEST="$2"; shift 2 ;;
    --max-mib) MAX_MIB="$2"; shift 2 ;;
    --pip) PIP="$2"; shift 2 ;;
    *) echo "unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done

# Binary wheels (cp312 manylinux x86_64 or py3-none-any), pinned to what .venv resolved for
# espnet==202511 + espnet-llm-plugin, minus what the GPU machine has and minus LEFT_OUT.
BINARY=(
  espnet==202511
  faiss-cpu==1.15.1
  asteroid-filterbanks==0.4.0
  audioread==3.1.0
  certifi==2026.10.19.post1
  cffi==2.1.1
  charset-normalizer==3.5.3
  cloudpickle==3.1.3
  configargparse==1.9.0
  decorator==5.3.1
  defusedxml==0.7.1
  editdistance==0.8.1
  einops==0.8.2
  espnet-g2p-en==2.1.0.post1
  espnet-tts-frontend==0.0.4
  h5py==3.16.0
  humanfriendly==10.0
  hydra-core==1.3.8
  importlib-metadata==4.13.0
  inflect==7.6.0
  jaconv==0.5.0
  jamo==0.4.1
  jaraco-functools==4.6.0
  joblib==1.6.0
  kaldiio==2.18.1
  lazy-loader==0.6
  librosa==0.11.0
  more-itertools==11.2.1
  msgpack==1.2.4
  narwhals==2.29.0
  nltk==3.10.4
  omegaconf==2.3.1
  opt-einsum==3.4.0
  platformdirs==4.14.8
  pooch==1.9.0
  protobuf==7.36.2
  pytest==9.2.0
  pluggy==1.7.0
  iniconfig==2.3.1
  rapidfuzz==3.14.6
  pycparser==3.12
  pypinyin==0.44.0
  requests==2.34.2
  scikit-learn==1.9.1
  soundfile==0.14.0
  soxr==1.1.0
  threadpoolctl==3.8.0
  torch-complex==0.4.4
  typeguard==4.6.1
  unidecode==1.4.0
  urllib3==2.8.0
  zipp==4.1.2
)
# Source-only on the index; all pure Python, so `pip wheel` gives py3-none-any wheels.
# antlr4-python3-runtime must stay 4.9.3 (hydra-core/omegaconf; 4.13 breaks espnet's import).
SDIST=(
  antlr4-python3-runtime==4.9.3
  ci-sdr==0.0.2
  distance==0.1.3
  fast-bss-eval==0.1.3
)

[[ -x "$PIP" ]] || { echo "pip not found: $PIP (create .venv first: make test)" >&2; exit 1; }
mkdir -p "$DEST"
rm -f "$DEST"/*.whl
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

echo "== 1/4 binary wheels (${#BINARY[@]})"
"$PIP" download --quiet --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
  --implementation cp --abi cp312 --no-deps -d "$DEST" "${BINARY[@]}"

echo "== 2/4 wheels built from source-only packages (${#SDIST[@]})"
"$PIP" wheel --quiet --no-deps -w "$DEST" "${SDIST[@]}"

echo "== 3/4 espnet-llm-plugin wheel (from the git-tracked files)"
mkdir -p "$TMP/src"
if git -C "$REPO" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard -- setup.py setup.cfg pyproject.toml \
     MANIFEST.in README.md espnet_llm_plugin | tar --null --ignore-failed-read -T - -cf -) | tar -xf - -C "$TMP/src"
else
  cp -r "$REPO/setup.py" "$REPO/README.md" "$REPO/espnet_llm_plugin" "$TMP/src/"
fi
"$PIP" wheel --quiet --no-deps -w "$DEST" "$TMP/src"

echo "== 4/4 check"
n_expected=$(( ${#BINARY[@]} + ${#SDIST[@]} + 1 ))
n_found=$(find "$DEST" -maxdepth 1 -name '*.whl' | wc -l)
if [[ "$n_found" -ne "$n_expected" ]]; then
  echo "expected $n_expected wheels in $DEST, found $n_found" >&2
  exit 1
fi
"$PY" "$HERE/check_wheels.py" --wheels "$DEST"

echo
(cd "$DEST" && ls -l -- *.whl | sort -k5,5nr | awk '{printf "%8.2f MiB  %s\n", $5 / 1048576, $9}')
total_bytes=$(find "$DEST" -maxdepth 1 -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s}')
total_mib=$(awk -v b="$total_bytes" 'BEGIN {printf "%.1f", b / 1048576}')
echo "total: $n_found wheels, $total_mib MiB in $DEST (limit $MAX_MIB MiB)"
if awk -v b="$total_bytes" -v m="$MAX_MIB" 'BEGIN {exit !(b > m * 1048576)}'; then
  echo "over the limit: a device call carries at most 64 MiB including the repository" >&2
  exit 1
fi
