"""Prepare the CMU AN4 corpus: write the Kaldi data directories <data_dir>/train,
<data_dir>/dev and <data_dir>/test (wav.scp, text, utt2spk, spk2utt).

--an4_root is the an4/ directory of the extracted an4_sphere.tar.gz, or the directory
containing it. With --download true, a corpus not found there is downloaded from CMU into
--download_dir and extracted (each step skipped when already done). dev holds out a
deterministic subset of the training speakers (--dev_ratio or --dev_speakers).

Example:
  python -m espnet_llm_plugin.bin.prepare_an4 --an4_root downloads --data_dir data
  python -m espnet_llm_plugin.bin.prepare_an4 --download true --download_dir downloads
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import str2bool
from espnet_llm_plugin.corpus.an4 import (
    AN4_URL,
    AN4Error,
    download_an4,
    find_an4_root,
    prepare_an4,
)
from espnet_llm_plugin.fileio.kaldi_data import DataDirError


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_llm_plugin.bin.prepare_an4",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--an4_root", type=Path, default=None,
                   help="an4/ or the directory containing it (default: --download_dir)")
    p.add_argument("--data_dir", type=Path, default=Path("data"),
                   help="output: <data_dir>/{train,dev,test} (default: %(default)s)")
    p.add_argument("--download", type=str2bool, default=False,
                   help="download and extract the corpus if it is not found (true/false)")
    p.add_argument("--download_dir", type=Path, default=Path("downloads"),
                   help="where --download puts an4_sphere.tar.gz and an4/ "
                        "(default: %(default)s)")
    p.add_argument("--url", default=AN4_URL, help="corpus archive URL (default: %(default)s)")
    p.add_argument("--dev_ratio", type=float, default=0.1,
                   help="fraction of training speakers held out as dev (default: %(default)s)")
    p.add_argument("--dev_speakers", default="",
                   help="comma-separated dev speakers (overrides --dev_ratio)")
    p.add_argument("--sph2pipe", default="",
                   help="write '<sph2pipe> -f wav -p -c 1 x.sph |' to wav.scp instead of the "
                        ".sph path (only for compressed SPHERE files)")
    p.add_argument("--check_audio", type=str2bool, default=True,
                   help="open every audio header before writing (true/false)")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        if args.download:
            root = None
            if args.an4_root is not None:
                try:
                    root = find_an4_root(args.an4_root)
                except AN4Error as e:
                    logging.info("%s; downloading", e.args[0].split(";")[0])
            if root is None:
                root = download_an4(args.download_dir, url=args.url)
        else:
            if args.an4_root is None:
                sys.exit("prepare_an4: error: --an4_root is required unless --download true")
            root = args.an4_root
        dev_speakers = [s for s in args.dev_speakers.replace(",", " ").split() if s]
        counts = prepare_an4(
            root,
            args.data_dir,
            dev_ratio=args.dev_ratio,
            dev_speakers=dev_speakers or None,
            sph2pipe=args.sph2pipe or None,
            check_audio=args.check_audio,
        )
    except (AN4Error, DataDirError, OSError) as e:
        sys.exit(f"prepare_an4: error: {e}")
    logging.info("done: %s", ", ".join(f"{k} {v} utterances" for k, v in counts.items()))


if __name__ == "__main__":
    main()
