"""Merge the per-job statistics directories of ``asr_train --collect_stats true``.

Sums feature statistics and concatenates shape files with ESPnet's own aggregation, then
writes ``text_shape.<token_type>`` (length plus vocabulary size, as ESPnet's batch
samplers expect). The output directory appears only when complete.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import cli_parser
from espnet_llm_plugin.fileio.atomic import atomic_dir
from espnet_llm_plugin.stats_frontend import FRONTEND_FILE, frontend_of_config


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("aggregate_stats", __doc__)
    p.add_argument("--input_dir", type=Path, action="append", required=True, help="repeatable")
    p.add_argument("--output_dir", type=Path, required=True)
    p.add_argument("--token_list", type=Path, required=True)
    p.add_argument("--token_type", required=True, help="suffix of text_shape.<token_type>")
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    for d in args.input_dir:
        if not (d / "train" / "batch_keys").is_file():
            sys.exit(f"aggregate_stats: error: {d} is not a complete collect_stats output (no train/batch_keys)")
    from espnet_llm_plugin.quiet import quiet_espnet_import

    with quiet_espnet_import():
        from espnet2.bin.aggregate_stats_dirs import aggregate_stats_dirs

    vocab = sum(1 for line in args.token_list.read_text().splitlines() if line.strip())
    with atomic_dir(args.output_dir) as tmp:
        aggregate_stats_dirs(args.input_dir, tmp, "INFO", skip_sum_stats=False)
        job_config = args.input_dir[0] / "config.yaml"  # written by ESPnet's collect_stats
        if job_config.is_file():
            (tmp / FRONTEND_FILE).write_text(json.dumps(frontend_of_config(job_config)) + "\n")
        for mode in ("train", "valid"):
            shape = tmp / mode / "text_shape"
            if shape.is_file():
                lines = [line for line in shape.read_text().splitlines() if line.strip()]
                (tmp / mode / f"text_shape.{args.token_type}").write_text(
                    "".join(f"{line},{vocab}\n" for line in lines)
                )


if __name__ == "__main__":
    main()
