"""Tiny random Hugging Face models for fast tests (one place instead of one per test file).

Real pretrained models are tested too (the ``real_model`` marker); these keep unit tests fast.
A word-level tokenizer whose ids are list positions and a random Llama, saved as a user's LLM is:

    llm_dir = save_tiny_llm(tmp_path / "llm", ["<pad>", "<unk>", "<s>", "</s>", "the", "cat"],
                            hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                            num_attention_heads=4, bos_token_id=2, eos_token_id=3, pad_token_id=0)

``tiny_llm`` returns the same pair in memory; ``word_level_tokenizer`` and ``tiny_llama`` are the
two halves. ``LlamaConfig`` keywords pass through unchanged (its defaults are 7B-sized, so every
test names the sizes it uses); tests import this module as ``from tiny_models import ...``
(``tests/`` is on ``sys.path`` through ``tests/conftest.py``, as for every sibling helper).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL_TOKENS: Mapping[str, str] = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>")
"""The special tokens of ``tiny_llm`` unless it is told otherwise (``PreTrainedTokenizerFast``
keywords); most tests put them first in the vocabulary: ``<pad>`` 0, ``<unk>`` 1, ``<s>`` 2, ``</s>`` 3."""


def word_level_tokenizer(tokens: Sequence[str], unk: str = "<unk>", **special_tokens: Any) -> PreTrainedTokenizerFast:
    """A whitespace-split word tokenizer whose ids are the positions in ``tokens`` (specials
    included, e.g. ``("<pad>", "<unk>", "<s>", "</s>", "the", ...)``); ``special_tokens`` are
    ``PreTrainedTokenizerFast`` keywords (``bos_token="<s>"``, ...)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(tokens)}, unk_token=unk))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special_tokens)


def tiny_llama(seed: int | None = 0, **config: Any) -> LlamaForCausalLM:
    """A random ``LlamaForCausalLM`` of ``LlamaConfig(**config)``, initialised after
    ``torch.manual_seed(seed)`` (None: the current RNG state)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    if seed is not None:
        torch.manual_seed(seed)
    return LlamaForCausalLM(LlamaConfig(**config))


def tiny_llm(
    tokens: Sequence[str],
    *,
    seed: int | None = 0,
    special_tokens: Mapping[str, str] = SPECIAL_TOKENS,
    extra_tokens: Sequence[str] = (),
    **config: Any,
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerFast]:
    """``(model, tokenizer)``: ``word_level_tokenizer(tokens, **special_tokens)``, plus
    ``extra_tokens`` added as additional special tokens (ids after ``tokens``), and
    ``tiny_llama(seed, **config)`` whose ``vocab_size`` is ``len(tokenizer)`` unless given."""
    tokenizer = word_level_tokenizer(tokens, **special_tokens)
    if extra_tokens:
        tokenizer.add_special_tokens({"additional_special_tokens": list(extra_tokens)})
    config.setdefault("vocab_size", len(tokenizer))
    return tiny_llama(seed, **config), tokenizer


def save_tiny_llm(out_dir: str | Path, tokens: Sequence[str], **kwargs: Any) -> Path:
    """Save ``tiny_llm(tokens, **kwargs)`` (tokenizer, then model) with ``save_pretrained`` to
    ``out_dir``, loadable with ``from_pretrained`` as a user's LLM is; return ``out_dir``."""
    model, tokenizer = tiny_llm(tokens, **kwargs)
    tokenizer.save_pretrained(out_dir)
    model.save_pretrained(out_dir)
    return Path(out_dir)


# The word-level tiny Llama most component tests share: 20 tokens, hidden 32, 2 layers, 4 heads
# (2 KV heads), <s>/</s> as bos/eos, and a large initializer range so that its distributions are
# peaky (beam searches meet no near-ties).
TINY_WORDS = "the a cat dog sat on mat ran to home big small red blue one two".split()
TINY_SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
TINY_PAD, TINY_BOS, TINY_EOS = 0, 2, 3
TINY_WORD_LLAMA = dict(
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=128,
    bos_token_id=TINY_BOS,
    eos_token_id=TINY_EOS,
    pad_token_id=TINY_PAD,
    initializer_range=0.3,
)


def save_tiny_word_llm(out_dir: str | Path, words: Sequence[str] = TINY_WORDS, **overrides: Any) -> Path:
    """``save_tiny_llm`` of ``TINY_SPECIALS + words`` with ``TINY_WORD_LLAMA`` updated by
    ``overrides`` (``seed``, ``extra_tokens`` and any config key)."""
    return save_tiny_llm(out_dir, TINY_SPECIALS + list(words), **{**TINY_WORD_LLAMA, **overrides})
