#!/usr/bin/env bash
# Data preparation for LibriSpeech (OpenSLR 12): writes data/train_clean_100 (or data/train_960
# with --train_hours 960), data/dev_clean, data/dev_other, data/test_clean, data/test_other
# (wav.scp, text, utt2spk, spk2utt). Run from the recipe directory.
set -euo pipefail

. "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../data_common.sh"  # log, die, parse_options, ...

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

parse_options "download train_hours data_dir" "$@"
case "$train_hours" in
    100|960) ;;
    *) die "--train_hours must be 100 or 960, got '$train_hours'" ;;
esac

load_recipe_env egs2/librispeech/llm_asr1

corpus_location LIBRISPEECH "the directory that contains LibriSpeech/ (subsets from https://www.openslr.org/resources/12/)"

log "preparing LibriSpeech (${train_hours} h) from '$LIBRISPEECH' into $data_dir (download: $download)"
python -m espnet_llm_plugin.bin.prepare_librispeech \
    --librispeech_root "$LIBRISPEECH" \
    --download "$download" \
    --download_dir "$LIBRISPEECH" \
    --train_hours "$train_hours" \
    --data_dir "$data_dir"
log "done"
