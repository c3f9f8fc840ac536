"""Options and helpers shared by the speech+text LM CLIs (extend_vocab, mmlm_train,
contrastive_train, retrieval_eval). Imports nothing heavy at module level (keeps --help fast)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

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


def lora_options(args: argparse.Namespace) -> Any:
    from espnet_llm_plugin.core.finetune import LoraOptions

    return LoraOptions(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout)


def setup_torch(args: argparse.Namespace) -> Any:
    """Threads + device from ``--num_threads``/``--device``; returns the device."""
    import torch

    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    from espnet_llm_plugin.core.device import resolve_device

    return resolve_device(args.device)


def sha256(path: Path) -> str:
    from espnet_llm_plugin.fileio.checksum import sha256_file

    return sha256_file(path)


def jsonable_args(args: argparse.Namespace) -> dict:
    out = {}
    for key, value in sorted(vars(args).items()):
        if isinstance(value, Path):
            value = str(value)
        elif isinstance(value, list):
            value = [str(v) if isinstance(v, Path) else v for v in value]
        out[key] = value
    return out
