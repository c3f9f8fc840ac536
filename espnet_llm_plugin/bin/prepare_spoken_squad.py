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
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import str2bool
from espnet_llm_plugin.corpus.spoken_squad import (
    AUDIO_URL,
    SPOKEN_SQUAD_JSON_URL,
    SQUAD_URL,
    SpokenSquadError,
    ensure_spoken_squad,
    prepare_spoken_squad,
)
from espnet_llm_plugin.fileio.kaldi_data import DataDirError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_llm_plugin.bin.prepare_spoken_squad",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--spoken_squad_root", type=Path, default=None,
                   help="directory holding the corpus (default: --download_dir)")
    p.add_argument("--data_dir", type=Path, default=Path("data"),
                   help="output parent directory (default: %(default)s)")
    p.add_argument("--valid_ratio", type=float, default=0.05,
                   help="fraction of training articles held out as data/valid (default: %(default)s)")
    p.add_argument("--download", type=str2bool, default=False,
                   help="download and extract what is missing (true/false)")
    p.add_argument("--download_dir", type=Path, default=Path("downloads"),
                   help="where --download puts the corpus (default: %(default)s)")
    p.add_argument("--json_url", default=SPOKEN_SQUAD_JSON_URL,
                   help="URL prefix of spoken_{train,test}-v1.1.json (default: %(default)s)")
    p.add_argument("--squad_url", default=SQUAD_URL,
                   help="URL prefix of SQuAD {train,dev}-v1.1.json (default: %(default)s)")
    p.add_argument("--audio_url", default=AUDIO_URL, help="audio zip URL (default: %(default)s)")
    p.add_argument("--check_audio", type=str2bool, default=True,
                   help="open one audio file per set before writing (true/false)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        root = ensure_spoken_squad(args.spoken_squad_root, args.download, args.download_dir,
                                   json_url=args.json_url, squad_url=args.squad_url,
                                   audio_url=args.audio_url)
        counts = prepare_spoken_squad(root, args.data_dir, valid_ratio=args.valid_ratio,
                                      check_audio=args.check_audio)
    except (SpokenSquadError, DataDirError, OSError) as e:
        sys.exit(f"prepare_spoken_squad: error: {e}")
    logging.info("done: %s", ", ".join(f"{k} {v} utterances" for k, v in counts.items()))


if __name__ == "__main__":
    main()
