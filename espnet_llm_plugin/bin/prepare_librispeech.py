"""Prepare LibriSpeech: write the Kaldi data directories <data_dir>/train_clean_100 (or
train_960 with --train_hours 960), dev_clean, dev_other, test_clean, test_other (wav.scp with
.flac paths, text, utt2spk, spk2utt).

--librispeech_root is the LibriSpeech/ directory of the extracted OpenSLR 12 archives, or the
directory containing it. With --download true, subsets not found there are downloaded from
https://www.openslr.org/resources/12/ into --download_dir and extracted (each step skipped when
already done).

Example:
  python -m espnet_llm_plugin.bin.prepare_librispeech --librispeech_root /data --data_dir data
  python -m espnet_llm_plugin.bin.prepare_librispeech --download true --download_dir downloads \
      --train_hours 960
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import str2bool
from espnet_llm_plugin.corpus.librispeech import (
    BASE_URL,
    LibriSpeechError,
    ensure_librispeech,
    prepare_librispeech,
    subsets_for,
)
from espnet_llm_plugin.fileio.kaldi_data import DataDirError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_llm_plugin.bin.prepare_librispeech",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--librispeech_root", type=Path, default=None,
                   help="LibriSpeech/ or the directory containing it (default: --download_dir)")
    p.add_argument("--data_dir", type=Path, default=Path("data"),
                   help="output parent directory (default: %(default)s)")
    p.add_argument("--train_hours", choices=("100", "960"), default="100",
                   help="training set: 100 = train-clean-100, 960 = all three training subsets")
    p.add_argument("--download", type=str2bool, default=False,
                   help="download and extract missing subsets (true/false)")
    p.add_argument("--download_dir", type=Path, default=Path("downloads"),
                   help="where --download puts <subset>.tar.gz and LibriSpeech/ (default: %(default)s)")
    p.add_argument("--base_url", default=BASE_URL, help="archive URL prefix (default: %(default)s)")
    p.add_argument("--check_audio", type=str2bool, default=True,
                   help="open one audio file per subset before writing (true/false)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        root = ensure_librispeech(args.librispeech_root, subsets_for(args.train_hours),
                                  args.download, args.download_dir, base_url=args.base_url)
        counts = prepare_librispeech(root, args.data_dir, train_hours=args.train_hours,
                                     check_audio=args.check_audio)
    except (LibriSpeechError, DataDirError, OSError) as e:
        sys.exit(f"prepare_librispeech: error: {e}")
    logging.info("done: %s", ", ".join(f"{k} {v} utterances" for k, v in counts.items()))


if __name__ == "__main__":
    main()
