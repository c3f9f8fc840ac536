"""Mixed text / unit sequences from a units file and a Kaldi text."""

import pytest

from espnet_llm_plugin.fileio.kaldi_data import DataDirError
from espnet_llm_plugin.mmlm.mixed_sequences import (
    MixRatios,
    PairedUtterance,
    UnitTextMismatchError,
    build_mixed_sequences,
    format_sequence,
    load_pairs,
    pair_units_with_text,
)


def test_format_sequence_hand_made():
    assert format_sequence("text", [1, 2], "hi there") == "hi there"
    assert format_sequence("unit_to_text", [1, 2], "hi there") == "<speech><unit_1><unit_2></speech> hi there"
    assert format_sequence("text_to_unit", [7], "hi") == "hi <speech><unit_7></speech>"
    with pytest.raises(ValueError, match="out of range"):
        format_sequence("unit_to_text", [4], "hi", num_units=4)
    with pytest.raises(ValueError, match="kind"):
        format_sequence("speech", [1], "hi")


def test_pairs_from_files_and_mixing(tmp_path):
    (tmp_path / "units").write_text("b 3 4\na 1 2\nc\nd 5\n")
    (tmp_path / "text").write_text("a hello world\nb good day\nc short\nd\n")
    pairs = load_pairs(tmp_path / "units", tmp_path / "text", num_units=8)
    # units-file order; c has no units, d an empty transcript: both skipped
    assert pairs == [PairedUtterance("b", (3, 4), "good day"), PairedUtterance("a", (1, 2), "hello world")]

    only_u2t = build_mixed_sequences(pairs, MixRatios(0, 1, 0))
    assert only_u2t == [
        ("unit_to_text", "<speech><unit_3><unit_4></speech> good day"),
        ("unit_to_text", "<speech><unit_1><unit_2></speech> hello world"),
    ]
    only_t2u = build_mixed_sequences(pairs, MixRatios(0, 0, 1), extra_texts=["more text", " "])
    assert only_t2u == [
        ("text_to_unit", "good day <speech><unit_3><unit_4></speech>"),
        ("text_to_unit", "hello world <speech><unit_1><unit_2></speech>"),
        ("text", "more text"),
    ]
    assert build_mixed_sequences(pairs, MixRatios(1, 0, 0)) == [("text", "good day"), ("text", "hello world")]


def test_mix_is_seeded_and_follows_the_ratios():
    pairs = [PairedUtterance(f"u{i}", (i % 5,), f"text {i}") for i in range(600)]
    a = build_mixed_sequences(pairs, MixRatios(1, 2, 1), seed=3)
    assert a == build_mixed_sequences(pairs, MixRatios(1, 2, 1), seed=3)
    assert a != build_mixed_sequences(pairs, MixRatios(1, 2, 1), seed=4)
    counts = {k: sum(kind == k for kind, _ in a) for k in ("text", "unit_to_text", "text_to_unit")}
    assert 100 < counts["text"] < 200 and 240 < counts["unit_to_text"] < 360


def test_mix_ratio_parsing():
    assert MixRatios.parse("text=1,unit_to_text=2") == MixRatios(1.0, 2.0, 0.0)
    for bad in ("text=-1", "speech=1", "text=x", "text=0", "text"):
        with pytest.raises(ValueError):
            MixRatios.parse(bad)


def test_mismatched_ids_name_the_utterances(tmp_path):
    with pytest.raises(
        UnitTextMismatchError,
        match=r"1 in U but not in T \(e.g. x\).*1 in T "
        r"but not in U \(e.g. y\)",
    ):
        pair_units_with_text({"a": [1], "x": [2]}, {"a": "hi", "y": "yo"}, "U", "T")
    assert issubclass(UnitTextMismatchError, ValueError)


def test_unit_ids_out_of_range_are_refused(tmp_path):
    (tmp_path / "units").write_text("a 1 9\n")
    (tmp_path / "text").write_text("a hi\n")
    with pytest.raises(DataDirError, match="'a' has unit id 9"):
        load_pairs(tmp_path / "units", tmp_path / "text", num_units=8)


def test_extra_units_are_speech_only_sequences():
    seqs = build_mixed_sequences([], MixRatios.parse("text=1"), extra_units=[[1, 2], [], [0]], num_units=3)
    assert seqs == [("units", "<speech><unit_1><unit_2></speech>"), ("units", "<speech><unit_0></speech>")]
