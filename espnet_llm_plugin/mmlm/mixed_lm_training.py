"""Train a unit-extended causal LM on mixed text / speech-unit sequences (recipe stage 7).

The loop is :func:`espnet_llm_plugin.lm.causal_lm_pretraining.train_causal_lm` (seeded batches,
warm-up + cosine, dev perplexity, keep-best, resumable safetensors checkpoints); this module
adds what a pretrained, unit-extended LLM needs:

* ``finetune="full"``: every weight trains;
* ``finetune="lora"``: LoRA adapters (``apply_finetune``) on the linear layers, plus, with
  ``train_unit_embeddings``, the embedding rows of the unit tokens (the rows of text tokens get
  a zero gradient and are restored at the end, so with LoRA merged the text embeddings are the
  base model's). Without trainable unit rows a LoRA model could only tell units apart by their
  small random initial differences.

The dev perplexity logged by the loop is over the dev *mixed* sequences (unit tokens included);
its per-word figure counts a whole speech span as one word and means little here. Text-only
perplexity on transcripts: :func:`~espnet_llm_plugin.mmlm.perplexity.text_perplexity`.

After LoRA training the adapters are merged (``merge_and_unload``), so the result is a plain
Hugging Face model that saves with ``save_pretrained``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch

from espnet_llm_plugin.core.finetune import LoraOptions, apply_finetune, parameter_counts
from espnet_llm_plugin.core.hf_causal_lm import unwrap_peft
from espnet_llm_plugin.lm.causal_lm_pretraining import TrainConfig, train_causal_lm
from espnet_llm_plugin.mmlm.unit_vocab import UnitVocabInfo

logger = logging.getLogger(__name__)

FINETUNE_SCHEMES = ("lora", "full")


def embedding_weights(model: torch.nn.Module) -> List[torch.nn.Parameter]:
    """The input embedding weight and, when not tied to it, the output projection's."""

    base = unwrap_peft(model)
    weights = [base.get_input_embeddings().weight]
    out = base.get_output_embeddings()
    if out is not None and out.weight is not weights[0]:
        weights.append(out.weight)
    return weights


def train_only_rows_from(weights: Sequence[torch.nn.Parameter], first_row: int) -> List[Any]:
    """Make ``weights`` trainable but zero the gradient of rows ``< first_row``.

    Returns the hook handles (``.remove()`` them after training).
    """
    handles = []
    for w in weights:
        w.requires_grad_(True)

        def hook(grad: torch.Tensor, first: int = first_row) -> torch.Tensor:
            grad = grad.clone()
            grad[:first] = 0
            return grad

        handles.append(w.register_hook(hook))
    return handles


def prepare_model(
    model: torch.nn.Module,
    finetune: str,
    info: UnitVocabInfo,
    lora: Optional[LoraOptions] = None,
    train_unit_embeddings: bool = True,
) -> Tuple[torch.nn.Module, List[Any], List[torch.Tensor]]:
    """Apply the fine-tuning scheme; ``(model to train, hook handles, saved text rows)``."""
    if finetune not in FINETUNE_SCHEMES:
        raise ValueError(f"finetune must be one of {FINETUNE_SCHEMES}, got {finetune!r}")
    model = apply_finetune(model, finetune, lora, name="speech+text LM")
    handles: List[Any] = []
    saved: List[torch.Tensor] = []
    if finetune == "lora" and train_unit_embeddings:
        weights = embedding_weights(model)
        saved = [w.detach()[: info.base_vocab_size].clone() for w in weights]
        handles = train_only_rows_from(weights, info.base_vocab_size)
        trainable, total = parameter_counts(model)
        fixed = sum(rows.numel() for rows in saved)  # masked: requires_grad but zero gradient
        logger.info(
            "with the unit embedding rows: effectively trainable %s / %s (text embedding rows held fixed)",
            f"{trainable - fixed:,}",
            f"{total:,}",
        )
    return model, handles, saved


def finish_model(model: torch.nn.Module, handles: List[Any], saved_rows: List[torch.Tensor]) -> torch.nn.Module:
    """Remove hooks, restore text rows, merge LoRA: a plain HF model in eval mode."""

    for h in handles:
        h.remove()
    with torch.no_grad():
        for w, rows in zip(embedding_weights(model), saved_rows):
            w[: rows.shape[0]] = rows.to(w.device, w.dtype)  # undo weight decay on text rows
    if unwrap_peft(model) is not model:
        model = model.merge_and_unload()
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval()


def train_mixed_lm(
    model: torch.nn.Module,
    tokenizer: Any,
    info: UnitVocabInfo,
    train_sequences: Sequence[str],
    dev_sequences: Optional[Sequence[str]],
    cfg: TrainConfig,
    finetune: str = "lora",
    lora: Optional[LoraOptions] = None,
    train_unit_embeddings: bool = True,
    ckpt_dir: Optional[Path] = None,
    fingerprint: Optional[Dict[str, Any]] = None,
    device: Optional[torch.device] = None,
) -> Tuple[torch.nn.Module, Dict[str, Any]]:
    """Train on mixed sequences; ``(plain merged HF model, training log)``.

    Args:
        model, tokenizer, info: a unit-extended LM (:func:`~.unit_vocab.extend_with_units`).
        train_sequences, dev_sequences: strings from
            :func:`~.mixed_sequences.build_mixed_sequences`.
        cfg: the optimisation settings of ``train_causal_lm`` (``packing`` concatenates sequences).
        finetune: ``lora`` or ``full``.
        ckpt_dir, fingerprint, device: as in ``train_causal_lm``.
    """
    model, handles, saved = prepare_model(model, finetune, info, lora, train_unit_embeddings)
    fp = {
        "finetune": finetune,
        "lora": vars(lora) if lora else None,
        "train_unit_embeddings": train_unit_embeddings,
        **(fingerprint or {}),
    }
    log = train_causal_lm(
        model, tokenizer, train_sequences, dev_sequences, cfg, ckpt_dir=ckpt_dir, fingerprint=fp, device=device
    )
    return finish_model(model, handles, saved), log
