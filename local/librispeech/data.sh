#!/usr/bin/env bash
# Data preparation for LibriSpeech (OpenSLR 12): writes data/train_clean_100 (or data/train_960
# with --train_hours 960), data/dev_clean, data/dev_other, data/test_clean, data/test_other
# (wav.scp, text, utt2spk, spk2utt). Run from the recipe directory.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<EOU
Usage: $0 [--download true|false] [--train_hours 100|960] [--data_dir data]

  --download     download and extract the needed subsets into \$LIBRISPEECH (db.sh) when they
                 are not there (default: false)
  --train_hours  100: train-clean-100 -> data/train_clean_100; 960: all training subsets ->
                 data/train_960 (default: 100)
  --data_dir     output directory (default: data)
EOU
}

download=false
train_hours=100
data_dir=data

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --download|--train_hours|--data_dir)
            [ $# -ge 2 ] || { usage; die "$1 needs a value"; }
            name=${1#--}
            printf -v "$name" '%s' "$2"
            shift 2 ;;
        --download=*|--train_hours=*|--data_dir=*)
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
case "$train_hours" in
    100|960) ;;
    *) die "--train_hours must be 100 or 960, got '$train_hours'" ;;
esac

[ -f ./db.sh ] || die "./db.sh not found; run this script from the recipe directory (egs2/librispeech/llm_asr1)"
[ -f ./path.sh ] || die "./path.sh not found; run this script from the recipe directory (egs2/librispeech/llm_asr1)"
. ./db.sh
set +u  # environment scripts often read unset variables
. ./path.sh
set -u

LIBRISPEECH=${LIBRISPEECH:-}
if [ -z "$LIBRISPEECH" ]; then
    if [ "$download" = true ]; then
        LIBRISPEECH=downloads
    else
        die "LIBRISPEECH is not set: set LIBRISPEECH in db.sh to the directory that contains LibriSpeech/ (subsets from https://www.openslr.org/resources/12/), or pass --download true"
    fi
fi

log "preparing LibriSpeech (${train_hours} h) from '$LIBRISPEECH' into $data_dir (download: $download)"
python -m espnet_llm_plugin.bin.prepare_librispeech \
    --librispeech_root "$LIBRISPEECH" \
    --download "$download" \
    --download_dir "$LIBRISPEECH" \
    --train_hours "$train_hours" \
    --data_dir "$data_dir"
log "done"
