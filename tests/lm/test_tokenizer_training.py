"""Byte-level BPE tokenizer training: round trip, special tokens, determinism, save/load."""

import subprocess
import sys

import pytest
from transformers import AutoTokenizer

from espnet_llm_plugin.lm.tokenizer_training import MIN_VOCAB_SIZE, train_tokenizer

CORPUS = [
    "anna is busy now",
    "peter wants to write a long letter",
    "the cat sat on the mat",
    "we were sitting behind the tree ten days ago",
    "you waited for five minutes",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(CORPUS, vocab_size=320)


def test_round_trip_lower_case(tokenizer):
    for text in CORPUS[:5] + ["an unseen sentence, with zebras!", "x", "é ü 😀 ok"]:
        ids = tokenizer(text)["input_ids"]
        assert tokenizer.decode(ids) == text
    # merges were learnt: a frequent word is one token, with the same tokens mid-sentence
    assert len(tokenizer("the")["input_ids"]) == 1
    assert tokenizer("the cat")["input_ids"][:1] == tokenizer("the")["input_ids"]
    assert tokenizer("on the")["input_ids"][1:] == tokenizer("the")["input_ids"]


def test_special_tokens(tokenizer):
    specials = {
        "<unk>": tokenizer.unk_token_id,
        "<s>": tokenizer.bos_token_id,
        "</s>": tokenizer.eos_token_id,
        "<pad>": tokenizer.pad_token_id,
    }
    assert specials == {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}
    # the caller adds <s>/</s> where needed; a plain call adds nothing
    ids = tokenizer("anna is busy")["input_ids"]
    assert not set(ids) & set(specials.values())
    assert tokenizer.decode([1, *ids, 2], skip_special_tokens=True) == "anna is busy"
    assert MIN_VOCAB_SIZE <= len(tokenizer) <= 320


def test_deterministic_across_processes(tokenizer):
    """Same input -> same tokenizer, also in another process (other hash seeds)."""
    code = (
        "from espnet_llm_plugin.lm.tokenizer_training import train_tokenizer\n"
        f"t = train_tokenizer({CORPUS!r}, vocab_size=320)\n"
        "print(t.backend_tokenizer.to_str())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == tokenizer.backend_tokenizer.to_str()
    assert train_tokenizer(CORPUS, vocab_size=320).backend_tokenizer.to_str() == out


def test_save_and_auto_load(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    text = "peter wants to write a long letter ."
    assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert loaded.decode(loaded(text)["input_ids"]) == text
    assert (loaded.bos_token_id, loaded.eos_token_id, loaded.pad_token_id, loaded.unk_token_id) == (1, 2, 3, 0)
    batch = loaded(["a b", "the cat sat"], padding=True)
    assert batch["input_ids"][0][-1] == loaded.pad_token_id  # right padding
    assert not list(tmp_path.glob("*.bin")) and not list(tmp_path.glob("*.pkl"))


def test_lowercase_option():
    tok = train_tokenizer(CORPUS, vocab_size=300, lowercase=True)
    assert tok.decode(tok("Anna IS busy")["input_ids"]) == "anna is busy"


def test_bad_arguments():
    with pytest.raises(ValueError, match="vocab_size=100 is too small"):
        train_tokenizer(CORPUS, vocab_size=100)
    with pytest.raises(ValueError, match="no non-empty text"):
        train_tokenizer(["", "  "], vocab_size=300)
