"""Fixtures for the speech+text LM tests: a tiny Llama + byte-level BPE tokenizer, saved as a
Hugging Face directory (loaded back through from_pretrained, as a user's LLM is)."""

import pytest
from mmlm_data import SENTENCES

from espnet_llm_plugin.lm.causal_lm_pretraining import LmConfig, build_llama, save_pretrained_dir
from espnet_llm_plugin.lm.tokenizer_training import train_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return train_tokenizer(SENTENCES * 3, vocab_size=300)


def make_tiny_lm(tokenizer, seed=0):
    return build_llama(
        tokenizer, LmConfig(hidden_size=32, num_layers=2, num_heads=2, max_position_embeddings=512), seed=seed
    )


@pytest.fixture(scope="session")
def tiny_lm_dir(tmp_path_factory, tiny_tokenizer):
    d = tmp_path_factory.mktemp("mmlm") / "base_lm"
    save_pretrained_dir(d, make_tiny_lm(tiny_tokenizer), tiny_tokenizer)
    return d


@pytest.fixture(autouse=True)
def one_torch_thread():
    """Tiny models run fastest on one thread (and far faster on a busy machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
