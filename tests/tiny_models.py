"""Tiny random Hugging Face models for fast tests (one place instead of one per test file).

Real pretrained models are tested too (the ``real_model`` marker); these keep unit tests fast:

    tokenizer = word_level_tokenizer(SPECIALS + WORDS, bos_token="<s>", eos_token="</s>",
                                     unk_token="<unk>", pad_token="<pad>")
    model = tiny_llama(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, ...)
"""

from __future__ import annotations

from typing import Any, Sequence


def word_level_tokenizer(tokens: Sequence[str], unk: str = "<unk>", **special_tokens: Any):
    """A whitespace-split word tokenizer whose ids are the positions in ``tokens`` (specials
    included, e.g. ``("<pad>", "<unk>", "<s>", "</s>", "the", ...)``); ``special_tokens`` are
    ``PreTrainedTokenizerFast`` keywords (``bos_token="<s>"``, ...)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(tokens)}, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special_tokens)


def tiny_llama(seed: int | None = 0, **config: Any):
    """A random ``LlamaForCausalLM`` of ``LlamaConfig(**config)``, initialised after
    ``torch.manual_seed(seed)`` (None: the current RNG state)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**config))
