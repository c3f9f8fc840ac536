#!/usr/bin/env bash
# Data preparation for CMU AN4: writes data/train, data/dev (held-out training speakers)
# and data/test (wav.scp, text, utt2spk, spk2utt). Run from the recipe directory.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*" >&2; }
die() { log "error: $*"; exit 1; }

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

while [ $# -gt 0 ]; do
    case "$1" in
        -h|--help) usage; exit 0 ;;
        --download|--dev_ratio|--dev_speakers|--data_dir)
            [ $# -ge 2 ] || { usage; die "$1 needs a value"; }
            name=${1#--}
            printf -v "$name" '%s' "$2"
            shift 2 ;;
        --download=*|--dev_ratio=*|--dev_speakers=*|--data_dir=*)
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

[ -f ./db.sh ] || die "./db.sh not found; run this script from the recipe directory (egs2/an4/llm_asr1)"
[ -f ./path.sh ] || die "./path.sh not found; run this script from the recipe directory (egs2/an4/llm_asr1)"
. ./db.sh
set +u  # environment scripts often read unset variables
. ./path.sh
set -u

AN4=${AN4:-}
if [ -z "$AN4" ]; then
    if [ "$download" = true ]; then
        AN4=downloads
    else
        die "AN4 is not set: set AN4 in db.sh to the directory that contains an4/ (from http://www.speech.cs.cmu.edu/databases/an4/an4_sphere.tar.gz), or pass --download true"
    fi
fi

log "preparing AN4 from '$AN4' into $data_dir/{train,dev,test} (download: $download)"
python -m espnet_llm_plugin.bin.prepare_an4 \
    --an4_root "$AN4" \
    --download "$download" \
    --download_dir "$AN4" \
    --dev_ratio "$dev_ratio" \
    --dev_speakers "$dev_speakers" \
    --data_dir "$data_dir"
log "done"
