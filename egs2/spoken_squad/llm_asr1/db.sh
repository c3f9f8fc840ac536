# Where the corpus and the pretrained models live; sourced by run.sh and local/data.sh.
# Set them here or with `export VAR=...`; no machine paths are committed.
#
# SPOKEN_SQUAD: a directory holding spoken_train-v1.1.json and spoken_test-v1.1.json
# (https://github.com/chiahsuan156/Spoken-SQuAD), train-v1.1.json and dev-v1.1.json (SQuAD v1.1,
# https://rajpurkar.github.io/SQuAD-explorer/: the reference text) and the extracted audio
# Spoken-SQuAD_audio/{train_wav,dev_wav}/ (from Spoken-SQuAD_audio.zip, about 50 GB). With the
# default, `./run.sh --download true` downloads what is missing into ./downloads.
SPOKEN_SQUAD=${SPOKEN_SQUAD:-downloads}
# HUBERT_LARGE: local HF dir of HuBERT-large (e.g. facebook/hubert-large-ll60k, save_pretrained).
HUBERT_LARGE=${HUBERT_LARGE:-}
# LLM_7B: local HF dir of a 7B decoder-only causal LM with its tokenizer.
LLM_7B=${LLM_7B:-}
