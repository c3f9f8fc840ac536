"""Train a byte-level BPE tokenizer on transcripts, offline, with the ``tokenizers`` library.

The result is a ``transformers.PreTrainedTokenizerFast`` with ``<s>``/``</s>``/``<unk>``/
``<pad>`` set; ``tokenizer.save_pretrained(dir)`` writes a directory that
``AutoTokenizer.from_pretrained(dir)`` loads, the same way a user's pretrained LLM tokenizer is
loaded.

Choices, and why:

* Byte-level BPE (GPT-2 style): every string encodes, whatever its characters, so a transcript
  of another corpus never maps to ``<unk>``; the 256 byte symbols are always in the vocabulary.
* A prefix space is added before the first word and stripped again on decode (Llama-style): a
  word gets the same tokens at the start of a sentence as in its middle, and
  ``decode(encode(text)) == text`` for text without leading/trailing/double spaces.
* No special tokens are added by ``tokenizer(text)``: callers put ``bos_token_id`` /
  ``eos_token_id`` where they need them (the LM trainer adds both around every line).
* Deterministic: the BPE trainer breaks ties by pair order, and the input order is the caller's.
"""

from __future__ import annotations

import logging
from typing import Iterable, List

from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

logger = logging.getLogger(__name__)

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"
# Llama's order for the first three (unk=0, bos=1, eos=2); pad last.
SPECIAL_TOKENS: List[str] = [UNK, BOS, EOS, PAD]
# Byte alphabet + special tokens: the smallest vocabulary a byte-level BPE can have.
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int = 1000,
    min_frequency: int = 2,
    lowercase: bool = False,
    model_max_length: int = 2048,
) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer on ``texts`` (one sentence per item).

    Args:
        texts: training sentences, used in the given order (same input -> same tokenizer).
        vocab_size: upper bound on the vocabulary, special tokens and the 256 bytes included;
            a small corpus may yield fewer (no merge below ``min_frequency`` is learnt).
        min_frequency: a pair must occur this often to be merged.
        lowercase: add a lower-casing normaliser (for corpora whose transcripts are
            lower-case; then ``encode`` of mixed-case text is lower-cased, too).
        model_max_length: stored in the tokenizer config (the LM's context length).

    Raises:
        ValueError: ``vocab_size`` below :data:`MIN_VOCAB_SIZE`, or no non-empty text.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE needs at least "
            f"{MIN_VOCAB_SIZE} (256 bytes + {len(SPECIAL_TOKENS)} special tokens)"
        )
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        raise ValueError("no non-empty text to train a tokenizer on")

    tok = Tokenizer(models.BPE(unk_token=UNK))
    if lowercase:
        tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True, use_regex=True)
    # ByteLevel joins the pieces into one string; Strip then removes the added prefix space.
    tok.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer, length=len(texts))
    logger.info(
        "trained a byte-level BPE tokenizer on %d sentences: %d tokens (asked for %d)",
        len(texts),
        tok.get_vocab_size(),
        vocab_size,
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        model_max_length=model_max_length,
        padding_side="right",
        # the default clean-up rewrites " ." -> "." and would break the round trip
        clean_up_tokenization_spaces=False,
    )
