#!/usr/bin/env bash
# data/real_speech: the real recordings of $REAL_SPEECH (db.sh) that have a transcript in its
# Kaldi-style `text`, as a Kaldi data dir (wav.scp points at the original FLAC/WAV/MP3 files;
# stage 3 resamples them to the recipe's rate). For a sanity check of pretrained models on real
# speech: ./llm_asr.sh --stage 3 --test_sets real_speech --whisper_dir ... (see RESULTS.md).
set -euo pipefail

out=data/real_speech
help_message="Usage: $0 [--out DIR]   (reads \$REAL_SPEECH, default from db.sh)"
. ./utils/parse_options.sh
. ./db.sh

[ -f "${REAL_SPEECH}/text" ] || {
    echo "$0: ${REAL_SPEECH}/text not found: set REAL_SPEECH (db.sh) to the real_speech folder" >&2
    exit 1
}
mkdir -p "${out}"
src=$(cd "${REAL_SPEECH}" && pwd)
: > "${out}/wav.scp.tmp"; : > "${out}/text.tmp"; : > "${out}/utt2spk.tmp"
while read -r utt transcript; do
    [ -n "${utt}" ] || continue
    audio=$(find "${src}/audio" -maxdepth 1 -name "${utt}.*" | sort | head -1)
    [ -n "${audio}" ] || { echo "$0: ${REAL_SPEECH}/text names ${utt}, but no audio/${utt}.* exists" >&2; exit 1; }
    echo "${utt} ${audio}" >> "${out}/wav.scp.tmp"
    echo "${utt} ${transcript}" >> "${out}/text.tmp"
    echo "${utt} ${utt}" >> "${out}/utt2spk.tmp"
done < "${REAL_SPEECH}/text"
for f in wav.scp text utt2spk; do sort "${out}/${f}.tmp" > "${out}/${f}"; rm "${out}/${f}.tmp"; done
echo "$0: $(wc -l < "${out}/text") transcribed recordings -> ${out}"
