#!/usr/bin/env bash
# Demo recipe on the embedded synthetic corpus (espeak-ng speech, made on the fly).
# Runs end to end on 2 CPU cores in minutes:  ./run.sh   (or `make demo` at the top level)
set -euo pipefail

train_set=train
valid_set=dev
test_sets="test test_target test_noise"

asr_config=conf/asr/transformer_tiny.yaml
inference_config=conf/decode/ctc_att_beam10.yaml

./llm_asr.sh \
    --nj 2 \
    --inference_nj 2 \
    --train_set "${train_set}" \
    --valid_set "${valid_set}" \
    --test_sets "${test_sets}" \
    --token_type bpe \
    --nbpe 150 \
    --asr_config "${asr_config}" \
    --inference_config "${inference_config}" \
    "$@"
