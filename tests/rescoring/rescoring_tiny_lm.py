"""Build a tiny random Llama + WordLevel tokenizer, saved with save_pretrained, and a copy
extended with speech/unit tokens (``tokenizer.add_special_tokens`` + ``resize_token_embeddings``).

Shared by tests/rescoring and tests/bin (which puts this directory on sys.path)."""

from pathlib import Path
from typing import Dict

import torch
from tiny_models import TINY_SPECIALS, TINY_WORD_LLAMA, TINY_WORDS, tiny_llm

WORDS, SPECIALS = TINY_WORDS, TINY_SPECIALS
NUM_UNITS = 8


def build_tiny_lm_dirs(root: Path) -> Dict[str, Path]:
    from espnet_llm_plugin.core.unit_tokens import unit_token_list

    model, tokenizer = tiny_llm(TINY_SPECIALS + TINY_WORDS, **TINY_WORD_LLAMA)
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


MEMORY = ["the cat sat on the mat", "a dog ran home", "one big red dog ran to the mat"]


def build_knnlm_memory(lm_dir: Path, out_dir: Path) -> Path:
    """A text-only kNN-LM datastore of :data:`MEMORY` keyed by ``lm_dir``, saved with the
    build info ``build_datastore`` records (framing, text form)."""
    from espnet_llm_plugin.retrieval.datastore import FaissDatastore
    from espnet_llm_plugin.retrieval.document_store import Document, iter_windows, text_ids
    from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder

    enc = KeyEncoder(str(lm_dir), device="cpu", batch_size=4)
    docs = [Document(str(i), text_ids(enc.tokenizer, t, enc.framing, enc.text_form)) for i, t in enumerate(MEMORY)]
    keys, values = enc.encode(iter_windows(docs, 6, 3))
    info = {"build": {"framing": enc.framing.to_dict(), "text_form": enc.text_form.to_dict()}}
    FaissDatastore.build(keys, values, enc.identity()).save(out_dir, extra=info)
    return out_dir
