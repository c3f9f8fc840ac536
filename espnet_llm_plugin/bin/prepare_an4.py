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
from typing import Dict, List, Optional

from espnet_llm_plugin.corpus.an4 import AN4_URL, AN4Error, ensure_an4, prepare_an4
from espnet_llm_plugin.corpus.release import release_parser, run_prepare


def get_parser() -> argparse.ArgumentParser:
    p = release_parser(
        "prepare_an4",
        __doc__,
        "--an4_root",
        "an4/ or the directory containing it",
        "an4_sphere.tar.gz and an4/",
        "open every audio header",
    )
    p.add_argument("--url", default=AN4_URL, help="corpus archive URL (default: %(default)s)")
    p.add_argument(
        "--dev_ratio",
        type=float,
        default=0.1,
        help="fraction of training speakers held out as dev (default: %(default)s)",
    )
    p.add_argument("--dev_speakers", default="", help="comma-separated dev speakers (overrides --dev_ratio)")
    p.add_argument(
        "--sph2pipe",
        default="",
        help="write '<sph2pipe> -f wav -p -c 1 x.sph |' to wav.scp instead of the "
        ".sph path (only for compressed SPHERE files)",
    )
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)

    def prepare() -> Dict[str, int]:
        root = ensure_an4(args.an4_root, args.download, args.download_dir, url=args.url)
        dev_speakers = [s for s in args.dev_speakers.replace(",", " ").split() if s]
        return prepare_an4(
            root,
            args.data_dir,
            dev_ratio=args.dev_ratio,
            dev_speakers=dev_speakers or None,
            sph2pipe=args.sph2pipe or None,
            check_audio=args.check_audio,
        )

    run_prepare("prepare_an4", prepare, (AN4Error,))


if __name__ == "__main__":
    main()
