# Where the corpus and the pretrained models live; sourced by run.sh and local/data.sh.
# Set them here or with `export VAR=...`; no machine paths are committed.
#
# SLUE_VOXPOPULI: the directory that contains slue-voxpopuli/ (the extracted
# https://papers-slue.awsdev.asapp.com/slue-voxpopuli_blind.tar.gz). With the default,
# `./run.sh --download true` downloads and extracts it into ./downloads.
SLUE_VOXPOPULI=${SLUE_VOXPOPULI:-downloads}
# HUBERT_LARGE: local HF dir of HuBERT-large (e.g. facebook/hubert-large-ll60k, save_pretrained).
HUBERT_LARGE=${HUBERT_LARGE:-}
# LLM_7B: local HF dir of a 7B decoder-only causal LM with its tokenizer.
LLM_7B=${LLM_7B:-}
