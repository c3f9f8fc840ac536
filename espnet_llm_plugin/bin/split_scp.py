"""Split a Kaldi scp/text file into N parts of contiguous keys (for ``--nj`` jobs).

Writes ``OUT_DIR/keys.1.scp`` ... ``OUT_DIR/keys.N.scp``; N is reduced to the number of
keys when there are fewer.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, read_scp, write_scp


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("split_scp", __doc__)
    p.add_argument("scp", type=Path)
    p.add_argument("out_dir", type=Path)
    p.add_argument("--nj", type=int, required=True)
    add_debug_arg(p)
    return p


def split_scp(scp: Path, out_dir: Path, nj: int) -> int:
    """Returns the number of parts written."""
    if nj < 1:
        raise ValueError(f"--nj must be >= 1, got {nj}")
    items = list(read_scp(scp).items())
    nj = min(nj, len(items))
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("keys.*.scp"):
        old.unlink()
    for j in range(nj):
        lo, hi = j * len(items) // nj, (j + 1) * len(items) // nj
        write_scp(out_dir / f"keys.{j + 1}.scp", items[lo:hi])
    return nj


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.debug)
    with cli_errors("split_scp", args.debug, (DataDirError, ValueError)):
        print(split_scp(args.scp, args.out_dir, args.nj))


if __name__ == "__main__":
    main()
