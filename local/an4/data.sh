#!/usr/bin/env bash
# Data preparation for CMU AN4: writes data/train, data/dev (held-out training speakers)
# and data/test (wav.scp, text, utt2spk, spk2utt). Run from the recipe directory.
set -euo pipefail

. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../data_common.sh"  # log, die, parse_options, ...

usage() {
    cat >&2 <<EOU
Usage: $0 [--download true|false] [--dev_ratio 0.1] [--dev_speakers spk1,spk2] [--data_dir data]

  --download      download and extract AN4 into \$AN4 (db.sh) when it is not there (default: false)
  --dev_ratio     fraction of training speakers held out as data/dev (default: 0.1)
  --dev_speakers  comma-separated dev speakers (overrides --dev_ratio)
  --data_dir      output directory (default: data)
EOU
}

download=false
dev_ratio=0.1
dev_speakers=
data_dir=data

parse_options "download dev_ratio dev_speakers data_dir" "$@"

load_recipe_env egs2/an4/llm_asr1

corpus_location AN4 "the directory that contains an4/ (from http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz)"

log "preparing AN4 from '$AN4' into $data_dir/{train,dev,test} (download: $download)"
python -m espnet_llm_plugin.bin.prepare_an4 \
    --an4_root "$AN4" \
    --download "$download" \
    --download_dir "$AN4" \
    --dev_ratio "$dev_ratio" \
    --dev_speakers "$dev_speakers" \
    --data_dir "$data_dir"
log "done"
