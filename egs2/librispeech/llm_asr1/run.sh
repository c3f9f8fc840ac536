#!/usr/bin/env bash
# LibriSpeech LLM-ASR at paper scale (arXiv 2406.17272): HuBERT-large -> Conv1d+MLP adapter ->
# a 7B LLM, LoRA on the encoder (r=8, alpha=16) and on the LLM (r=16, alpha=16); decoding with
# no-repeat-n-gram and a length penalty. Needs GPUs (defaults: 8 for training, LLM in bf16).
#
# Set LIBRISPEECH, HUBERT_LARGE and LLM_7B in db.sh, then
#   ./run.sh                          # 960 h training set (train_960)
#   ./run.sh --train_hours 100        # train-clean-100 only
#   ./run.sh --download true          # download the corpus into $LIBRISPEECH first
# Other options go to llm_asr.sh (./llm_asr.sh --help), e.g. --stage 11 --stop_stage 13, --ngpu 4.
set -euo pipefail

train_hours=960
download=false
asr_args=""
local_data_opts=""
stage=1
stop_stage=100
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --train_hours|--download|--asr_args|--local_data_opts|--stage|--stop_stage)
            [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done
case "${train_hours}" in
    100) train_set=train_clean_100 ;;
    960) train_set=train_960 ;;
    *) echo "run.sh: --train_hours must be 100 or 960, got '${train_hours}'" >&2; exit 2 ;;
esac

. ./db.sh
if [ "${stop_stage}" -ge 6 ]; then  # stages from 6 on build the models
    for var in HUBERT_LARGE LLM_7B; do
        if [ -z "${!var}" ] || [ ! -f "${!var}/config.json" ]; then
            echo "run.sh: ${var}='${!var}' is not a Hugging Face model directory (no config.json);" \
                 "set ${var} in db.sh (see the comments there)" >&2
            exit 2
        fi
    done
fi

./llm_asr.sh \
    --stage "${stage}" \
    --stop_stage "${stop_stage}" \
    --nj 32 \
    --inference_nj 8 \
    --ngpu 8 \
    --gpu_inference true \
    --train_set "${train_set}" \
    --valid_set dev_clean \
    --test_sets "dev_clean dev_other test_clean test_other" \
    --local_data_opts "--train_hours ${train_hours} --download ${download} ${local_data_opts}" \
    --token_type hugging_face \
    --llm_path "${LLM_7B}" \
    --asr_config conf/asr/llm_hubert_large_7b.yaml \
    --asr_args "--encoder_conf model_path=${HUBERT_LARGE} ${asr_args}" \
    --inference_config conf/decode/llm_7b_beam4.yaml \
    "${args[@]+"${args[@]}"}"
