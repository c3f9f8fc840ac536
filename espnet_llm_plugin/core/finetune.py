"""Fine-tuning schemes for a pretrained part (speech encoder or LLM): frozen | lora | full.

LoRA goes through peft, so adapters save and load like any peft model. Defaults follow
arXiv 2406.17272: encoder LoRA r=8, alpha=16; LLM LoRA r=16, alpha=16.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch
from peft import LoraConfig, get_peft_model

from espnet_llm_plugin.core.hf_causal_lm import unwrap_peft

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


def keep_lora_unquantized(module: torch.nn.Module) -> int:
    """Exclude peft's LoRA adapter layers from dynamic quantization; returns how many.

    ESPnet's ``--quantize_asr_model`` runs ``torch.quantization.quantize_dynamic`` over every
    ``nn.Linear`` of the model, LoRA's ``lora_A``/``lora_B`` included; peft's LoRA forward then
    reads ``lora_A.weight.dtype``, which a quantized Linear (``weight()`` is a method) lacks.
    ``qconfig = None`` on a module is how torch's quantization is told to leave it alone: the
    base layers are quantized, the small adapters stay in float and are added as in training.
    """
    count = 0
    for m in module.modules():
        for key in ("lora_A", "lora_B"):
            adapters = getattr(m, key, None)
            if isinstance(adapters, torch.nn.ModuleDict):
                for adapter in adapters.values():
                    adapter.qconfig = None
                    count += 1
    return count


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
        opts = lora or LoraOptions()
        targets = opts.target_modules
        if targets is None:
            targets = _linear_module_names(module)
            # output projections to the vocabulary are not adapted
            targets = [t for t in targets if t not in ("lm_head",)]
        if not targets:
            raise ValueError(f"{name}: no nn.Linear modules to put LoRA adapters on")
        config = LoraConfig(r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=targets)
        try:
            module = get_peft_model(module, config)
        except ValueError as e:
            raise ValueError(f"{name}: LoRA target_modules {targets} do not match: {e}") from e
        keep_lora_unquantized(module)
    trainable, total = parameter_counts(module)
    logger.info(
        "%s: finetune=%s, trainable parameters %s / %s (%.2f%%)",
        name,
        scheme,
        f"{trainable:,}",
        f"{total:,}",
        100.0 * trainable / max(total, 1),
    )
    return module


def enable_gradient_checkpointing(
    model: torch.nn.Module, name: str = "module", checkpoint_kwargs: Optional[Dict[str, Any]] = None
) -> None:
    """Recompute each Transformer layer's activations during backward instead of keeping them.

    With a trainable adapter in front of the LLM, gradients flow through every LLM layer under
    all three schemes, so the activations saved for backward dominate training memory, and LoRA
    alone saves little (only the weight gradients and optimizer state of the base weights).
    Checkpointing keeps only each layer's input and recomputes the rest in backward: about one
    more forward pass of compute for activation memory that no longer grows with the depth.

    Uses Hugging Face's own switch, which checkpoints every ``GradientCheckpointingLayer``
    (decoder / encoder layers) and acts only in training mode with gradients enabled, so
    evaluation and KV-cached decoding (``torch.no_grad``) are unaffected. Non-reentrant
    ``torch.utils.checkpoint`` is used: it passes gradients to inputs that require them even
    when no parameter inside the layer does (frozen or LoRA base weights; the reentrant variant
    needs inputs that require grad for that), and it restores the RNG state, so dropout masks in
    the recomputation equal those of the forward pass: losses and gradients are those without
    checkpointing, up to floating-point summation order.

    Args:
        model: a Hugging Face ``PreTrainedModel``; a peft wrapper is unwrapped (LoRA layers are
            injected in place, so they are recomputed with the rest).
        name: for log and error messages (``"encoder"``, ``"LlmDecoder (decoder_conf)"``).
        checkpoint_kwargs: more ``torch.utils.checkpoint.checkpoint`` arguments (e.g. a
            ``context_fn``); ``use_reentrant`` is always False.

    Raises:
        ValueError: the model does not support gradient checkpointing.
    """

    hf = unwrap_peft(model)
    if not getattr(hf, "supports_gradient_checkpointing", False):
        raise ValueError(
            f"{name}: gradient_checkpointing is not supported by {type(hf).__name__} "
            f"(Hugging Face supports_gradient_checkpointing is False); set it to false"
        )
    kwargs: Dict[str, Any] = {**(checkpoint_kwargs or {}), "use_reentrant": False}
    if hasattr(hf, "activation_checkpointing_enable"):
        # later transformers 5.x name; gradient_checkpointing_enable is a deprecated alias there
        hf.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        hf.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)
    logger.info(
        "%s: gradient checkpointing on (non-reentrant, every layer): activations are recomputed "
        "in backward while training",
        name,
    )


def finetune_pretrained_encoder(
    model: torch.nn.Module, scheme: str, lora: LoraOptions, gradient_checkpointing: bool
) -> Tuple[torch.nn.Module, bool]:
    """A pretrained speech encoder prepared for training: :func:`apply_finetune` under ``scheme``,
    then gradient checkpointing where asked for and useful (not when ``frozen``: no backward
    runs through it).

    Returns:
        ``(module to use, whether checkpointing is on)``.
    """
    model = apply_finetune(model, scheme, lora=lora, name="encoder")
    checkpointing = bool(gradient_checkpointing) and scheme != "frozen"
    if checkpointing:
        enable_gradient_checkpointing(model, name="encoder (encoder_conf)")
    elif gradient_checkpointing:
        logger.info("encoder: gradient_checkpointing ignored with finetune=frozen (no backward through it)")
    return model, checkpointing


def lora_initial_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """A copy of ``module``'s LoRA adapter tensors as peft initialised them (B = 0), for
    restoring them when the pretrained weights are reloaded."""
    return {k: v.detach().clone() for k, v in module.state_dict().items() if ".lora_" in k}
