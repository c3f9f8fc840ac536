"""The options the rescoring CLIs (rescore_nbest, train_mwer) share: the n-best source and the
rescoring LM. Imports nothing heavy (keeps --help fast); what they load from these options is
:mod:`espnet_llm_plugin.rescoring.run_inputs`."""

from __future__ import annotations

import argparse
from pathlib import Path

from espnet_llm_plugin.cli_args import add_text_form_args, str2bool


def add_nbest_source(p: argparse.ArgumentParser, prefix: str = "", required: bool = True, what: str = "") -> None:
    """``--<prefix>nbest_dir`` (ESPnet decode dir with {n}best_recog/) or
    ``--<prefix>nbest_jsonl`` ({utt_id, hyps: [{text, score}]}), one of them."""
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument(
        f"--{prefix}nbest_dir", type=Path, default=None, help=f"{what}ESPnet decode dir with {{n}}best_recog/"
    )
    src.add_argument(
        f"--{prefix}nbest_jsonl",
        type=Path,
        default=None,
        help=f"{what}n-best JSONL ({{utt_id, hyps: [{{text, score}}]}})",
    )
    if not prefix:
        p.add_argument(
            "--first_pass_score",
            choices=("as_is", "total", "per_token"),
            default=None,
            help="read the first-pass scores as total (a per-token list such as Whisper's: score x "
            "num_tokens) or per_token (score / num_tokens); a list's score_info.json says what it holds "
            "(none: total). Default: the LM's kind (total; per_token with --length_norm true), so like is "
            "added to like; as_is keeps the scores as written",
        )


def add_allow_missing(p: argparse.ArgumentParser) -> None:
    """``--allow_missing_nbest``: whether references without an n-best list may be scored as
    all deletions (with a warning naming them) instead of refused."""
    p.add_argument(
        "--allow_missing_nbest",
        type=str2bool,
        default=False,
        help="references without an n-best list count as all deletions (warned) instead of an error",
    )


def add_lm_options(p: argparse.ArgumentParser, lm_help: str) -> None:
    """--lm_path (a local HF causal LM dir), --length_norm, --device, --text_form, --framing."""
    p.add_argument("--lm_path", type=Path, required=True, help=lm_help)
    p.add_argument("--length_norm", type=str2bool, default=False, help="divide LM scores by their token count")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    add_text_form_args(
        p, "the hypotheses (recipe form)", "the LM dir's llm_usage.json, else as they are in <bos> text </s>"
    )
