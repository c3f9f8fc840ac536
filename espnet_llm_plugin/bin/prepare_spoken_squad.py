"""Prepare Spoken-SQuAD for ASR with retrieval: write the Kaldi data directories
<data_dir>/train, <data_dir>/valid (held-out training articles) and <data_dir>/test (the
Spoken-SQuAD test set), one utterance per TTS sentence, each with documents.jsonl (the
paragraphs of its article: dynamic context for retrieve_passages --documents) and
gold_passages (the paragraph it was read from: retrieve_passages --gold); and
<data_dir>/local/passages.jsonl (every used paragraph: the domain memory for
retrieve_passages --passages).

--spoken_squad_root holds spoken_train-v1.1.json, spoken_test-v1.1.json (Spoken-SQuAD
release), train-v1.1.json, dev-v1.1.json (SQuAD v1.1: the reference text) and
Spoken-SQuAD_audio/{train_wav,dev_wav}/<topic>_<paragraph>_<sentence>.wav. With --download true,
what is missing is downloaded into --download_dir (the audio is a ~50 GB zip of two zips).

Example:
  python -m espnet_llm_plugin.bin.prepare_spoken_squad --spoken_squad_root /data/spoken_squad
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional

from espnet_llm_plugin.corpus.release import release_parser, run_prepare
from espnet_llm_plugin.corpus.spoken_squad import (
    AUDIO_URL,
    SPOKEN_SQUAD_JSON_URL,
    SQUAD_URL,
    SpokenSquadError,
    ensure_spoken_squad,
    prepare_spoken_squad,
)


def get_parser() -> argparse.ArgumentParser:
    p = release_parser(
        "prepare_spoken_squad",
        __doc__,
        "--spoken_squad_root",
        "directory holding the corpus",
        "the corpus",
        "open one audio file per set",
    )
    p.add_argument(
        "--valid_ratio",
        type=float,
        default=0.05,
        help="fraction of training articles held out as data/valid (default: %(default)s)",
    )
    p.add_argument(
        "--json_url",
        default=SPOKEN_SQUAD_JSON_URL,
        help="URL prefix of spoken_{train,test}-v1.1.json (default: %(default)s)",
    )
    p.add_argument(
        "--squad_url", default=SQUAD_URL, help="URL prefix of SQuAD {train,dev}-v1.1.json (default: %(default)s)"
    )
    p.add_argument("--audio_url", default=AUDIO_URL, help="audio zip URL (default: %(default)s)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)

    def prepare() -> Dict[str, int]:
        root = ensure_spoken_squad(
            args.spoken_squad_root,
            args.download,
            args.download_dir,
            json_url=args.json_url,
            squad_url=args.squad_url,
            audio_url=args.audio_url,
        )
        return prepare_spoken_squad(root, args.data_dir, valid_ratio=args.valid_ratio, check_audio=args.check_audio)

    run_prepare("prepare_spoken_squad", prepare, (SpokenSquadError,))


if __name__ == "__main__":
    main()
