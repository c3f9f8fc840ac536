# Where the corpus and the pretrained models live; sourced by run.sh and local/data.sh.
# Set them here or with `export VAR=...`; no machine paths are committed.
#
# LIBRISPEECH: the directory that contains LibriSpeech/ (the extracted <subset>.tar.gz archives
# of https://www.openslr.org/resources/12/). With the default, `./run.sh --download true`
# downloads and extracts the needed subsets into ./downloads (960 h: about 60 GB).
LIBRISPEECH=${LIBRISPEECH:-downloads}
# HUBERT_LARGE: a local directory with HuBERT-large (e.g. facebook/hubert-large-ll60k saved with
# save_pretrained: config.json + model.safetensors [+ preprocessor_config.json]).
HUBERT_LARGE=${HUBERT_LARGE:-}
# LLM_7B: a local directory with a 7B decoder-only Hugging Face causal LM and its tokenizer
# (e.g. a Llama-2-7B / Vicuna-7B checkpoint; config.json, tokenizer files, weights).
LLM_7B=${LLM_7B:-}
