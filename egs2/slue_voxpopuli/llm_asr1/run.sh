#!/usr/bin/env bash
# SLUE-VoxPopuli: LLM-ASR with retrieval for domain adaptation (arXiv 2406.09618) at paper scale.
#   1. LLM-ASR baseline: HuBERT-large -> adapter -> 7B LLM with LoRA (conf/asr/llm_hubert_large_7b.yaml)
#   2. kNN-LM: a datastore over the training transcripts (data/local/passages.jsonl, the text
#      domain memory; dev/test transcripts are not in it), interpolated into beam search
#   3. (--systems "... xattn") cross-attention over the top passages of the same memory, ranked
#      with the baseline's first pass. Caution: the training utterances' own transcripts are in
#      that memory, so training contexts contain the answer (see retrieve_passages --help).
# Results are reported on the official dev set (the public test set is blind; data/test is
# written only with a labelled slue-voxpopuli_test.tsv, then add --test_sets "dev test").
# Set SLUE_VOXPOPULI, HUBERT_LARGE and LLM_7B in db.sh; ./run.sh --download true fetches the corpus.
set -euo pipefail

download=false
systems="baseline knnlm"
asr_args=""
local_data_opts=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --download|--systems|--asr_args|--local_data_opts)
            [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

. ./db.sh
for var in HUBERT_LARGE LLM_7B; do
    if [ -z "${!var}" ] || [ ! -f "${!var}/config.json" ]; then
        echo "run.sh: ${var}='${!var}' is not a Hugging Face model directory (no config.json);" \
             "set ${var} in db.sh (see the comments there)" >&2
        exit 2
    fi
done

common=(--nj 16 --inference_nj 2 --ngpu 2 --gpu_inference true
        --train_set train --valid_set valid --test_sets dev
        --local_data_opts "--download ${download} ${local_data_opts}"
        --token_type hugging_face --llm_path "${LLM_7B}")
baseline=(--asr_config conf/asr/llm_hubert_large_7b.yaml
          --asr_args "--encoder_conf model_path=${HUBERT_LARGE} ${asr_args}")
baseline_exp=exp/asr_llm_hubert_large_7b

for system in ${systems}; do
    case "${system}" in
        baseline)
            ./llm_asr.sh "${common[@]}" "${baseline[@]}" \
                --inference_config conf/decode/llm_7b_beam4.yaml \
                --stop_stage 13 "${args[@]+"${args[@]}"}" ;;
        knnlm)
            ./llm_asr.sh "${common[@]}" "${baseline[@]}" \
                --datastore_memory data/local/passages.jsonl --datastore_tag passages \
                --inference_config conf/decode/llm_7b_beam4_knnlm.yaml \
                --stage 9 --stop_stage 13 "${args[@]+"${args[@]}"}" ;;
        xattn)
            xattn=("${common[@]}" --asr_config conf/asr/llm_xattn_hubert_large_7b.yaml
                   --asr_args "--encoder_conf model_path=${HUBERT_LARGE} --init_param ${baseline_exp}/valid.acc.ave.pth ${asr_args}"
                   --context_passages data/local/passages.jsonl
                   --context_first_pass "${baseline_exp}/decode_llm_7b_beam4_valid.acc.ave"
                   --inference_config conf/decode/llm_7b_beam4.yaml)
            ./llm_asr.sh "${xattn[@]}" --stage 9 --stop_stage 9 "${args[@]+"${args[@]}"}"
            ./llm_asr.sh "${xattn[@]}" --stage 10 --stop_stage 11 "${args[@]+"${args[@]}"}"
            ./llm_asr.sh "${xattn[@]}" --stage 12 --stop_stage 13 "${args[@]+"${args[@]}"}" ;;
        *) echo "run.sh: unknown system '${system}' (baseline, knnlm, xattn)" >&2; exit 2 ;;
    esac
done
