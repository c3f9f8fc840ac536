"""Extend a Hugging Face causal LM with discrete speech-unit tokens (recipe stage 7).

Adds ``<speech>``, ``</speech>`` and ``<unit_0>`` ... ``<unit_{N-1}>`` to the tokenizer (as
special tokens after every text token, so text ids and text tokenisation do not change), grows
the embedding table (and an untied output projection) with rows initialised to the mean of the
existing rows plus small seeded noise, and writes OUT_DIR atomically: a ``save_pretrained``
directory (loads with ``AutoModelForCausalLM.from_pretrained``) plus ``unit_vocab.json``
(num_units, base model, base vocabulary size, token ids). Until trained, the extended model's
logits over the original vocabulary are identical to the base model's for text-only input.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_parser
from espnet_llm_plugin.mmlm.cli_common import run_cli

PROG = "python -m espnet_llm_plugin.bin.extend_vocab"


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("extend_vocab", __doc__)
    p.add_argument("--base_dir", type=Path, required=True, help="local HF causal LM directory (model + tokenizer)")
    p.add_argument("--out_dir", type=Path, required=True, help="the extended model directory")
    p.add_argument("--num_units", type=int, required=True, help="number of discrete units")
    p.add_argument(
        "--noise_std", type=float, default=0.01, help="noise on new rows, relative to the std of the existing rows"
    )
    p.add_argument(
        "--dtype",
        choices=["float32", "bfloat16", "float16"],
        default="float32",
        help="dtype to load and save the model in",
    )
    p.add_argument("--seed", type=int, default=0)
    add_debug_arg(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    if args.noise_std < 0:
        sys.exit("extend_vocab: error: --noise_std must be >= 0")
    from espnet_llm_plugin.mmlm.unit_vocab import extend_model_dir

    info = run_cli(
        "extend_vocab",
        lambda: extend_model_dir(
            args.base_dir, args.out_dir, args.num_units, seed=args.seed, noise_std=args.noise_std, dtype=args.dtype
        ),
        debug=args.debug,
    )
    logging.info(
        "wrote %s: %d units, text vocabulary %d, unit ids from %d",
        args.out_dir,
        info.num_units,
        info.base_vocab_size,
        info.first_unit_id,
    )


if __name__ == "__main__":
    main()
