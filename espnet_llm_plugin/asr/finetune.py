"""Fine-tuning schemes for a pretrained part (speech encoder or LLM): frozen | lora | full.

LoRA goes through peft, so adapters save and load like any peft model. Defaults follow
arXiv 2406.17272: encoder LoRA r=8, alpha=16; LLM LoRA r=16, alpha=16.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch

logger = logging.getLogger(__name__)

SCHEMES = ("frozen", "lora", "full")


@dataclass
class LoraOptions:
    """peft ``LoraConfig`` fields we expose in YAML."""

    r: int = 16
    alpha: int = 16
    dropout: float = 0.05
    # None: peft's default for known architectures, else every nn.Linear
    target_modules: Optional[List[str]] = field(default=None)


def parameter_counts(module: torch.nn.Module) -> Tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in module.parameters())
    trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return trainable, total


def _linear_module_names(module: torch.nn.Module) -> List[str]:
    names = {name.split(".")[-1] for name, m in module.named_modules() if isinstance(m, torch.nn.Linear)}
    return sorted(names)


def apply_finetune(
    module: torch.nn.Module,
    scheme: str,
    lora: Optional[LoraOptions] = None,
    name: str = "module",
) -> torch.nn.Module:
    """Prepare ``module`` for training under ``scheme``; returns the module to use.

    Args:
        module: a pretrained torch / Hugging Face module.
        scheme: ``frozen`` (no gradients), ``lora`` (peft LoRA adapters only), ``full``.
        lora: LoRA options (used when ``scheme == "lora"``).
        name: for log and error messages (``"encoder"``, ``"llm"``).

    Returns:
        ``module`` itself (frozen/full) or a peft-wrapped module (lora).
    """
    if scheme not in SCHEMES:
        raise ValueError(f"{name}: finetune scheme must be one of {SCHEMES}, got {scheme!r}")
    if scheme == "frozen":
        for p in module.parameters():
            p.requires_grad_(False)
    elif scheme == "full":
        for p in module.parameters():
            p.requires_grad_(True)
    else:
        from peft import LoraConfig, get_peft_model

        opts = lora or LoraOptions()
        targets = opts.target_modules
        if targets is None:
            targets = _linear_module_names(module)
            # output projections to the vocabulary are not adapted
            targets = [t for t in targets if t not in ("lm_head",)]
        if not targets:
            raise ValueError(f"{name}: no nn.Linear modules to put LoRA adapters on")
        config = LoraConfig(
            r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=targets
        )
        try:
            module = get_peft_model(module, config)
        except ValueError as e:
            raise ValueError(f"{name}: LoRA target_modules {targets} do not match: {e}") from e
    trainable, total = parameter_counts(module)
    logger.info(
        "%s: finetune=%s, trainable parameters %s / %s (%.2f%%)",
        name, scheme, f"{trainable:,}", f"{total:,}", 100.0 * trainable / max(total, 1),
    )
    return module
