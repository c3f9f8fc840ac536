"""Build a tiny random Llama + WordLevel tokenizer, saved with save_pretrained, and a copy
extended with speech/unit tokens (``tokenizer.add_special_tokens`` + ``resize_token_embeddings``).

Shared by tests/rescoring and tests/bin (which puts this directory on sys.path)."""

from pathlib import Path
from typing import Dict

import torch
from tiny_models import tiny_llama, word_level_tokenizer

WORDS = "the a cat dog sat on mat ran to home big small red blue one two".split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
NUM_UNITS = 8


def build_tiny_lm_dirs(root: Path) -> Dict[str, Path]:
    from espnet_llm_plugin.core.unit_tokens import unit_token_list

    tokenizer = word_level_tokenizer(
        SPECIALS + WORDS, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    model = tiny_llama(
        0,
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
        initializer_range=0.3,
    )
    text_dir = root / "text_lm"
    model.save_pretrained(text_dir)
    tokenizer.save_pretrained(text_dir)

    tokenizer.add_special_tokens({"additional_special_tokens": unit_token_list(NUM_UNITS)})
    model.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():  # make the unit embeddings distinct, so units change the scores
        emb = model.get_input_embeddings().weight
        emb[-NUM_UNITS - 2 :] = 0.5 * torch.randn(
            NUM_UNITS + 2, emb.shape[1], generator=torch.Generator().manual_seed(1)
        )
    st_dir = root / "speech_text_lm"
    model.save_pretrained(st_dir)
    tokenizer.save_pretrained(st_dir)
    return {"text": text_dir, "speech_text": st_dir}
