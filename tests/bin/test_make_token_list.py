"""make_token_list: ESPnet token list layout, empty transcripts skipped, errors."""

import pytest

from espnet_llm_plugin.bin.make_token_list import build_token_list, read_sentences
from espnet_llm_plugin.fileio.kaldi_data import DataDirError


def test_bpe_token_list_round_trips_text(tmp_path):
    import sentencepiece as spm

    text = tmp_path / "text"
    lines = [
        f"u{i} the quick brown fox number {w} jumps" for i, w in enumerate("one two three four five six".split() * 20)
    ]
    text.write_text("\n".join(lines) + "\nnoise1\n")
    sentences = read_sentences(text, has_ids=True)
    assert len(sentences) == len(lines)  # empty transcript skipped
    tokens = build_token_list(sentences, tmp_path / "tok", "bpe", vocab_size=25)
    assert tokens[0] == "<blank>" and tokens[1] == "<unk>" and tokens[-1] == "<sos/eos>"
    assert len(set(tokens)) == len(tokens)
    assert (tmp_path / "tok" / "tokens.txt").read_text().split("\n")[:2] == ["<blank>", "<unk>"]
    sp = spm.SentencePieceProcessor(model_file=str(tmp_path / "tok" / "bpe.model"))
    pieces = sp.encode("the quick fox", out_type=str)
    assert all(p in tokens for p in pieces)
    assert sp.decode(pieces) == "the quick fox"


def test_char_list(tmp_path):
    tokens = build_token_list(["ab a", "b"], tmp_path / "c", "char", vocab_size=0)
    assert tokens == ["<blank>", "<unk>", "a", "b", "<space>", "<sos/eos>"]


def test_only_empty_transcripts_is_an_error(tmp_path):
    (tmp_path / "text").write_text("n1\nn2\n")
    with pytest.raises(DataDirError, match="no non-empty transcript"):
        read_sentences(tmp_path / "text", has_ids=True)
