"""Text perplexity of a Hugging Face causal LM on held-out sentences.

Used to compare a text-only LM with its unit-augmented version on the same transcripts. Each
sentence is scored as ``<s> sentence </s>`` (the predicted tokens include ``</s>``), over the
model's whole vocabulary (unit tokens included, so probability mass an augmented LM puts on
units counts against it). Besides the per-token perplexity, a per-word one (the same total
log-likelihood divided by words + ``</s>``) is comparable across tokenizers.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import torch

from espnet_llm_plugin.lm.causal_lm_pretraining import encode_lines, evaluate, padded_rows


def text_perplexity(
    model: torch.nn.Module,
    tokenizer: Any,
    texts: Sequence[str],
    batch_size: int = 32,
    device: Optional[torch.device] = None,
) -> Dict[str, float]:
    """``{"loss", "ppl", "word_ppl", "tokens", "words", "sentences"}`` over non-empty ``texts``.

    Raises:
        ValueError: no non-empty sentence, or the tokenizer lacks ``<s>``/``</s>``.
    """
    for name in ("bos_token_id", "eos_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"the tokenizer has no {name.replace('_id', '')}")
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise ValueError("no non-empty sentence to compute a perplexity on")
    lines = sorted(encode_lines(tokenizer, texts), key=len)  # similar lengths: less padding
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = padded_rows(lines, max(len(x) for x in lines), pad)
    device = device or next(model.parameters()).device
    result = evaluate(model, rows, batch_size, device)
    words = sum(len(t.split()) + 1 for t in texts)
    word_ppl = math.exp(min(result["loss"] * result["tokens"] / words, 50.0))
    return {
        "loss": result["loss"],
        "ppl": result["ppl"],
        "word_ppl": word_ppl,
        "tokens": result["tokens"],
        "words": words,
        "sentences": len(texts),
    }
