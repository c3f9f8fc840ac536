"""Speech<->text retrieval Recall@k of a unit-extended LM on a held-out set (recipe stage 8).

MODEL_DIR is a ``contrastive_train`` output (its ``contrastive.json`` gives the layer and
pooling; ``--layer``/``--pooling`` override) or any unit-extended LM (then the defaults: last
layer, mean pooling). UNITS + TEXT: a held-out set (ids must match; empty transcripts are
skipped). Speech->text: each utterance ranks the distinct transcripts; text->speech: each
distinct transcript ranks the utterances (any utterance with that transcript counts). Ties
rank the lower index first. Writes ``--out_json`` and, with ``--results_md``, adds a row to the
retrieval table of that markdown file (created if absent); both atomically.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_parser
from espnet_llm_plugin.mmlm.cli_common import add_device_args, run_cli

PROG = "python -m espnet_llm_plugin.bin.retrieval_eval"
logger = logging.getLogger("retrieval_eval")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("retrieval_eval", __doc__)
    p.add_argument("--model_dir", type=Path, required=True, help="unit-extended HF LM")
    p.add_argument("--units", type=Path, required=True, help="held-out units file")
    p.add_argument("--text", type=Path, required=True, help="held-out Kaldi text")
    p.add_argument("--out_json", type=Path, required=True, help="Recall@k as JSON")
    p.add_argument(
        "--results_md", type=Path, default=None, help="markdown file to add a table row to (e.g. exp/RESULTS.md)"
    )
    p.add_argument("--name", default=None, help="model name in the table (default: MODEL_DIR)")
    p.add_argument("--set_name", default=None, help="evaluation set name in the table (default: TEXT's directory name)")
    p.add_argument("--layer", type=int, default=None, help="default: contrastive.json or -1")
    p.add_argument("--pooling", choices=["mean", "last"], default=None, help="default: contrastive.json or mean")
    p.add_argument("--batch_size", type=int, default=32)
    add_device_args(p)
    add_debug_arg(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    run_cli("retrieval_eval", lambda: run(args), debug=args.debug)


def run(args: argparse.Namespace) -> None:
    from espnet_llm_plugin.core.device import setup_torch
    from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.mmlm.contrastive import CONTRASTIVE_FILE, PoolingConfig
    from espnet_llm_plugin.mmlm.mixed_sequences import load_pairs
    from espnet_llm_plugin.mmlm.speech_text_retrieval import (
        evaluate_retrieval,
        markdown_row,
        update_markdown,
    )
    from espnet_llm_plugin.mmlm.unit_vocab import check_unit_tokens, read_unit_vocab

    if args.batch_size <= 0:
        raise ValueError(f"--batch_size must be positive, got {args.batch_size}")
    saved = {}
    settings_file = args.model_dir / CONTRASTIVE_FILE
    if settings_file.is_file():
        saved = json.loads(settings_file.read_text())
    pooling = PoolingConfig(
        layer=args.layer if args.layer is not None else int(saved.get("layer", -1)),
        pooling=args.pooling or saved.get("pooling", "mean"),
    )
    pooling.validate()
    info = read_unit_vocab(args.model_dir)
    pairs = load_pairs(args.units, args.text, info.num_units)
    device = setup_torch(args.device, args.num_threads)
    model, tokenizer = load_causal_lm(args.model_dir, device=device)
    check_unit_tokens(tokenizer, info, str(args.model_dir))
    ks = (1, 5, 10)
    result = evaluate_retrieval(model, tokenizer, info, pairs, pooling, ks, args.batch_size, device)
    result.update(
        model=str(args.model_dir),
        units=str(args.units),
        text=str(args.text),
        layer=pooling.layer,
        pooling=pooling.pooling,
    )
    atomic_write_text(args.out_json, json.dumps(result, indent=1) + "\n")
    for side in ("speech_to_text", "text_to_speech"):
        r = result[side]
        logger.info(
            "%s: R@1 %.3f, R@5 %.3f, R@10 %.3f, mean rank %.2f", side, r["R@1"], r["R@5"], r["R@10"], r["mean_rank"]
        )
    if args.results_md is not None:
        existing = args.results_md.read_text() if args.results_md.is_file() else ""
        name = args.name or args.model_dir.name
        row = markdown_row(name, args.set_name or args.text.parent.name, result, ks)
        atomic_write_text(args.results_md, update_markdown(existing, row))
        logger.info("added a row to %s", args.results_md)


if __name__ == "__main__":
    main()
