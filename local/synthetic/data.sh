#!/usr/bin/env bash
# Data preparation for the synthetic demo corpus: English sentences from our own grammar,
# spoken by espeak-ng in several voices, rates and pitches, 16 kHz, with additive noise.
# Writes data/{train,dev,test,test_target,test_noise,dev_target,target_memory} and
# data/local/{train_text.txt,target_text.txt,passages.jsonl}: dev_target tunes retrieval on the
# target domain, target_memory is in-domain speech of target_text sentences (multi-modal memory). Audio goes to $SYNTHETIC (db.sh). Run from the recipe dir.
set -euo pipefail

seed=0
nj=2
num_train=3000
num_dev=150
num_test=200
num_target_test=200
num_target_dev=100
num_target_memory=1000
num_noise_train=150
num_noise_dev=20
num_noise_test=100
num_passages=300
num_target_text=5000

help_message="Usage: $0 [--seed N] [--nj N] [--num_train N] [--num_dev N] [--num_test N] \
[--num_target_test N] [--num_target_dev N] [--num_target_memory N] [--num_noise_train N] [--num_noise_dev N] [--num_noise_test N] [--num_passages N] [--num_target_text N]"
. ./utils/parse_options.sh
. ./db.sh
. ./path.sh

command -v espeak-ng >/dev/null || {
    echo "$0: espeak-ng not found: install it (Debian/Ubuntu: apt-get install espeak-ng), or run 'make demo'" >&2
    exit 1
}

python3 -m espnet_llm_plugin.bin.synthesize_corpus data \
    --audio_dir "${SYNTHETIC}/audio" \
    --seed "${seed}" --nj "${nj}" \
    --num_train "${num_train}" --num_dev "${num_dev}" --num_test "${num_test}" \
    --num_target_test "${num_target_test}" \
    --num_target_dev "${num_target_dev}" --num_target_memory "${num_target_memory}" \
    --num_noise_train "${num_noise_train}" --num_noise_dev "${num_noise_dev}" --num_noise_test "${num_noise_test}" \
    --num_passages "${num_passages}" --num_target_text "${num_target_text}"
