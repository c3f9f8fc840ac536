"""Measure whether discrete units carry content: unit edit distances vs transcripts.

Reads a units file (dump_units output) and the data dir's text (+ utt2spk) and writes a JSON
report: mean normalised edit distance (NED) of same- vs different-transcript pairs with an
ABX-like score (when transcripts repeat), the Spearman correlation of unit NED with transcript
character NED next to a length-only baseline, same- vs different-speaker NED, and codebook
usage. See espnet_llm_plugin.frontend.unit_quality.

Example:
  python -m espnet_llm_plugin.bin.unit_quality --data_dir data/dev --units exp/units/dev/units \\
      --out exp/units/dev/quality.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("unit_quality", __doc__)
    p.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir with text")
    p.add_argument("--units", type=Path, required=True, help="units file of that data dir")
    p.add_argument("--num_units", type=int, default=None, help="K, to check unit ids")
    p.add_argument("--num_pairs", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="JSON report to write")
    add_debug_arg(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.debug)
    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.fileio.kaldi_data import load_data_dir
    from espnet_llm_plugin.fileio.unit_file import read_units
    from espnet_llm_plugin.frontend.unit_quality import unit_quality

    with cli_errors("unit_quality", args.debug, (ValueError,)):
        data = load_data_dir(args.data_dir)
        units = read_units(args.units, args.num_units)
        report = unit_quality(
            units,
            data.text or {},
            data.utt2spk or None,
            num_units=args.num_units,
            num_pairs=args.num_pairs,
            seed=args.seed,
        )
    report["units_file"] = str(args.units)
    report["data_dir"] = str(args.data_dir)
    atomic_write_text(args.out, json.dumps(report, indent=2) + "\n")
    logging.info("wrote %s", args.out)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
