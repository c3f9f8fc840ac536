#!/usr/bin/env bash
# Data preparation for Spoken-SQuAD: writes data/train, data/valid (held-out training
# articles), data/test (wav.scp, text, utt2spk, spk2utt, documents.jsonl, gold_passages) and
# data/local/passages.jsonl (domain memory). Run from the recipe directory.
set -euo pipefail

. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../data_common.sh"  # log, die, parse_options, ...

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

parse_options "download valid_ratio data_dir" "$@"

load_recipe_env egs2/spoken_squad/llm_asr1

corpus_location SPOKEN_SQUAD "the directory holding spoken_{train,test}-v1.1.json (https://github.com/chiahsuan156/Spoken-SQuAD), SQuAD v1.1 train-v1.1.json/dev-v1.1.json and Spoken-SQuAD_audio/{train_wav,dev_wav} (http://speech.ee.ntu.edu.tw/~chiahsuan/Spoken-SQuAD/Spoken-SQuAD_audio.zip)"

log "preparing Spoken-SQuAD from '$SPOKEN_SQUAD' into $data_dir (download: $download)"
python -m espnet_llm_plugin.bin.prepare_spoken_squad \
    --spoken_squad_root "$SPOKEN_SQUAD" \
    --download "$download" \
    --download_dir "$SPOKEN_SQUAD" \
    --valid_ratio "$valid_ratio" \
    --data_dir "$data_dir"
log "done"
