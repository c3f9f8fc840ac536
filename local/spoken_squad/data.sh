#!/usr/bin/env bash
# Data preparation for Spoken-SQuAD: writes data/train, data/valid (held-out training
# articles), data/test (wav.scp, text, utt2spk, spk2utt, documents.jsonl, gold_passages) and
# data/local/passages.jsonl (domain memory). Run from the recipe directory.
set -euo pipefail

log() { echo "$(date '+%Y-%m-%dT%H:%M:%S') (${0##*/}) $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    cat >&2 <<EOU
Usage: $0 [--download true|false] [--valid_ratio 0.05] [--data_dir data]

  --download     download and extract Spoken-SQuAD into \$SPOKEN_SQUAD (db.sh) when it is
                 not there (default: false; the audio is about 50 GB)
  --valid_ratio  fraction of training articles held out as data/valid (default: 0.05)
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

[ -f ./db.sh ] || die "./db.sh not found; run this script from the recipe directory (egs2/spoken_squad/llm_asr1)"
[ -f ./path.sh ] || die "./path.sh not found; run this script from the recipe directory (egs2/spoken_squad/llm_asr1)"
. ./db.sh
set +u  # environment scripts often read unset variables
. ./path.sh
set -u

SPOKEN_SQUAD=${SPOKEN_SQUAD:-}
if [ -z "$SPOKEN_SQUAD" ]; then
    if [ "$download" = true ]; then
        SPOKEN_SQUAD=downloads
    else
        die "SPOKEN_SQUAD is not set: set SPOKEN_SQUAD in db.sh to the directory holding spoken_{train,test}-v1.1.json (https://github.com/chiahsuan156/Spoken-SQuAD), SQuAD v1.1 train-v1.1.json/dev-v1.1.json and Spoken-SQuAD_audio/{train_wav,dev_wav} (http://speech.ee.ntu.edu.tw/~chiahsuan/Spoken-SQuAD/Spoken-SQuAD_audio.zip), or pass --download true"
    fi
fi

log "preparing Spoken-SQuAD from '$SPOKEN_SQUAD' into $data_dir (download: $download)"
python -m espnet_llm_plugin.bin.prepare_spoken_squad \
    --spoken_squad_root "$SPOKEN_SQUAD" \
    --download "$download" \
    --download_dir "$SPOKEN_SQUAD" \
    --valid_ratio "$valid_ratio" \
    --data_dir "$data_dir"
log "done"
