"""Text corpora for LM training: plain sentences or Kaldi text, with clear errors."""

import logging

import pytest

from espnet_llm_plugin.fileio.text_corpus import TextFileError, read_text_lines


def test_plain_and_kaldi_text(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("the cat sat\n\n  a dog ran  \n")
    assert read_text_lines(plain, has_ids=False) == ["the cat sat", "a dog ran"]
    kaldi = tmp_path / "text"
    kaldi.write_text("utt1 the cat sat\nutt2\nutt3 a dog ran\n")
    assert read_text_lines(kaldi, has_ids=True) == ["the cat sat", "a dog ran"]


def test_ids_read_as_text_are_warned_about(tmp_path, caplog):
    kaldi = tmp_path / "text"
    kaldi.write_text("utt1 the cat\nutt2 a dog\n")
    with caplog.at_level(logging.WARNING):
        read_text_lines(kaldi, has_ids=False, option="--dev_text")
    assert "--dev_has_ids true" in caplog.text


def test_errors_name_the_option_and_file(tmp_path):
    with pytest.raises(TextFileError, match="--train_text .*missing.txt: file not found"):
        read_text_lines(tmp_path / "missing.txt", has_ids=False)
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(TextFileError, match="not UTF-8"):
        read_text_lines(latin, has_ids=False)
    empty = tmp_path / "ids_only"
    empty.write_text("utt1\nutt2\n")
    with pytest.raises(TextFileError, match="no non-empty line after the utterance ids"):
        read_text_lines(empty, has_ids=True)
