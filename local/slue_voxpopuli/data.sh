#!/usr/bin/env bash
# Data preparation for SLUE-VoxPopuli: writes data/train, data/valid (held-out fine-tune
# speakers), data/dev (official dev set), data/test (only with a labelled test manifest) and
# data/local/passages.jsonl (text domain memory). Run from the recipe directory.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*" >&2; }
die() { log "error: $*"; exit 1; }

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

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --download|--valid_ratio|--data_dir)
            [ $# -ge 2 ] || { usage; die "$1 needs a value"; }
            name=${1#--}
            printf -v "$name" '%s' "$2"
            shift 2 ;;
        --download=*|--valid_ratio=*|--data_dir=*)
            name=${1%%=*}; name=${name#--}
            printf -v "$name" '%s' "${1#*=}"
            shift ;;
        *) usage; die "unknown option: $1" ;;
    esac
done
case "$download" in
    true|false) ;;
    *) die "--download must be true or false, got '$download'" ;;
esac

[ -f ./db.sh ] || die "./db.sh not found; run this script from the recipe directory (egs2/slue_voxpopuli/llm_asr1)"
[ -f ./path.sh ] || die "./path.sh not found; run this script from the recipe directory (egs2/slue_voxpopuli/llm_asr1)"
. ./db.sh
set +u  # environment scripts often read unset variables
. ./path.sh
set -u

SLUE_VOXPOPULI=${SLUE_VOXPOPULI:-}
if [ -z "$SLUE_VOXPOPULI" ]; then
    if [ "$download" = true ]; then
        SLUE_VOXPOPULI=downloads
    else
        die "SLUE_VOXPOPULI is not set: set SLUE_VOXPOPULI in db.sh to the directory that contains slue-voxpopuli/ (from https://papers-slue.awsdev.asapp.com/slue-voxpopuli_blind.tar.gz), or pass --download true"
    fi
fi

log "preparing SLUE-VoxPopuli from '$SLUE_VOXPOPULI' into $data_dir (download: $download)"
python -m espnet_llm_plugin.bin.prepare_slue_voxpopuli \
    --slue_root "$SLUE_VOXPOPULI" \
    --download "$download" \
    --download_dir "$SLUE_VOXPOPULI" \
    --valid_ratio "$valid_ratio" \
    --data_dir "$data_dir"
log "done"
