"""Unpack a model written by pack_model into a new directory and link its base models there.

Each base model the pack references (an LLM, an SSL encoder) is looked for in --base_dir
(``DIR/<name>`` or ``DIR`` itself) and, for one from the prepare_pretrained catalog, in its
cache (prepared there when its PyPI package is installed); a base whose content hash differs
from the one the model was trained on is refused, naming both. The result decodes with
``Speech2Text.from_packed(OUT_DIR)``.

Example::

    python -m espnet_llm_plugin.bin.unpack_model asr_llm_pack.zip model_dir --base_dir ~/models
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("unpack_model", __doc__)
    p.add_argument("pack", type=Path, help="the pack: a directory, or a .zip/.tar/.tar.gz file")
    p.add_argument("out_dir", type=Path, help="new directory to unpack into")
    p.add_argument(
        "--base_dir",
        type=Path,
        action="append",
        default=[],
        help="directory holding base models, as DIR/<name> or DIR itself (repeatable)",
    )
    add_debug_arg(p)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.debug)
    from espnet_llm_plugin.packing.layout import PackError
    from espnet_llm_plugin.packing.unpack import unpack

    with cli_errors("unpack_model", args.debug, (PackError, ValueError)):
        print(unpack(args.pack, args.out_dir, base_dirs=args.base_dir))


if __name__ == "__main__":
    main()
