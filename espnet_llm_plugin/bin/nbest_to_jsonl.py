"""Convert n-best lists between ESPnet's decode layout and JSONL (either direction).

    python -m espnet_llm_plugin.bin.nbest_to_jsonl --nbest_dir exp/asr/decode/test --out nbest.jsonl
    python -m espnet_llm_plugin.bin.nbest_to_jsonl --nbest_jsonl nbest.jsonl --out_dir exp/other/decode

JSONL lines: ``{"utt_id": ..., "hyps": [{"text": ..., "score": ..., "scores": {...}}, ...]}``.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("nbest_to_jsonl", __doc__)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--nbest_dir", type=Path, help="ESPnet decode dir -> JSONL (--out)")
    src.add_argument("--nbest_jsonl", type=Path, help="JSONL -> ESPnet decode dir (--out_dir)")
    p.add_argument("--out", type=Path, default=None, help="JSONL to write")
    p.add_argument("--out_dir", type=Path, default=None, help="decode dir to write (replaced atomically)")
    add_debug_arg(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.debug)
    from espnet_llm_plugin.rescoring.nbest import (
        read_espnet_nbest,
        read_nbest_jsonl,
        write_espnet_nbest,
        write_nbest_jsonl,
    )

    with cli_errors("nbest_to_jsonl", args.debug, (ValueError,)):
        if args.nbest_dir is not None:
            if args.out is None:
                raise ValueError("--nbest_dir needs --out (the JSONL to write)")
            nbest = read_espnet_nbest(args.nbest_dir)
            write_nbest_jsonl(nbest, args.out)
            target = args.out
        else:
            if args.out_dir is None:
                raise ValueError("--nbest_jsonl needs --out_dir (the decode dir to write)")
            nbest = read_nbest_jsonl(args.nbest_jsonl)
            write_espnet_nbest(nbest, args.out_dir)
            target = args.out_dir
    logging.info("%d utterances, %d hypotheses -> %s", len(nbest), sum(len(h) for h in nbest.values()), target)


if __name__ == "__main__":
    main()
