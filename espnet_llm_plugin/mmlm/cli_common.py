"""Options shared by the speech+text LM CLIs (extend_vocab, mmlm_train, contrastive_train,
retrieval_eval). Imports nothing heavy (keeps --help fast): the CLIs apply ``--device`` and
``--num_threads`` with :func:`espnet_llm_plugin.core.device.setup_torch`."""

from __future__ import annotations

import argparse
from pathlib import Path

from espnet_llm_plugin.cli_args import run_cli, str2bool  # noqa: F401 (run_cli: used by the mmlm CLIs)


def add_device_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when available")
    p.add_argument("--num_threads", type=int, default=0, help="CPU threads for torch (0: torch's default)")


def add_finetune_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("fine-tuning")
    g.add_argument(
        "--finetune",
        choices=["lora", "full"],
        default="lora",
        help="lora: adapters (merged into the weights before saving); full: all weights",
    )
    g.add_argument("--lora_r", type=int, default=16)
    g.add_argument("--lora_alpha", type=int, default=16)
    g.add_argument("--lora_dropout", type=float, default=0.05)
    g.add_argument(
        "--train_unit_embeddings",
        type=str2bool,
        default=True,
        help="with lora: also train the unit tokens' embedding rows (text rows fixed)",
    )


def jsonable_args(args: argparse.Namespace) -> dict:
    out = {}
    for key, value in sorted(vars(args).items()):
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[key] = value
    return out
