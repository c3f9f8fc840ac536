#!/usr/bin/env bash
# Spoken-SQuAD: LLM-ASR with retrieval (arXiv 2406.09618) at paper scale. One utterance per
# spoken sentence of a SQuAD article; the article's paragraphs are the retrieval memory.
#   1. LLM-ASR baseline: HuBERT-large -> adapter -> 7B LLM with LoRA (conf/asr/llm_hubert_large_7b.yaml)
#   2. kNN-LM: a datastore over all paragraphs (data/local/passages.jsonl, the domain memory),
#      interpolated into the baseline's beam search (conf/decode/llm_7b_beam4_knnlm.yaml)
#   3. cross-attention with dynamic context: each utterance reads the top passages among its
#      own article's paragraphs (data/<set>/documents.jsonl), ranked with the baseline's first
#      pass as query (conf/asr/llm_xattn_hubert_large_7b.yaml, initialised from the baseline)
# Set SPOKEN_SQUAD, HUBERT_LARGE and LLM_7B in db.sh; ./run.sh --download true fetches the corpus.
# --systems "baseline knnlm xattn" picks what runs; other options go to llm_asr.sh.
set -euo pipefail

download=false
systems="baseline knnlm xattn"
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

common=(--nj 16 --inference_nj 4 --ngpu 4 --gpu_inference true
        --train_set train --valid_set valid --test_sets test
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
                   --context_documents data  # a directory: data/<set>/documents.jsonl per set
                   --context_first_pass "${baseline_exp}/decode_llm_7b_beam4_valid.acc.ave"
                   --inference_config conf/decode/llm_7b_beam4.yaml)
            # contexts first (stage 9), then statistics and training (10-11), then decoding and scoring
            ./llm_asr.sh "${xattn[@]}" --stage 9 --stop_stage 9 "${args[@]+"${args[@]}"}"
            ./llm_asr.sh "${xattn[@]}" --stage 10 --stop_stage 11 "${args[@]+"${args[@]}"}"
            ./llm_asr.sh "${xattn[@]}" --stage 12 --stop_stage 13 "${args[@]+"${args[@]}"}" ;;
        *) echo "run.sh: unknown system '${system}' (baseline, knnlm, xattn)" >&2; exit 2 ;;
    esac
done
