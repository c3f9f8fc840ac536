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
from typing import Dict, List, Optional

from espnet_llm_plugin.corpus.librispeech import (
    BASE_URL,
    LibriSpeechError,
    ensure_librispeech,
    prepare_librispeech,
    subsets_for,
)
from espnet_llm_plugin.corpus.release import release_parser, run_prepare


def get_parser() -> argparse.ArgumentParser:
    p = release_parser(
        "prepare_librispeech",
        __doc__,
        "--librispeech_root",
        "LibriSpeech/ or the directory containing it",
        "<subset>.tar.gz and LibriSpeech/",
        "open one audio file per subset",
    )
    p.add_argument(
        "--train_hours",
        choices=("100", "960"),
        default="100",
        help="training set: 100 = train-clean-100, 960 = all three training subsets",
    )
    p.add_argument("--base_url", default=BASE_URL, help="archive URL prefix (default: %(default)s)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)

    def prepare() -> Dict[str, int]:
        root = ensure_librispeech(
            args.librispeech_root,
            subsets_for(args.train_hours),
            args.download,
            args.download_dir,
            base_url=args.base_url,
        )
        return prepare_librispeech(root, args.data_dir, train_hours=args.train_hours, check_audio=args.check_audio)

    run_prepare("prepare_librispeech", prepare, (LibriSpeechError,))


if __name__ == "__main__":
    main()
