#!/usr/bin/env bash
# llm_asr.sh: the stage script shared by every espnet-llm-plugin recipe.
#
# A short table of stages; each calls one CLI, python -m espnet_llm_plugin.bin.<name>.
# Each stage writes atomically and is skipped (with a message) when its output is complete,
# so a stage can be re-run alone:  ./run.sh --stage 11 --stop_stage 11
#
# Numbered like ESPnet's asr.sh where a stage means the same (1-5 data and tokens, 10-11 ASR
# statistics and training, 12 decoding, 13 scoring, 14 packing):
#   1  data preparation            local/data.sh -> data/<set>/{wav.scp,text,utt2spk}
#   2  speed perturbation          format_audio of the training set with its copies -> dump/raw/<train>_sp
#   3  audio formatting            format_audio -> dump/raw/<set> (16 kHz WAV, utt2dur; short training
#                                  utterances dropped with --min_duration)
#   4  data validation             validate_data: every recording readable, at fs, long enough
#   5  token list                  make_token_list -> data/token_list/<type>/{bpe.model,tokens.txt};
#                                  hugging_face: the LLM tokenizer's (train_text_lm first without --llm_path)
#   6  discrete units              train_kmeans, dump_units, unit_quality -> exp/units_<feats><K>/
#   7  speech+text LM              extend_vocab, mmlm_train, contrastive_train -> exp/mmlm_<units>/
#   8  LM evaluation               retrieval_eval (Recall@k), text perplexity -> exp/mmlm_<units>/RESULTS.md
#   9  retrieval memories          build_datastore (kNN-LM), retrieve_passages (cross-attention context)
#  10  ASR statistics              asr_train --collect_stats -> exp/asr_stats_*/
#  11  ASR training                asr_train -> exp/asr_<tag>/
#  12  decoding with n-best        asr_inference (or whisper_nbest with --whisper_dir) -> exp/asr_<tag>/decode_<tag>/<set>/; with --rescore_lm
#                                  then train_mwer, rescore_nbest -> exp/asr_<tag>/decode_<tag>_rescore_<lm>/
#  13  scoring and RESULTS.md      score_wer, collect_results -> exp/RESULTS.md
#  14  packing                     pack_model -> exp/asr_<tag>/asr_<tag>_<inference_tag>.<pack_format>
#
# Like ESPnet's asr.sh, --skip_data_prep skips stages 1-5, --skip_train 6, 7, 10 and 11 (units,
# LMs, ASR statistics and training), --skip_eval 8, 12 and 13 (evaluation, decoding, scoring),
# --skip_packing 14. Stage 9 (memories) runs unless its inputs are not given.
set -euo pipefail

log() { echo -e "$(date '+%Y-%m-%dT%H:%M:%S') ($(basename "$0"):${BASH_LINENO[0]}) $*"; }
min() { local a=$1; for b in "$@"; do [ "$b" -lt "$a" ] && a=$b; done; echo "$a"; }
SECONDS=0

# General
stage=1                 # first stage to run
stop_stage=100          # last stage to run
nj=4                    # parallel jobs for data formatting and statistics
inference_nj=4          # parallel jobs for decoding
ngpu=0                  # GPUs for training (0: CPU); >1: ESPnet's DDP, one process per GPU
cpu_procs=1             # with ngpu=0: >1 trains with DDP over this many CPU processes (gloo)
gpu_inference=false     # decode on GPU
dumpdir=dump
expdir=exp
python=python3
seed=0
skip_data_prep=false    # skip the data preparation stages (1-5)
skip_train=false        # skip the training stages (6, 7, 10, 11)
skip_eval=false         # skip evaluation, decoding and scoring (8, 12, 13)
skip_packing=true       # skip packing the model (14); as in asr.sh, off unless asked for

# Data
local_data_opts=""      # passed to local/data.sh
train_set=""
valid_set=""
test_sets=""
fs=16000                # sample rate of dumped audio; other rates are resampled
min_duration=0.0        # drop shorter training utterances (s)
validate_min_duration=0.1  # stage 4 refuses (names) a formatted utterance shorter than this (s)
speed_perturb_factors=""  # e.g. "0.9 1.0 1.1": speed-perturbed training copies (-> <train_set>_sp)
noise_scp=""            # additive-noise augmentation in training: a wav.scp of noise recordings,
                        # or "nonspeech": the training set's own noise-only (empty-transcript) segments
noise_apply_prob=0.5    # share of training utterances that get noise added
noise_db_range="5_20"   # SNR range in dB ("low_high", or one value)

# Tokens
token_type=bpe          # bpe, char, or hugging_face (the LLM tokenizer's vocabulary)
nbpe=100
bpemode=unigram

# LLM (decoder-only Hugging Face causal LM) for token_type=hugging_face configs
llm_path=""             # local HF model dir; empty: stage 5 trains a small one on lm_train_text
lm_train_text=""        # default: data/local/train_text.txt if present, else the train transcripts
lm_dev_text=""          # default: the valid set's transcripts
lm_args=""              # extra options for train_text_lm (sizes, steps)

# Discrete speech units (stage 6) and the speech+text LM (stages 7, 8)
unit_feature_type=""    # fbank | hf (--hf_path DIR --layer N) | espnet_asr (--asr_config --asr_model_file);
                        # empty: no units, stages 6, 7 and 8 are skipped
unit_feature_args=""    # options of train_kmeans for those features
num_units=2000          # k-means centroids (the papers use 2000)
unit_max_frames=1000000 # frames sampled for k-means
unit_dedup=true         # run-length de-duplicated unit sequences
unit_tag=""             # default: <unit_feature_type><num_units>
mmlm_args=""            # extra options for mmlm_train (steps, LoRA)
contrastive_args=""     # extra options for contrastive_train
retrieval_test_sets=""  # default: test_sets (sets with speech)

# Retrieval (stage 9): a kNN-LM datastore and/or passage contexts for cross-attention models
datastore_memory=""     # memory corpus: text file / passages.jsonl (text-only keys), or a data dir's
                        # Kaldi text (its transcripts; multi-modal keys with --datastore_units);
                        # empty: no datastore
datastore_units=""      # units file of the memory's speech (multi-modal memory)
datastore_key_encoder="" # HF LM dir computing the keys; default: the LLM (llm_path)
datastore_tag=""        # default: basename of the memory + key encoder
datastore_args=""       # extra options for build_datastore (--index, --window, --fp16, ...)
context_passages=""     # passages (JSONL id+text or text) for cross-attention context; empty: none
context_documents=""    # per-utterance documents (dynamic context) instead of one memory: a JSONL,
                        # or a dir holding <set>/documents.jsonl
context_tag=""          # contexts go to dump/context[_<tag>] (several kinds side by side)
context_first_pass=""   # decode dir whose <set>/text are the test sets' queries (first pass)
context_exclude_query=false # true: training/valid contexts (references as queries) never hold the
                        # utterance's own sentence, as test contexts don't (domain memories)
num_passages=4          # passages per utterance

# ASR model
asr_config=""           # training YAML (ESPnet options)
asr_tag=""              # default: name of asr_config
asr_args=""             # extra options for asr_train
asr_stats_dir=""        # default: ${expdir}/asr_stats_${token_type}${nbpe}

# Decoding
inference_config=""     # decoding YAML
whisper_dir=""          # a prepared Whisper (prepare_pretrained whisper-tiny.en): stage 12 decodes
                        # with it (beam search, --nbest beams) instead of a trained ASR model,
                        # e.g. as the first pass of rescoring; no --asr_config needed
whisper_args=""         # extra options for whisper_nbest
inference_tag=""        # default: name of inference_config
inference_args=""       # extra options for asr_inference
inference_asr_model=valid.acc.ave.pth
nbest=10
score_opts=""           # extra options for score_wer (e.g. --case, --punctuation)
score_normalised=false  # true: also score Whisper-style (score_wer --normaliser english: numbers as
                        # digits, hyphens split) into <decode>/<set>/score_english, next to score/
tune_grid=""            # e.g. "knnlm_lambda=0.1,0.25,0.5 knnlm_k=8,16": stage 12 first grid-searches
                        # these decode options on tune_set and decodes the test sets with the best
tune_set=""             # default: the valid set

# N-best rescoring (in stage 12, after decoding): the valid set is decoded too, to tune the score weights
rescore_lm=""           # HF causal LM dir (text-only, or the speech+text LM of stage 7); empty: no rescoring
rescore_units=false     # true: score log p(text | units) with the units of stage 6 (speech+text LM)
rescore_args=""         # extra options for rescore_nbest
rescore_knnlm=""        # a text-only datastore dir: rescore with its kNN-LM (its key encoder = --rescore_lm)
mwer_train=false        # MWER fine-tuning of the rescoring LM on the valid set's n-best lists first
mwer_args=""            # extra options for train_mwer

# Packing (stage 14)
pack_format=zip         # zip, tar, tar.gz, or dir (a directory)
pack_datastore=false    # true: a kNN-LM datastore goes into the pack whole, not only its manifest

help_message=$(cat << EOF
Usage: $0 --train_set <set> --valid_set <set> --test_sets "<set> ..." --asr_config <yaml> [options]

Stages: 1 data prep, 2 speed perturbation, 3 audio formatting, 4 data validation, 5 token list
        (+ text LM without --llm_path), 6 discrete units, 7 speech+text LM, 8 LM evaluation (Recall@k,
        perplexity), 9 retrieval memories, 10 ASR stats, 11 ASR training, 12 decoding (n-best;
        + rescoring/MWER with --rescore_lm), 13 scoring + RESULTS.md, 14 packing (pack_model)

Options (defaults in brackets):
  --stage, --stop_stage    [${stage}, ${stop_stage}]
  --skip_data_prep, --skip_train, --skip_eval, --skip_packing   skip stages 1-5; 6, 7, 10, 11; 8, 12, 13; 14
                           [${skip_data_prep}, ${skip_train}, ${skip_eval}, ${skip_packing}]
  --nj, --inference_nj     parallel jobs [${nj}, ${inference_nj}]
  --ngpu                   GPUs for training [${ngpu}]; >1: DDP (ESPnet's multiprocessing_distributed)
  --cpu_procs              with --ngpu 0: DDP over N CPU processes (gloo) [${cpu_procs}]
  --gpu_inference          decode on GPU [${gpu_inference}]
  --train_set, --valid_set, --test_sets
  --fs                     dumped sample rate [${fs}]
  --speed_perturb_factors  e.g. "0.9 1.0 1.1": augment the training set (dumped as <train_set>_sp)
  --noise_scp              additive noise in training: a noise wav.scp, or "nonspeech" (the training
                           set's empty-transcript segments) [${noise_scp}]
  --noise_apply_prob, --noise_db_range   [${noise_apply_prob}, ${noise_db_range}]
  --token_type, --nbpe, --bpemode   [${token_type}, ${nbpe}, ${bpemode}]
  --llm_path               HF causal LM dir (token_type hugging_face); empty: trained in stage 5
  --lm_train_text, --lm_dev_text, --lm_args   text LM pre-training (stage 5)
  --unit_feature_type, --unit_feature_args, --num_units, --unit_max_frames, --unit_dedup, --unit_tag
                           discrete units (stage 6; none without --unit_feature_type) [${num_units}]
  --mmlm_args, --contrastive_args, --retrieval_test_sets   speech+text LM (stages 7, 8)
  --asr_config, --asr_tag, --asr_args
  --inference_config, --inference_tag, --inference_args, --nbest [${nbest}]
  --whisper_dir, --whisper_args   stage 12 decodes with a prepared Whisper (beam = --nbest) instead of
                           a trained model (asr_tag whisper_<name>; then rescoring, scoring as usual)
  --tune_grid, --tune_set  grid search of decode options (e.g. knnlm_lambda, knnlm_k) before decoding
  --datastore_memory, --datastore_units, --datastore_key_encoder, --datastore_tag, --datastore_args
                           kNN-LM datastore (stage 9)
  --context_passages | --context_documents, --context_first_pass, --num_passages, --context_tag,
  --context_exclude_query
                           cross-attention contexts (stage 9; train/valid use references as queries)
  --rescore_lm, --rescore_units, --rescore_args, --mwer_train, --mwer_args   n-best rescoring (stage 12)
  --rescore_knnlm          rescore with the kNN-LM of this text-only datastore (stage 9's) instead
  --score_opts, --score_normalised   extra score_wer options (stage 13); true: also a Whisper-style
                           normalised WER (numbers as digits, hyphens split) [${score_normalised}]
  --pack_format, --pack_datastore   stage 14: zip|tar|tar.gz|dir [${pack_format}], datastore whole [${pack_datastore}]
  --local_data_opts        options for local/data.sh
  --dumpdir, --expdir      [${dumpdir}, ${expdir}]
Jobs run through \$train_cmd / \$decode_cmd from cmd.sh (local or slurm).
EOF
)

log "$0 $*"
. ./utils/parse_options.sh
. ./path.sh
. ./cmd.sh

[ -z "${train_set}" ] && { log "Error: --train_set is required"; exit 2; }
[ -z "${valid_set}" ] && { log "Error: --valid_set is required"; exit 2; }
if [ -n "${whisper_dir}" ]; then
    [ -f "${whisper_dir}/config.json" ] || { log "Error: --whisper_dir ${whisper_dir}: not a prepared Whisper directory"; exit 2; }
    [ -z "${asr_tag}" ] && asr_tag=whisper_$(basename "${whisper_dir}")
    [ -z "${inference_tag}" ] && inference_tag=beam${nbest}
    asr_config=${whisper_dir}/config.json  # no training config: nothing below reads it as one
else
    [ -z "${asr_config}" ] && { log "Error: --asr_config is required"; exit 2; }
    [ -f "${asr_config}" ] || { log "Error: --asr_config ${asr_config}: file not found"; exit 2; }
fi
if [ -n "${inference_config}" ] && [ ! -f "${inference_config}" ]; then
    log "Error: --inference_config ${inference_config}: file not found"; exit 2
fi

token_dir=data/token_list/${token_type}_${bpemode}${nbpe}
[ "${token_type}" = char ] && token_dir=data/token_list/char
bpemodel=${token_dir}/bpe.model
[ "${token_type}" = char ] && bpemodel=none
llm_trained=false
if [ "${token_type}" = hugging_face ]; then
    if [ -z "${llm_path}" ]; then llm_path=${expdir}/text_lm; llm_trained=true; fi
    token_dir=data/token_list/hf_$(basename "${llm_path}")
    bpemodel=${llm_path}
fi
token_list=${token_dir}/tokens.txt
# the training config's decoder; an --asr_args "--decoder NAME" overrides the YAML's
asr_decoder=$(${python} -c 'import sys, yaml; print(((yaml.safe_load(open(sys.argv[1])) or {}) if sys.argv[1].endswith(".yaml") else {}).get("decoder") or "")' "${asr_config}")
[[ " ${asr_args} " =~ [[:space:]]--decoder[=[:space:]]+([^[:space:]]+) ]] && asr_decoder=${BASH_REMATCH[1]}
# an LLM decoder finds its model through decoder_conf.llm_path (stats and training build it);
# any other decoder over the LLM's vocabulary (an ESPnet transformer baseline) takes no llm_path
llm_opts=()
if [ "${token_type}" = hugging_face ]; then
    case "${asr_decoder,,}" in llm|llm_xattn) llm_opts=(--decoder_conf "llm_path=${llm_path}") ;; esac
fi
[ -z "${asr_tag}" ] && asr_tag=$(basename "${asr_config}" .yaml)
if [ -z "${asr_stats_dir}" ]; then
    case "${token_type}" in
        char) asr_stats_dir=${expdir}/asr_stats_char ;;
        hugging_face) asr_stats_dir=${expdir}/asr_stats_$(basename "${token_dir}") ;;
        *) asr_stats_dir=${expdir}/asr_stats_${token_type}${nbpe} ;;
    esac
    [ -n "${speed_perturb_factors}" ] && asr_stats_dir+=_sp
fi
asr_exp=${expdir}/asr_${asr_tag}
if [ -z "${inference_tag}" ]; then
    if [ -n "${inference_config}" ]; then inference_tag=$(basename "${inference_config}" .yaml)
    else inference_tag=default; fi
    [ -n "${tune_grid}" ] && inference_tag+="_tuned"
    inference_tag+="_$(basename "${inference_asr_model}" .pth)"
fi
data_feats=${dumpdir}/raw
[ -z "${unit_tag}" ] && unit_tag=${unit_feature_type}${num_units}
unit_dir=${expdir}/units_${unit_tag}
mmlm_dir=${expdir}/mmlm_${unit_tag}
[ -z "${datastore_key_encoder}" ] && datastore_key_encoder=${llm_path}
if [ -z "${datastore_tag}" ] && [ -n "${datastore_memory}" ]; then
    datastore_tag=$(basename "${datastore_memory%.*}")_$(basename "${datastore_key_encoder}")
fi
datastore_dir=${expdir}/datastore_${datastore_tag}
context_dir=${dumpdir}/context${context_tag:+_${context_tag}}
# how many utterances of a Kaldi text have a transcript (non-speech segments have none)
num_transcribed() { awk 'NF > 1' "$1" | wc -l; }
# models with cross-attention over retrieved passages read a `context` data entry
uses_context() { grep -q "^decoder: *llm_xattn" "$1"; }
# a multi-modal kNN-LM datastore queries with the utterance's units (a `units` data entry)
uses_units() {
    { [ -n "${inference_config}" ] && grep -qE "^knnlm_units_from_data: *(true|True)" "${inference_config}"; } ||
        [[ " ${inference_args} " =~ --knnlm_units_from_data[=\ ]+(true|True) ]]
}
train_dump=${train_set}; [ -n "${speed_perturb_factors}" ] && train_dump=${train_set}_sp
bin="${python} -m espnet_llm_plugin.bin"
token_opts=(--token_type "${token_type}" --token_list "${token_list}" --bpemodel "${bpemodel}"
            --non_linguistic_symbols none --cleaner none --g2p none)

# stage_skipped N: is stage N switched off by a --skip_* flag? (says so once)
stage_skipped() {
    local flag
    case $1 in
        1|2|3|4|5) flag=skip_data_prep ;; 6|7|10|11) flag=skip_train ;; 8|12|13) flag=skip_eval ;;
        14) flag=skip_packing ;; *) return 1 ;;
    esac
    [ "${!flag}" = true ] || return 1
    log "Stage $1 skipped (--${flag} true)"
}
# run_stage N: is stage N in [stage, stop_stage] and not skipped? (starts the stage's clock)
run_stage() { [ "${stage}" -le "$1" ] && [ "${stop_stage}" -ge "$1" ] && ! stage_skipped "$1" && _stage_t0=${SECONDS}; }
# stage_done N [OUTPUTS]: the one-line summary of a finished stage (no OUTPUTS: it had nothing to make)
stage_done() {
    if [ -n "${2:-}" ]; then log "Stage $1 done in $((SECONDS - _stage_t0)) s -> $2"
    else log "Stage $1 done in $((SECONDS - _stage_t0)) s (nothing to make)"; fi
}
# Stage outputs are keyed on what made them: DIR/.stage_options holds the options and a checksum
# of the inputs, so a changed option (--fs) is not met with a stale output made without it.
stamp_name=.stage_options
# inputs_sum FILE...: checksum of the files that exist among FILE... (the stage's inputs)
inputs_sum() { local f; for f in "$@"; do if [ -f "${f}" ]; then cat "${f}"; fi; done | cksum | tr ' ' '_'; }
# stamp_ok DIR MARKER OPTIONS: 0 when DIR is complete (DIR/MARKER exists) and was made with
# OPTIONS; 1 when it is not there yet (make it); exits naming both option sets when they differ
stamp_ok() {
    local dir=$1 marker=$2 want=$3 have
    [ -e "${dir}/${marker}" ] || return 1
    if [ ! -f "${dir}/${stamp_name}" ]; then
        log "  Warning: ${dir} has no ${stamp_name} (made by an older llm_asr.sh): cannot check it" \
            "was made with: ${want}; delete it to redo it"
        return 0
    fi
    have=$(cat "${dir}/${stamp_name}")
    if [ "${have}" != "${want}" ]; then
        log "Error: ${dir} was made with: ${have}"
        log "Error: this run asks for:   ${want}"
        log "Error: delete ${dir} (and what later stages made from it) to redo it, or rerun with its options"
        exit 1
    fi
    return 0
}
# write_stamp DIR OPTIONS: record OPTIONS in DIR (atomically) once DIR is complete
write_stamp() { printf '%s\n' "$2" > "$1/${stamp_name}.tmp" && mv "$1/${stamp_name}.tmp" "$1/${stamp_name}"; }


if run_stage 1; then
    if [ -f data/.data_prep.done ]; then
        log "Stage 1: data preparation: data/.data_prep.done exists, skipping (delete it to redo)"
    else
        log "Stage 1: data preparation: local/data.sh ${local_data_opts}"
        # shellcheck disable=SC2086
        local/data.sh ${local_data_opts}
        for dset in ${train_set} ${valid_set} ${test_sets}; do
            ${bin}.validate_data "data/${dset}" --check_audio false
        done
        touch data/.data_prep.done
    fi
    stage_done 1 "data/<set> for ${train_set} ${valid_set} ${test_sets}"
fi


# format_set DSET OUT MIN_DURATION SPEED_FACTORS: data/DSET -> ${data_feats}/OUT at ${fs} Hz
format_set() {
    local dset=$1 out=$2 min=$3 sp=$4 opts
    opts="fs=${fs} min_duration=${min} speed_perturb_factors=${sp// /,} source=data/${dset}"
    opts+=" inputs=$(inputs_sum data/"${dset}"/{wav.scp,segments,text,utt2spk})"
    if stamp_ok "${data_feats}/${out}" wav.scp "${opts}"; then
        log "  ${data_feats}/${out} is complete, skipping"; return 0
    fi
    ${train_cmd} "${data_feats}/logs/format_${out}.log" \
        ${bin}.format_audio "data/${dset}" "${data_feats}/${out}" --fs "${fs}" \
            --min_duration "${min}" --speed_perturb_factors "${sp}"
    write_stamp "${data_feats}/${out}" "${opts}"
}


if run_stage 2; then
    if [ -n "${speed_perturb_factors}" ]; then
        log "Stage 2: speed perturbation (${speed_perturb_factors}) of ${train_set} -> ${data_feats}/${train_dump}"
        format_set "${train_set}" "${train_dump}" "${min_duration}" "${speed_perturb_factors}"
        stage_done 2 "${data_feats}/${train_dump}"
    else
        log "Stage 2: no --speed_perturb_factors: no speed perturbation (stage 3 formats ${train_set})"
        stage_done 2
    fi
fi


if run_stage 3; then
    log "Stage 3: audio formatting -> ${data_feats}/<set> at ${fs} Hz"
    for dset in ${train_set} ${valid_set} ${test_sets}; do
        if [ "${dset}" != "${train_set}" ]; then
            format_set "${dset}" "${dset}" 0.0 1.0
        elif [ -z "${speed_perturb_factors}" ]; then  # else stage 2 formatted it with its copies
            format_set "${dset}" "${train_dump}" "${min_duration}" 1.0
        fi
    done
    stage_done 3 "${data_feats}/<set>"
fi


if run_stage 4; then
    log "Stage 4: data validation (readable, complete, at ${fs} Hz, >= ${validate_min_duration} s)"
    for dset in ${train_dump} ${valid_set} ${test_sets}; do
        _d=${data_feats}/${dset}
        [ -f "${_d}/${stamp_name}" ] || { log "Error: ${_d} is not formatted: run stages 2-3 first"; exit 1; }
        _v="$(cat "${_d}/${stamp_name}") validate_min_duration=${validate_min_duration}"
        if [ -f "${_d}/.validated" ] && [ "$(cat "${_d}/.validated")" = "${_v}" ]; then
            log "  ${_d} was validated, skipping"; continue
        fi
        # a recording too short to give the encoder a frame is named here, not in a decoding job
        ${bin}.validate_data "${_d}" --check_audio true --fs "${fs}" --min_duration "${validate_min_duration}"
        printf '%s\n' "${_v}" > "${_d}/.validated"
    done
    stage_done 4 "${data_feats}/<set>"
fi


if run_stage 5; then
    # token_type hugging_face: the LLM's tokenizer is the token list (a small text LM is
    # pre-trained here first when there is no --llm_path)
    if [ "${token_type}" = hugging_face ]; then
        if ${llm_trained}; then
            if [ -f "${llm_path}/config.json" ]; then
                log "Stage 5: text LM: ${llm_path} exists, skipping"
            else
                _train_text=${lm_train_text}
                [ -z "${_train_text}" ] && [ -f data/local/train_text.txt ] && _train_text=data/local/train_text.txt
                _ids=false
                [ -z "${_train_text}" ] && { _train_text=${data_feats}/${train_dump}/text; _ids=true; }
                _dev_text=${lm_dev_text:-${data_feats}/${valid_set}/text}
                _dev_ids=false; [ -z "${lm_dev_text}" ] && _dev_ids=true
                log "Stage 5: text LM pre-training on ${_train_text} -> ${llm_path}"
                mkdir -p "${expdir}"
                # shellcheck disable=SC2086
                ${cuda_cmd} --gpu "${ngpu}" "${expdir}/text_lm.log" ${bin}.train_text_lm \
                    --train_text "${_train_text}" --has_ids "${_ids}" \
                    --dev_text "${_dev_text}" --dev_has_ids "${_dev_ids}" \
                    --out_dir "${llm_path}" --seed "${seed}" ${lm_args}
            fi
        fi
        if [ -f "${token_list}" ]; then
            log "Stage 5: token list: ${token_list} exists, skipping"
        else
            [ -d "${llm_path}" ] || { log "Error: --llm_path ${llm_path}: directory not found"; exit 1; }
            log "Stage 5: token list from the tokenizer of ${llm_path} -> ${token_dir}"
            ${bin}.make_token_list --token_type hugging_face --tokenizer "${llm_path}" \
                --out_dir "${token_dir}"
        fi
    elif [ -f "${token_list}" ]; then
        log "Stage 5: token list: ${token_list} exists, skipping"
    else
        log "Stage 5: token list (${token_type}) -> ${token_dir}"
        ${train_cmd} "${token_dir}.log" ${bin}.make_token_list --text "${data_feats}/${train_dump}/text" \
            --out_dir "${token_dir}" --token_type "${token_type}" --vocab_size "${nbpe}" \
            --model_type "${bpemode}"
    fi
    stage_done 5 "${token_list}"
fi


if run_stage 6 && [ -z "${unit_feature_type}" ]; then
    log "Stage 6: no --unit_feature_type: no discrete units (stages 6, 7, 8 skipped)"
elif run_stage 6; then
    log "Stage 6: discrete units (${unit_feature_type}, K=${num_units}) -> ${unit_dir}"
    if [ -f "${unit_dir}/kmeans/kmeans.json" ]; then
        log "  ${unit_dir}/kmeans exists, skipping k-means"
    else
        mkdir -p "${unit_dir}/logs"
        # shellcheck disable=SC2086
        ${cuda_cmd} --gpu "${ngpu}" "${unit_dir}/logs/train_kmeans.log" \
            ${bin}.train_kmeans --data_dir "${data_feats}/${train_dump}" --feature_type "${unit_feature_type}" \
                ${unit_feature_args} --num_units "${num_units}" --max_frames "${unit_max_frames}" \
                --seed "${seed}" --out_dir "${unit_dir}/kmeans"
    fi
    for dset in ${train_dump} ${valid_set} ${test_sets}; do
        _out=${unit_dir}/${dset}/units
        if [ -f "${_out}" ]; then log "  ${_out} is complete, skipping"; continue; fi
        _work=${unit_dir}/${dset}.work; rm -rf "${_work}"; mkdir -p "${_work}/logs"
        _nj=$(${bin}.split_scp "${data_feats}/${dset}/wav.scp" "${_work}" --nj "${nj}")
        ${train_cmd} JOB=1:"${_nj}" "${_work}/logs/dump_units.JOB.log" \
            ${bin}.dump_units --data_dir "${data_feats}/${dset}" --kmeans_dir "${unit_dir}/kmeans" \
                --key_file "${_work}/keys.JOB.scp" --out "${_work}/units.JOB" \
                --dedup "${unit_dedup}" --short_audio empty --device cpu
        ${bin}.dump_units --data_dir "${data_feats}/${dset}" --merge "${_work}"/units.* --out "${_work}/units"
        mkdir -p "${unit_dir}/${dset}"
        if [ "$(num_transcribed "${data_feats}/${dset}/text")" -gt 1 ]; then  # not for non-speech sets
            ${bin}.unit_quality --data_dir "${data_feats}/${dset}" --units "${_work}/units" \
                --num_units "${num_units}" --out "${unit_dir}/${dset}/quality.json" > /dev/null
        fi
        mv "${_work}/logs" "${unit_dir}/${dset}/"
        mv "${_work}/units" "${_out}"  # last: its presence marks the set complete
        rm -rf "${_work}"
    done
    stage_done 6 "${unit_dir}"
fi


if run_stage 7 && [ -n "${unit_feature_type}" ]; then
    [ -f "${llm_path}/config.json" ] || { log "Error: stage 7 needs the LLM ${llm_path} (stage 5 or --llm_path)"; exit 1; }
    [ -f "${unit_dir}/kmeans/kmeans.json" ] || { log "Error: stage 7 needs units: run stage 6 (${unit_dir})"; exit 1; }
    _K=$(${python} -c "import json,sys; print(json.load(open(sys.argv[1]))['num_units'])" "${unit_dir}/kmeans/kmeans.json")
    mkdir -p "${mmlm_dir}/logs"
    if [ -f "${mmlm_dir}/base/config.json" ]; then
        log "Stage 7: ${mmlm_dir}/base exists, skipping vocabulary extension"
    else
        log "Stage 7: ${llm_path} + ${_K} unit tokens -> ${mmlm_dir}/base"
        ${bin}.extend_vocab --base_dir "${llm_path}" --out_dir "${mmlm_dir}/base" --num_units "${_K}" --seed "${seed}"
    fi
    if [ -f "${mmlm_dir}/lm/config.json" ]; then
        log "Stage 7: ${mmlm_dir}/lm exists, skipping speech+text LM training"
    else
        log "Stage 7: speech+text LM training (text, units->text, text->units) -> ${mmlm_dir}/lm"
        # shellcheck disable=SC2086
        ${cuda_cmd} --gpu "${ngpu}" "${mmlm_dir}/logs/mmlm_train.log" \
            ${bin}.mmlm_train --llm_dir "${mmlm_dir}/base" \
                --units "${unit_dir}/${train_dump}/units" --text "${data_feats}/${train_dump}/text" \
                --dev_units "${unit_dir}/${valid_set}/units" --dev_text "${data_feats}/${valid_set}/text" \
                --out_dir "${mmlm_dir}/lm" --ckpt_dir "${mmlm_dir}/lm.ckpt" --seed "${seed}" ${mmlm_args}
    fi
    if [ -f "${mmlm_dir}/contrastive/contrastive.json" ]; then
        log "Stage 7: ${mmlm_dir}/contrastive exists, skipping contrastive training"
    else
        log "Stage 7: contrastive speech<->text training -> ${mmlm_dir}/contrastive"
        # shellcheck disable=SC2086
        ${cuda_cmd} --gpu "${ngpu}" "${mmlm_dir}/logs/contrastive_train.log" \
            ${bin}.contrastive_train --llm_dir "${mmlm_dir}/lm" \
                --units "${unit_dir}/${train_dump}/units" --text "${data_feats}/${train_dump}/text" \
                --out_dir "${mmlm_dir}/contrastive" --seed "${seed}" ${contrastive_args}
    fi
    stage_done 7 "${mmlm_dir}"
fi


if run_stage 8 && [ -n "${unit_feature_type}" ]; then
    log "Stage 8: speech<->text retrieval (Recall@k) and text perplexity -> ${expdir}/RESULTS.md"
    [ -f "${mmlm_dir}/contrastive/contrastive.json" ] || { log "Error: ${mmlm_dir}/contrastive not found: run stage 7 first"; exit 1; }
    for dset in ${retrieval_test_sets:-${test_sets}}; do
        [ -f "${unit_dir}/${dset}/units" ] || { log "Error: ${unit_dir}/${dset}/units not found: run stage 6 first"; exit 1; }
        if [ "$(num_transcribed "${data_feats}/${dset}/text")" -eq 0 ]; then
            log "  ${dset}: no transcripts (non-speech set), skipping"; continue
        fi
        for _m in lm contrastive; do  # Recall@k before and after contrastive training
            ${bin}.retrieval_eval --model_dir "${mmlm_dir}/${_m}" --units "${unit_dir}/${dset}/units" \
                --text "${data_feats}/${dset}/text" --out_json "${mmlm_dir}/${_m}/retrieval_${dset}.json" \
                --results_md "${mmlm_dir}/RESULTS.md" --name "mmlm_${unit_tag}_${_m}" --set_name "${dset}"
        done
        mkdir -p "${mmlm_dir}/perplexity"
        for _m in "${llm_path}" "${mmlm_dir}/lm"; do  # text perplexity: text-only LM vs speech+text LM
            ${bin}.mmlm_train --llm_dir "${_m}" --eval_only true --eval_text "${data_feats}/${dset}/text" \
                --eval_has_ids true --eval_json "${mmlm_dir}/perplexity/$(basename "${_m}")_${dset}.json"
        done
    done
    ${bin}.collect_results "${expdir}" --title "$(basename "$(dirname "$PWD")")/$(basename "$PWD")"
    stage_done 8 "${mmlm_dir}/RESULTS.md, ${expdir}/RESULTS.md"
fi


if run_stage 9; then
    if [ -z "${datastore_memory}${context_passages}${context_documents}" ]; then
        log "Stage 9: no --datastore_memory, --context_passages or --context_documents: no memories"
    fi
    if [ -n "${datastore_memory}" ]; then
        if [ -f "${datastore_dir}/manifest.json" ]; then
            log "Stage 9: ${datastore_dir} exists, skipping"
        else
            log "Stage 9: kNN-LM datastore of ${datastore_memory} (keys: ${datastore_key_encoder}) -> ${datastore_dir}"
            _mem=(--memory_text "${datastore_memory}")
            # a data directory's Kaldi text: its transcripts, not its utterance ids, are memory
            [ -f "$(dirname "${datastore_memory}")/wav.scp" ] && _mem=(--memory_text_file "${datastore_memory}")
            if [ -n "${datastore_units}" ]; then
                _K=$(${python} -c "import json,sys; print(json.load(open(sys.argv[1]))['num_units'])" "${unit_dir}/kmeans/kmeans.json")
                _mem=(--memory_units "${datastore_units}" --memory_text_file "${datastore_memory}" --num_units "${_K}")
            fi
            mkdir -p "${datastore_dir}.logs"
            # shellcheck disable=SC2086
            ${cuda_cmd} --gpu "${ngpu}" JOB=1:"${nj}" "${datastore_dir}.logs/build.JOB.log" \
                ${bin}.build_datastore "${_mem[@]}" --key_encoder "${datastore_key_encoder}" \
                    --nj "${nj}" --shard JOB --out_dir "${datastore_dir}" ${datastore_args}
            # shellcheck disable=SC2086
            ${bin}.build_datastore "${_mem[@]}" --key_encoder "${datastore_key_encoder}" \
                --nj "${nj}" --merge --out_dir "${datastore_dir}" ${datastore_args}
            mv "${datastore_dir}.logs" "${datastore_dir}/logs"
        fi
    fi
    if [ -n "${context_passages}${context_documents}" ]; then
        for dset in ${train_dump} ${valid_set} ${test_sets}; do
            _src=(--passages "${context_passages}")
            if [ -n "${context_documents}" ]; then  # a file, or a dir with <set>/documents.jsonl
                _docs=${context_documents}; [ -d "${_docs}" ] && _docs=${context_documents}/${dset}/documents.jsonl
                _src=(--documents "${_docs}")
            fi
            if [ -f "${context_dir}/${dset}/context" ]; then log "  ${context_dir}/${dset} is complete, skipping"; continue; fi
            _q=${data_feats}/${dset}/text  # training: references as queries (see retrieve_passages --help)
            _excl=(--exclude_query "${context_exclude_query}")
            if [ "${dset}" != "${train_dump}" ] && [ "${dset}" != "${valid_set}" ]; then
                _excl=()
                [ -n "${context_first_pass}" ] || { log "Error: --context_first_pass (a decode dir) is needed for the test sets' queries"; exit 1; }
                _q=${context_first_pass}/${dset}/text
            fi
            log "Stage 9: top-${num_passages} passages for ${dset} (queries: ${_q}) -> ${context_dir}/${dset}"
            ${bin}.retrieve_passages "${_src[@]}" --queries "${_q}" --num_passages "${num_passages}" "${_excl[@]}" \
                --llm_path "${llm_path}" --out_dir "${context_dir}/${dset}"
        done
    fi
    stage_done 9 "${datastore_memory:+${datastore_dir} }${context_passages}${context_documents:+${context_dir}}"
fi


if run_stage 10 && [ -n "${whisper_dir}" ]; then
    log "Stage 10: --whisper_dir: decoding with a pretrained Whisper, no ASR training"
elif run_stage 10; then
    if [ -f "${asr_stats_dir}/train/feats_stats.npz" ]; then
        log "Stage 10: ASR statistics: ${asr_stats_dir} is complete, skipping"
    else
        log "Stage 10: ASR statistics -> ${asr_stats_dir}"
        _logdir=${asr_stats_dir}.work/logs
        mkdir -p "${_logdir}"
        _nj=$(min "${nj}" "$(wc -l < "${data_feats}/${train_dump}/wav.scp")" "$(wc -l < "${data_feats}/${valid_set}/wav.scp")")
        ${bin}.split_scp "${data_feats}/${train_dump}/wav.scp" "${asr_stats_dir}.work/train" --nj "${_nj}" > /dev/null
        ${bin}.split_scp "${data_feats}/${valid_set}/wav.scp" "${asr_stats_dir}.work/valid" --nj "${_nj}" > /dev/null
        # ESPnet's streaming reader used for statistics rejects empty transcripts (non-speech
        # segments); they only need a length here, so give them a one-word placeholder.
        for _s in train valid; do
            _set=${train_dump}; [ "${_s}" = valid ] && _set=${valid_set}
            awk 'NF == 1 { print $1 " <empty>"; next } { print }' "${data_feats}/${_set}/text" > "${asr_stats_dir}.work/${_s}_text"
        done
        # shellcheck disable=SC2086
        ${train_cmd} JOB=1:"${_nj}" "${_logdir}/stats.JOB.log" \
            ${bin}.asr_train --collect_stats true --use_preprocessor true "${token_opts[@]}" \
                --train_data_path_and_name_and_type "${data_feats}/${train_dump}/wav.scp,speech,sound" \
                --train_data_path_and_name_and_type "${asr_stats_dir}.work/train_text,text,text" \
                --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/wav.scp,speech,sound" \
                --valid_data_path_and_name_and_type "${asr_stats_dir}.work/valid_text,text,text" \
                --train_shape_file "${asr_stats_dir}.work/train/keys.JOB.scp" \
                --valid_shape_file "${asr_stats_dir}.work/valid/keys.JOB.scp" \
                --output_dir "${asr_stats_dir}.work/stats.JOB" \
                --config "${asr_config}" --frontend_conf fs="${fs}" --seed "${seed}" "${llm_opts[@]}" ${asr_args} \
                --normalize none  # statistics are what global_mvn is computed from
        _inputs=(); for j in $(seq "${_nj}"); do _inputs+=(--input_dir "${asr_stats_dir}.work/stats.${j}"); done
        ${bin}.aggregate_stats "${_inputs[@]}" --output_dir "${asr_stats_dir}" \
            --token_list "${token_list}" --token_type "${token_type}"
        mv "${_logdir}" "${asr_stats_dir}/logs"
        rm -rf "${asr_stats_dir}.work"
    fi
    stage_done 10 "${asr_stats_dir}"
fi


if run_stage 11 && [ -n "${whisper_dir}" ]; then
    log "Stage 11: --whisper_dir: decoding with a pretrained Whisper, no ASR training"
elif run_stage 11; then
    if [ -f "${asr_exp}/${inference_asr_model}" ]; then
        log "Stage 11: ASR training: ${asr_exp}/${inference_asr_model} exists, skipping"
    else
        log "Stage 11: ASR training -> ${asr_exp} (resumes from ${asr_exp}/checkpoint.pth if present)"
        mkdir -p "${asr_exp}/logs"
        _norm=()
        grep -q "^normalize: *global_mvn" "${asr_config}" && _norm=(--normalize_conf "stats_file=${asr_stats_dir}/train/feats_stats.npz")
        _dist=(); _launch=()
        if [ "${ngpu}" -gt 1 ]; then
            _dist=(--multiprocessing_distributed true)
        elif [ "${ngpu}" -eq 0 ] && [ "${cpu_procs}" -gt 1 ]; then
            # ESPnet's external-launcher mode: torchrun sets RANK/WORLD_SIZE, gloo on CPU
            _launch=(-m torch.distributed.run --standalone --nproc_per_node "${cpu_procs}")
            _dist=(--multiprocessing_distributed false --dist_backend gloo)
        fi
        _noise=()
        if [ "${noise_scp}" = nonspeech ]; then
            # noise-only segments of the training set (empty transcripts) as the noise list
            awk 'NR == FNR { if (NF == 1) keep[$1] = 1; next } ($1 in keep)' \
                "${data_feats}/${train_dump}/text" "${data_feats}/${train_dump}/wav.scp" > "${asr_exp}/noise.scp"
            [ -s "${asr_exp}/noise.scp" ] || { log "Error: --noise_scp nonspeech: ${data_feats}/${train_dump}/text has no empty-transcript segments"; exit 1; }
            _noise=(--noise_scp "${asr_exp}/noise.scp")
        elif [ -n "${noise_scp}" ]; then
            [ -f "${noise_scp}" ] || { log "Error: --noise_scp ${noise_scp}: file not found"; exit 1; }
            _noise=(--noise_scp "${noise_scp}")
        fi
        [ ${#_noise[@]} -gt 0 ] && _noise+=(--noise_apply_prob "${noise_apply_prob}" --noise_db_range "${noise_db_range}")
        _ctx=()
        if uses_context "${asr_config}"; then
            for _s in "${train_dump}" "${valid_set}"; do
                [ -f "${context_dir}/${_s}/context" ] || { log "Error: ${asr_config} reads passages: run stage 9 with --context_passages first"; exit 1; }
            done
            _ctx=(--train_data_path_and_name_and_type "${context_dir}/${train_dump}/context,context,text"
                  --valid_data_path_and_name_and_type "${context_dir}/${valid_set}/context,context,text")
        fi
        # shellcheck disable=SC2086
        ${cuda_cmd} --gpu "${ngpu}" "${asr_exp}/logs/train.log" \
            ${python} "${_launch[@]}" -m espnet_llm_plugin.bin.asr_train --use_preprocessor true "${token_opts[@]}" \
                --train_data_path_and_name_and_type "${data_feats}/${train_dump}/wav.scp,speech,sound" \
                --train_data_path_and_name_and_type "${data_feats}/${train_dump}/text,text,text" \
                --train_shape_file "${asr_stats_dir}/train/speech_shape" \
                --train_shape_file "${asr_stats_dir}/train/text_shape.${token_type}" \
                --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/wav.scp,speech,sound" \
                --valid_data_path_and_name_and_type "${data_feats}/${valid_set}/text,text,text" \
                --valid_shape_file "${asr_stats_dir}/valid/speech_shape" \
                --valid_shape_file "${asr_stats_dir}/valid/text_shape.${token_type}" \
                --resume true --fold_length 80000 --fold_length 150 \
                --output_dir "${asr_exp}" --config "${asr_config}" --frontend_conf fs="${fs}" \
                --ngpu "${ngpu}" --seed "${seed}" "${_norm[@]}" "${_dist[@]}" "${_noise[@]}" "${_ctx[@]}" "${llm_opts[@]}" ${asr_args}
        log "  training log: ${asr_exp}/logs/train.log"
    fi
    stage_done 11 "${asr_exp}"
fi


if run_stage 12; then
    log "Stage 12: decoding (${inference_tag}, ${nbest}-best)"
    _ngpu=0; ${gpu_inference} && _ngpu=1
    _cfg=(); [ -n "${inference_config}" ] && _cfg=(--config "${inference_config}")
    if [ -n "${tune_grid}" ]; then
        [ -n "${inference_config}" ] || { log "Error: --tune_grid needs an --inference_config to start from"; exit 1; }
        _tset=${tune_set:-${valid_set}}
        _tdir=${asr_exp}/decode_${inference_tag}/tuning_${_tset}
        _grid=(); for _g in ${tune_grid}; do _grid+=(--grid "${_g}"); done
        _tdata=(); uses_units && _tdata=(--extra_data "${unit_dir}/${_tset}/units,units,text_int")
        if [ ! -f "${_tdir}/best.yaml" ]; then
            log "Stage 12: tuning ${tune_grid} on ${_tset} -> ${_tdir}/best.yaml"
            ${decode_cmd} --gpu "${_ngpu}" "${_tdir}.log" ${bin}.tune_decode --config "${inference_config}" \
                "${_grid[@]}" "${_tdata[@]}" --asr_train_config "${asr_exp}/config.yaml" \
                --asr_model_file "${asr_exp}/${inference_asr_model}" --ngpu "${_ngpu}" \
                --wav_scp "${data_feats}/${_tset}/wav.scp" --ref "${data_feats}/${_tset}/text" \
                --work_dir "${_tdir}" --out_config "${_tdir}/best.yaml"
        fi
        log "  $(head -1 "${_tdir}/best.yaml")"
        _cfg=(--config "${_tdir}/best.yaml")
    fi
    _sets=${test_sets}; [ -n "${rescore_lm}" ] && _sets="${valid_set} ${test_sets}"  # tuning set
    for dset in ${_sets}; do
        _dir=${asr_exp}/decode_${inference_tag}/${dset}
        if [ -f "${_dir}/text" ]; then log "  ${_dir} is complete, skipping"; continue; fi
        _work=${_dir}.work; rm -rf "${_work}"; mkdir -p "${_work}/logs"
        _nj=$(${bin}.split_scp "${data_feats}/${dset}/wav.scp" "${_work}" --nj "${inference_nj}")
        if [ -n "${whisper_dir}" ]; then
            # shellcheck disable=SC2086
            ${decode_cmd} --gpu "${_ngpu}" JOB=1:"${_nj}" "${_work}/logs/decode.JOB.log" \
                ${bin}.whisper_nbest --whisper_dir "${whisper_dir}" --data_dir "${data_feats}/${dset}" \
                    --key_file "${_work}/keys.JOB.scp" --out_dir "${_work}/output.JOB" \
                    --beam_size "${nbest}" --nbest "${nbest}" ${whisper_args}
            ${bin}.merge_decode_dirs --nj "${_nj}" "${_work}" "${_dir}"
            mv "${_work}/logs" "${_dir}/logs"
            rm -rf "${_work}"
            continue
        fi
        _ctx=()
        if uses_context "${asr_exp}/config.yaml"; then
            [ -f "${context_dir}/${dset}/context_ids" ] || { log "Error: ${asr_exp} reads passages: run stage 9 for ${dset}"; exit 1; }
            _ctx=(--data_path_and_name_and_type "${context_dir}/${dset}/context_ids,context,text_int")
        fi
        _units=()
        if uses_units; then
            [ -f "${unit_dir}/${dset}/units" ] || { log "Error: knnlm_units_from_data needs ${unit_dir}/${dset}/units: run stage 6 for ${dset}"; exit 1; }
            _units=(--data_path_and_name_and_type "${unit_dir}/${dset}/units,units,text_int")
        fi
        # shellcheck disable=SC2086
        ${decode_cmd} --gpu "${_ngpu}" JOB=1:"${_nj}" "${_work}/logs/decode.JOB.log" \
            ${bin}.asr_inference --ngpu "${_ngpu}" --nbest "${nbest}" "${_cfg[@]}" "${_ctx[@]}" "${_units[@]}" \
                --data_path_and_name_and_type "${data_feats}/${dset}/wav.scp,speech,sound" \
                --key_file "${_work}/keys.JOB.scp" \
                --asr_train_config "${asr_exp}/config.yaml" \
                --asr_model_file "${asr_exp}/${inference_asr_model}" \
                --output_dir "${_work}/output.JOB" ${inference_args}
        ${bin}.merge_decode_dirs --nj "${_nj}" "${_work}" "${_dir}"
        mv "${_work}/logs" "${_dir}/logs"
        rm -rf "${_work}"
    done
    stage_done 12 "${asr_exp}/decode_${inference_tag}"
fi


if run_stage 12 && [ -n "${rescore_lm}" ]; then
    _dec=${asr_exp}/decode_${inference_tag}
    _lm=${rescore_lm}
    _units() { ${rescore_units} && echo "--units ${unit_dir}/$1/units"; return 0; }
    if ${mwer_train}; then
        _lm=${expdir}/rescore_lm_mwer_$(basename "${rescore_lm}")
        if [ -f "${_lm}/config.json" ]; then
            log "Stage 12: ${_lm} exists, skipping MWER training"
        else
            log "Stage 12: MWER fine-tuning of ${rescore_lm} on ${valid_set}'s n-best lists -> ${_lm}"
            # shellcheck disable=SC2046,SC2086
            ${cuda_cmd} --gpu "${ngpu}" "${_lm}.log" ${bin}.train_mwer --nbest_dir "${_dec}/${valid_set}" \
                --ref_text "${data_feats}/${valid_set}/text" $(_units "${valid_set}") \
                --lm_path "${rescore_lm}" --out_dir "${_lm}" --seed "${seed}" ${mwer_args}
        fi
    fi
    _resc=${_dec}_rescore_$(basename "${_lm}")
    _knn=(); [ -n "${rescore_knnlm}" ] && { _knn=(--knnlm_datastore "${rescore_knnlm}"); _resc+=_knnlm_$(basename "${rescore_knnlm}"); }
    log "Stage 12: n-best rescoring with ${_lm} (weights tuned on ${valid_set}) -> ${_resc}"
    for dset in ${valid_set} ${test_sets}; do
        if [ -f "${_resc}/${dset}/text" ]; then log "  ${_resc}/${dset} is complete, skipping"; continue; fi
        _tune=(--tune false); [ "${dset}" = "${valid_set}" ] && _tune=(--tune true)
        # shellcheck disable=SC2046,SC2086
        ${bin}.rescore_nbest --nbest_dir "${_dec}/${dset}" --lm_path "${_lm}" $(_units "${dset}") \
            --ref_text "${data_feats}/${dset}/text" "${_tune[@]}" \
            --weights_config "${_resc}/weights.yaml" --out_dir "${_resc}/${dset}" "${_knn[@]}" ${rescore_args}
    done
    stage_done 12 "${_resc}"
fi


if run_stage 13; then
    log "Stage 13: scoring -> ${expdir}/RESULTS.md"
    for dset in ${test_sets}; do
        _dir=${asr_exp}/decode_${inference_tag}/${dset}
        [ -f "${_dir}/text" ] || { log "Error: ${_dir}/text not found: run stage 12 first"; exit 1; }
        # the decoding and stage 12's rescorings of it (those have no timing.json: no RTF)
        for _r in "${_dir}" "${asr_exp}/decode_${inference_tag}_rescore_"*/"${dset}"; do
            [ -f "${_r}/text" ] || continue
            _score=(--ref "${data_feats}/${dset}/text" --hyp "${_r}/text" --timing "${_r}/timing.json" --name "${dset}")
            # shellcheck disable=SC2086
            ${bin}.score_wer "${_score[@]}" --out_dir "${_r}/score" ${score_opts} > /dev/null
            if [ "${score_normalised}" = true ]; then
                # shellcheck disable=SC2086
                ${bin}.score_wer "${_score[@]}" --normaliser english --out_dir "${_r}/score_english" ${score_opts} > /dev/null
            fi
        done
    done
    ${bin}.collect_results "${expdir}" --title "$(basename "$(dirname "$PWD")")/$(basename "$PWD")"
    stage_done 13 "${expdir}/RESULTS.md"
fi


if run_stage 14; then
    _pack=${asr_exp}/$(basename "${asr_exp}")_${inference_tag}
    [ "${pack_format}" = dir ] || _pack+=.${pack_format}
    log "Stage 14: packing ${asr_exp}/${inference_asr_model} -> ${_pack}"
    [ -f "${asr_exp}/${inference_asr_model}" ] || { log "Error: ${asr_exp}/${inference_asr_model} not found: run stage 11 first"; exit 1; }
    _cfg=(); [ -n "${inference_config}" ] && _cfg=(--decode_config "${inference_config}")
    _tuned=${asr_exp}/decode_${inference_tag}/tuning_${tune_set:-${valid_set}}/best.yaml
    [ -n "${tune_grid}" ] && _cfg=(--decode_config "${_tuned}")
    _res=(); [ -f "${expdir}/RESULTS.md" ] && _res=(--results "${expdir}/RESULTS.md")
    for dset in ${test_sets}; do  # stage 13's scores
        _s=${asr_exp}/decode_${inference_tag}/${dset}/score
        [ -d "${_s}" ] && _res+=(--results "${_s}")
    done
    ${bin}.pack_model --asr_train_config "${asr_exp}/config.yaml" \
        --asr_model_file "${asr_exp}/${inference_asr_model}" "${_cfg[@]}" \
        --decode_args "--nbest ${nbest} ${inference_args}" "${_res[@]}" \
        --include_datastore "${pack_datastore}" --out "${_pack}" \
        --title "$(basename "$(dirname "$PWD")")/$(basename "$PWD") $(basename "${asr_exp}") (${inference_tag})" \
        --data_description "Training set: ${train_set}; validation set: ${valid_set}; test sets: ${test_sets}."
    stage_done 14 "${_pack} (unpack: ${python} -m espnet_llm_plugin.bin.unpack_model ${_pack} <dir>)"
fi

log "Finished in ${SECONDS}s"
