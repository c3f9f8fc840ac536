#!/usr/bin/env bash
# Demo recipe on the embedded synthetic corpus (espeak-ng speech, made on the fly).
# Runs end to end on 2 CPU cores in minutes:  ./run.sh   (or `make demo` at the top level)
#   ./run.sh --run_llm_asr true    also trains and decodes the LLM-ASR model (stage 5 on):
#                                  a small text LM, then encoder (from the baseline) ->
#                                  Conv1d+MLP adapter -> LLM with LoRA
#   ./run.sh --run_mmlm true       also stages 4, 6, 13: discrete units (k-means over the
#                                  baseline encoder's features), the speech+text LM, contrastive
#                                  speech<->text retrieval, Recall@k and perplexity
# Other options go to llm_asr.sh (./llm_asr.sh --help).
set -euo pipefail

run_llm_asr=false
run_mmlm=false
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --run_llm_asr) run_llm_asr=$2; shift 2 ;;
        --run_llm_asr=*) run_llm_asr=${1#*=}; shift ;;
        --run_mmlm) run_mmlm=$2; shift 2 ;;
        --run_mmlm=*) run_mmlm=${1#*=}; shift ;;
        *) args+=("$1"); shift ;;
    esac
done

train_set=train
valid_set=dev
test_sets="test test_target test_noise"
common=(--nj 2 --inference_nj 2 --train_set "${train_set}" --valid_set "${valid_set}"
        --test_sets "${test_sets}")

# baseline: ESPnet transformer CTC/attention with a sentencepiece vocabulary
./llm_asr.sh "${common[@]}" \
    --token_type bpe \
    --nbpe 150 \
    --asr_config conf/asr/transformer_tiny.yaml \
    --inference_config conf/decode/ctc_att_beam10.yaml \
    "${args[@]+"${args[@]}"}"

if [ "${run_llm_asr}" = true ]; then
    # LLM-ASR: the LLM tokenizer is the vocabulary; the encoder starts from the baseline's
    ./llm_asr.sh "${common[@]}" \
        --token_type hugging_face \
        --lm_args "--max_steps 300" \
        --asr_config conf/asr/llm_tiny.yaml \
        --asr_args "--init_param exp/asr_transformer_tiny/valid.acc.ave.pth:encoder:encoder" \
        --inference_config conf/decode/llm_beam5.yaml \
        "${args[@]+"${args[@]}"}"
fi

if [ "${run_mmlm}" = true ]; then
    # units from the baseline encoder (they carry content; filterbank units barely do),
    # the text LM of stage 5 extended with them
    mmlm=("${common[@]}" --token_type hugging_face --lm_args "--max_steps 300"
          --asr_config conf/asr/llm_tiny.yaml
          --unit_feature_type espnet_asr --num_units 100 --unit_tag baseline100
          --unit_feature_args "--asr_config exp/asr_transformer_tiny/config.yaml --asr_model_file exp/asr_transformer_tiny/valid.acc.ave.pth"
          --mmlm_args "--max_steps 300" --contrastive_args "--max_steps 200 --batch_size 32")
    ./llm_asr.sh "${mmlm[@]}" --stage 4 --stop_stage 6 "${args[@]+"${args[@]}"}"
    ./llm_asr.sh "${mmlm[@]}" --stage 13 --stop_stage 13 "${args[@]+"${args[@]}"}"
fi
