"""Kaldi data directories: reading, writing, and errors that name file and utterance."""

import pytest

from espnet_llm_plugin.fileio.kaldi_data import DataDirError, load_data_dir, read_scp, write_scp


def _make(tmp_path, wav="a x.wav\nb y.wav\n", text="a hello world\nb\n", utt2spk="a s1\nb s1\n"):
    d = tmp_path / "data"
    d.mkdir()
    (d / "wav.scp").write_text(wav)
    if text is not None:
        (d / "text").write_text(text)
    if utt2spk is not None:
        (d / "utt2spk").write_text(utt2spk)
    return d


def test_round_trip_and_empty_transcript_is_valid(tmp_path):
    d = _make(tmp_path)
    data = load_data_dir(d)
    assert data.text == {"a": "hello world", "b": ""}
    out = tmp_path / "copy"
    data.write(out)
    again = load_data_dir(out)
    assert again.text == data.text and again.wav_scp == data.wav_scp
    assert read_scp(out / "spk2utt") == {"s1": "a b"}


def test_ids_differing_between_wav_scp_and_text_are_named(tmp_path):
    d = _make(tmp_path, text="a hi\nc there\n")
    with pytest.raises(DataDirError) as e:
        load_data_dir(d)
    msg = str(e.value)
    assert "only in" in msg and "'b'" in msg and "'c'" in msg and "text" in msg


def test_missing_and_empty_transcript_files(tmp_path):
    d = _make(tmp_path, text=None)
    with pytest.raises(DataDirError, match="text: transcript file not found"):
        load_data_dir(d)
    assert load_data_dir(d, require_text=False).text is None
    (d / "text").write_text("")
    with pytest.raises(DataDirError, match="text: the transcript file is empty"):
        load_data_dir(d)


def test_duplicate_key_and_missing_value_name_line(tmp_path):
    p = tmp_path / "wav.scp"
    p.write_text("a x.wav\na y.wav\n")
    with pytest.raises(DataDirError, match=r"wav.scp:2: duplicate key 'a'"):
        read_scp(p)
    p.write_text("a x.wav\nb\n")
    with pytest.raises(DataDirError, match=r"wav.scp:2: utterance 'b' has no value"):
        read_scp(p)


def test_segments_must_refer_to_known_recordings(tmp_path):
    d = _make(tmp_path, wav="rec1 r.wav\n", text="u1 hi\n", utt2spk="u1 s\n")
    (d / "segments").write_text("u1 rec2 0.0 1.0\n")
    with pytest.raises(DataDirError, match="recording 'rec2'"):
        load_data_dir(d)
    (d / "segments").write_text("u1 rec1 1.0 0.5\n")
    with pytest.raises(DataDirError, match="not after begin"):
        load_data_dir(d)
    (d / "segments").write_text("u1 rec1 0.0 0.5\n")
    assert load_data_dir(d).utt_ids == ["u1"]


def test_write_scp_sorts_and_rejects_keys_with_spaces(tmp_path):
    p = tmp_path / "x.scp"
    write_scp(p, [("b", "2"), ("a", "1")])
    assert p.read_text() == "a 1\nb 2\n"
    with pytest.raises(DataDirError, match="invalid key"):
        write_scp(p, [("a b", "1")])
    assert p.read_text() == "a 1\nb 2\n"  # untouched


def test_latin1_text_names_file_line_and_encoding(tmp_path):
    d = _make(tmp_path)
    (d / "text").write_bytes("a hello\nb caf\u00e9 au lait\n".encode("latin-1"))
    with pytest.raises(DataDirError, match=r"text:2: not UTF-8 \(byte 0xe9 at column 6\).*must be UTF-8"):
        load_data_dir(d)


def test_byte_order_mark_is_shown_in_the_id_mismatch(tmp_path):
    d = _make(tmp_path)
    (d / "text").write_bytes("\ufeffa hello world\nb\n".encode("utf-8"))
    with pytest.raises(DataDirError) as e:
        load_data_dir(d)
    msg = str(e.value)
    assert "'\\ufeffa'" in msg and "byte-order mark" in msg


@pytest.mark.parametrize(
    "line, match",
    [
        ("u1 rec -0.5 1.0", r"segment 'u1': begin -0.5 is negative"),
        ("u1 rec 0.5 -2", r"segment 'u1': end -2.0 is negative"),
        ("u1 rec nan 1.0", r"segment 'u1'.*must be finite"),
    ],
)
def test_bad_segment_times_name_the_segment(tmp_path, line, match):
    d = _make(tmp_path, wav="rec x.wav\n", text="u1 hi\n", utt2spk="u1 s\n")
    (d / "segments").write_text(line + "\n")
    with pytest.raises(DataDirError, match=match):
        load_data_dir(d)
