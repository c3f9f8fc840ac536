#!/usr/bin/env bash
# Data preparation for SLUE-VoxPopuli: writes data/train, data/valid (held-out fine-tune
# speakers), data/dev (official dev set), data/test (only with a labelled test manifest) and
# data/local/passages.jsonl (text domain memory). Run from the recipe directory.
set -euo pipefail

. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../data_common.sh"  # log, die, parse_options, ...

usage() {
    cat >&2 <<EOU
Usage: $0 [--download true|false] [--valid_ratio 0.05] [--data_dir data]

  --download     download and extract SLUE-VoxPopuli into \$SLUE_VOXPOPULI (db.sh) when it is
                 not there (default: false)
  --valid_ratio  fraction of fine-tune speakers held out as data/valid (default: 0.05)
  --data_dir     output directory (default: data)
EOU
}

download=false
valid_ratio=0.05
data_dir=data

parse_options "download valid_ratio data_dir" "$@"

load_recipe_env egs2/slue_voxpopuli/llm_asr1

corpus_location SLUE_VOXPOPULI "the directory that contains slue-voxpopuli/ (from https://papers-slue.awsdev.asapp.com/slue-voxpopuli_blind.tar.gz)"

log "preparing SLUE-VoxPopuli from '$SLUE_VOXPOPULI' into $data_dir (download: $download)"
python -m espnet_llm_plugin.bin.prepare_slue_voxpopuli \
    --slue_root "$SLUE_VOXPOPULI" \
    --download "$download" \
    --download_dir "$SLUE_VOXPOPULI" \
    --valid_ratio "$valid_ratio" \
    --data_dir "$data_dir"
log "done"
