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
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import str2bool
from espnet_llm_plugin.corpus.slue_voxpopuli import (
    SLUE_VOXPOPULI_URL,
    SlueVoxPopuliError,
    ensure_slue_voxpopuli,
    prepare_slue_voxpopuli,
)
from espnet_llm_plugin.fileio.kaldi_data import DataDirError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_llm_plugin.bin.prepare_slue_voxpopuli",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--slue_root", type=Path, default=None,
                   help="slue-voxpopuli/ or the directory containing it (default: --download_dir)")
    p.add_argument("--data_dir", type=Path, default=Path("data"),
                   help="output parent directory (default: %(default)s)")
    p.add_argument("--valid_ratio", type=float, default=0.05,
                   help="fraction of fine-tune speakers held out as data/valid (default: %(default)s)")
    p.add_argument("--download", type=str2bool, default=False,
                   help="download and extract the corpus if it is not found (true/false)")
    p.add_argument("--download_dir", type=Path, default=Path("downloads"),
                   help="where --download puts the archive and slue-voxpopuli/ (default: %(default)s)")
    p.add_argument("--url", default=SLUE_VOXPOPULI_URL, help="archive URL (default: %(default)s)")
    p.add_argument("--check_audio", type=str2bool, default=True,
                   help="open one audio file per set before writing (true/false)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        root = ensure_slue_voxpopuli(args.slue_root, args.download, args.download_dir, url=args.url)
        counts = prepare_slue_voxpopuli(root, args.data_dir, valid_ratio=args.valid_ratio,
                                        check_audio=args.check_audio)
    except (SlueVoxPopuliError, DataDirError, OSError) as e:
        sys.exit(f"prepare_slue_voxpopuli: error: {e}")
    logging.info("done: %s", ", ".join(f"{k} {v} utterances" for k, v in counts.items()))


if __name__ == "__main__":
    main()
