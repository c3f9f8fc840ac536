"""Prepare SLUE-VoxPopuli: write the Kaldi data directories <data_dir>/train, <data_dir>/valid
(held-out fine-tune speakers, for model selection), <data_dir>/dev (the official dev set, where
SLUE reports results) and <data_dir>/test (only when a labelled slue-voxpopuli_test.tsv is
present), plus <data_dir>/local/passages.jsonl (the training transcripts as a text domain
memory for retrieve_passages).

--slue_root is slue-voxpopuli/ (the extracted slue-voxpopuli_blind.tar.gz) or the directory
containing it. With --download true, a corpus not found there is downloaded into
--download_dir and extracted (each step skipped when already done).

Example:
  python -m espnet_llm_plugin.bin.prepare_slue_voxpopuli --slue_root /data --data_dir data
  python -m espnet_llm_plugin.bin.prepare_slue_voxpopuli --download true --download_dir downloads
"""

from __future__ import annotations

import argparse
from typing import Dict, List, Optional

from espnet_llm_plugin.corpus.release import release_parser, run_prepare
from espnet_llm_plugin.corpus.slue_voxpopuli import (
    SLUE_VOXPOPULI_URL,
    SlueVoxPopuliError,
    ensure_slue_voxpopuli,
    prepare_slue_voxpopuli,
)


def get_parser() -> argparse.ArgumentParser:
    p = release_parser(
        "prepare_slue_voxpopuli",
        __doc__,
        "--slue_root",
        "slue-voxpopuli/ or the directory containing it",
        "the archive and slue-voxpopuli/",
        "open one audio file per set",
    )
    p.add_argument(
        "--valid_ratio",
        type=float,
        default=0.05,
        help="fraction of fine-tune speakers held out as data/valid (default: %(default)s)",
    )
    p.add_argument("--url", default=SLUE_VOXPOPULI_URL, help="archive URL (default: %(default)s)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)

    def prepare() -> Dict[str, int]:
        root = ensure_slue_voxpopuli(args.slue_root, args.download, args.download_dir, url=args.url)
        return prepare_slue_voxpopuli(root, args.data_dir, valid_ratio=args.valid_ratio, check_audio=args.check_audio)

    run_prepare("prepare_slue_voxpopuli", prepare, (SlueVoxPopuliError,))


if __name__ == "__main__":
    main()
