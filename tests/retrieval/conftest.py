"""A tiny random Llama + WordLevel tokenizer saved as an HF dir (loaded with from_pretrained)."""

import pytest
from tiny_models import save_tiny_word_llm

WORDS = "the a cat dog sat on mat ran to home big small red blue one two probe moon".split()
SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]


def make_tiny_lm(d, seed=0, hidden=32, extra_tokens=()):
    return save_tiny_word_llm(d, WORDS, seed=seed, extra_tokens=extra_tokens, hidden_size=hidden)


@pytest.fixture(scope="session")
def tiny_lm(tmp_path_factory):
    return make_tiny_lm(tmp_path_factory.mktemp("tiny_lm"))


@pytest.fixture(scope="session")
def memory_file(tmp_path_factory):
    p = tmp_path_factory.mktemp("memory") / "memory.txt"
    p.write_text(
        "the cat sat on the mat\n\nthe big dog ran home\nthe red probe ran to the moon\n"
        "one small cat sat on a big blue mat to the home of the dog\n"
    )
    return p


@pytest.fixture(scope="session")
def make_lm():
    """``make_lm(dir, seed=0, hidden=32, extra_tokens=())`` -> dir with a tiny HF LM."""
    return make_tiny_lm


@pytest.fixture(scope="session")
def smollm2_key_encoder(smollm2_dir):
    """SmolLM2 as key encoder with its own llm_usage.json text form and framing (CPU)."""
    from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder

    return KeyEncoder(str(smollm2_dir), device="cpu", batch_size=16)


@pytest.fixture(scope="session")
def smollm2_target_memory(smollm2_key_encoder):
    """``(datastore, memory sentences, held-out sentences)``: 60 demo target-domain sentences
    (recipe form: lower case, no punctuation) as memory with the default windows, and 12
    target sentences not in it."""
    from espnet_llm_plugin.corpus.sentence_grammar import generate_sentences, generate_target_corpus
    from espnet_llm_plugin.retrieval.datastore import FaissDatastore
    from espnet_llm_plugin.retrieval.document_store import Document, iter_scaled_windows, text_ids
    from espnet_llm_plugin.retrieval.knnlm_settings import DEFAULTS

    enc = smollm2_key_encoder
    memory = generate_target_corpus(60, seed=0)
    held_out = generate_sentences("target", 12, seed=0, exclude=memory)
    docs = [Document(str(i), text_ids(enc.tokenizer, t, enc.framing, enc.text_form)) for i, t in enumerate(memory)]
    keys, values = enc.encode(iter_scaled_windows(docs, DEFAULTS.window, DEFAULTS.stride))
    return FaissDatastore.build(keys, values, enc.identity()), memory, held_out
