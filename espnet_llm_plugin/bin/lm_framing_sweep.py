"""Measure an LLM's perplexity of your text under several framings and text forms.

Which tokens should surround a transcript (the tokenizer's bos, ``<|endoftext|>``, nothing;
its eos, ``<|endoftext|>``, a period first, the chat template) and in which case should the LLM
read it (UPPER as ESPnet recipes keep it, lower, sentence case, with a final period)? This
scores every combination on your sentences and prints a table sorted by word perplexity (text
plus end, per recipe word: comparable across forms), writes it as JSON, and prints the
``llm_usage.json`` content to put beside the LLM (``text_form`` and ``framing``; the lowest
word perplexity among framings with a single end token, the one ESPnet's beam search can stop
on). Each sentence is taken in the recipe's form (as in its ``text`` file).

Example::

    python -m espnet_llm_plugin.bin.lm_framing_sweep --llm_path exp/llm \\
        --text data/test/text --has_ids true --max_sentences 200 --out framing_sweep.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging, str2bool

PROG = "python -m espnet_llm_plugin.bin.lm_framing_sweep"


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("lm_framing_sweep", __doc__)
    p.add_argument("--llm_path", type=Path, required=True, help="local Hugging Face causal LM dir")
    p.add_argument(
        "--text", type=Path, required=True, help="sentences: plain lines, or a Kaldi text file with --has_ids true"
    )
    p.add_argument("--has_ids", type=str2bool, default=False, help="lines start with an utterance id (Kaldi text)")
    p.add_argument("--max_sentences", type=int, default=0, help="use the first N (0: all)")
    p.add_argument(
        "--chat_prompt",
        default="Transcribe the speech.",
        help="user turn of the chat-template row ('' for an empty turn)",
    )
    p.add_argument("--no_chat", action="store_true", help="skip the chat-template row")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--device", default="cpu", help="torch device, e.g. cuda")
    p.add_argument("--out", type=Path, default=None, help="JSON with every row and the recommendation")
    add_debug_arg(p)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.debug)
    if args.max_sentences < 0 or args.batch_size < 1:
        sys.exit(f"{PROG}: error: --max_sentences must be >= 0 and --batch_size >= 1")

    from espnet_llm_plugin.core.hf_causal_lm import LlmLoadError, load_causal_lm
    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.fileio.text_corpus import TextFileError, read_text_lines
    from espnet_llm_plugin.lm.framing_sweep import format_table, recommend, sweep

    with cli_errors(PROG, args.debug, (TextFileError, LlmLoadError, ValueError)):
        texts = read_text_lines(args.text, args.has_ids, option="--text")
        model, tokenizer = load_causal_lm(args.llm_path)
    if args.max_sentences:
        texts = texts[: args.max_sentences]
    model = model.to(args.device).eval()
    rows, notes = sweep(
        model,
        tokenizer,
        texts,
        chat_prompt=None if args.no_chat else args.chat_prompt,
        batch_size=args.batch_size,
    )
    for note in notes:
        logging.info("%s", note)
    usage = recommend(rows)
    print(f"{len(texts)} sentences, {rows[0].words} words, LLM {args.llm_path}\n")
    print(format_table(rows))
    print("\nrecommended llm_usage.json (beside the LLM):")
    print(json.dumps(usage, indent=2))
    if args.out is not None:
        record = {
            "llm_path": str(args.llm_path),
            "text": str(args.text),
            "sentences": len(texts),
            "rows": [r.to_dict() for r in rows],
            "notes": notes,
            "recommended": usage,
        }
        atomic_write_text(args.out, json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
