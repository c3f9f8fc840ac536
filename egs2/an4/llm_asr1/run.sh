#!/usr/bin/env bash
# CMU AN4 (real recorded speech, ~1 h). Get the corpus with
#   ./run.sh --local_data_opts "--download true"     (downloads into $AN4, see db.sh)
# or set AN4 in db.sh to a directory that holds an4/.
#
# Systems (--systems "baseline llm_asr mmlm knnlm rescore", run in that order; each needs the
# ones before it):
#   baseline  ESPnet transformer CTC/attention, sentencepiece tokens
#   llm_asr   encoder (from the baseline) -> Conv1d+MLP adapter -> causal LM with LoRA; the LM
#             is --llm_path, or a small one pre-trained on AN4's training transcripts (stage 5)
#   mmlm      100 discrete units from the baseline encoder, speech+text LM, contrastive
#             speech<->text retrieval, Recall@k (stages 6, 7, 8)
#   knnlm     kNN-LM over a datastore of the training transcripts, decoding the LLM-ASR model
#   rescore   n-best rescoring of the LLM-ASR lists with the LM, after MWER fine-tuning
# Cross-attention retrieval needs passages, which AN4 does not have (see egs2/spoken_squad).
set -euo pipefail

systems="baseline"
llm_path=""
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --systems|--llm_path)
            [ $# -ge 2 ] || { echo "run.sh: $1 needs a value" >&2; exit 2; }
            printf -v "${1#--}" '%s' "$2"; shift 2 ;;
        *) args+=("$1"); shift ;;
    esac
done

common=(--nj 4 --inference_nj 4 --train_set train --valid_set dev --test_sets "dev test")
llm=("${common[@]}" --token_type hugging_face --asr_config conf/asr/llm_tiny.yaml
     --lm_args "--max_steps 300" --inference_config conf/decode/llm_beam5.yaml
     --asr_args "--init_param exp/asr_transformer_tiny/valid.acc.ave.pth:encoder:encoder")
[ -n "${llm_path}" ] && llm+=(--llm_path "${llm_path}")
llm_exp=exp/asr_llm_tiny

for system in ${systems}; do
    case "${system}" in
        baseline)
            ./llm_asr.sh "${common[@]}" --token_type bpe --nbpe 30 \
                --asr_config conf/asr/transformer_tiny.yaml \
                --inference_config conf/decode/ctc_att_beam10.yaml "${args[@]+"${args[@]}"}" ;;
        llm_asr)
            ./llm_asr.sh "${llm[@]}" --stage 5 --stop_stage 13 "${args[@]+"${args[@]}"}" ;;
        mmlm)
            mm=("${llm[@]}" --unit_feature_type espnet_asr --num_units 100 --unit_tag baseline100
                --unit_feature_args "--asr_config exp/asr_transformer_tiny/config.yaml --asr_model_file exp/asr_transformer_tiny/valid.acc.ave.pth")
            ./llm_asr.sh "${mm[@]}" --stage 5 --stop_stage 7 "${args[@]+"${args[@]}"}"
            ./llm_asr.sh "${mm[@]}" --stage 8 --stop_stage 8 "${args[@]+"${args[@]}"}" ;;
        knnlm)
            mkdir -p data/local
            cut -d' ' -f2- data/train/text | awk 'NF' > data/local/an4_train_text.txt
            ./llm_asr.sh "${llm[@]}" --stage 9 --stop_stage 13 \
                --datastore_memory data/local/an4_train_text.txt --datastore_tag train_text \
                --inference_config conf/decode/llm_beam5_knnlm.yaml \
                --inference_args "--knnlm_datastore exp/datastore_train_text" "${args[@]+"${args[@]}"}" ;;
        rescore)
            _lm=${llm_path:-exp/text_lm}
            ./llm_asr.sh "${llm[@]}" --stage 12 --stop_stage 13 --rescore_lm "${_lm}" \
                --mwer_train true "${args[@]+"${args[@]}"}" ;;
        *) echo "run.sh: unknown system '${system}' (baseline, llm_asr, mmlm, knnlm, rescore)" >&2; exit 2 ;;
    esac
done
