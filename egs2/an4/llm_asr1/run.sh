#!/usr/bin/env bash
# CMU AN4 (real recorded speech, ~1 h). Get the corpus with
#   ./run.sh --local_data_opts "--download true"     (downloads into $AN4, see db.sh)
# or set AN4 in db.sh to a directory that holds an4/.
set -euo pipefail

./llm_asr.sh \
    --nj 4 \
    --inference_nj 4 \
    --train_set train \
    --valid_set dev \
    --test_sets "dev test" \
    --token_type bpe \
    --nbpe 30 \
    --asr_config conf/asr/transformer_tiny.yaml \
    --inference_config conf/decode/ctc_att_beam10.yaml \
    "$@"
