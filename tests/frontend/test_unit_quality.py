"""unit_quality: edit-distance measures on hand-made unit sequences."""

import pytest

from espnet_llm_plugin.frontend.unit_quality import normalized_edit_distance, unit_quality


def test_normalized_edit_distance():
    assert normalized_edit_distance([1, 2, 3], [1, 2, 3]) == 0.0
    assert normalized_edit_distance([1, 2, 3, 4], [1, 2]) == 0.5
    assert normalized_edit_distance([], []) == 0.0


def test_content_units_separate_same_from_different_text():
    # units = a per-word code with a speaker-dependent insertion: content dominates
    words = {w: i for i, w in enumerate("the cat dog sat ran on mat far away home".split())}
    sents = ["the cat sat on the mat", "the dog ran far away", "cat ran home", "dog sat on mat"]
    units, text, spk = {}, {}, {}
    for s_i, s in enumerate(sents):
        for v in range(3):
            utt = f"s{s_i}v{v}"
            seq = []
            for w in s.split():
                seq += [words[w] * 2, words[w] * 2 + 1] + ([30 + v] if w == "the" else [])
            units[utt], text[utt], spk[utt] = seq, s, f"v{v}"
    text["empty"], units["empty"] = "", [1, 2]
    rep = unit_quality(units, text, spk, num_units=40, num_pairs=200, seed=0)
    st = rep["same_text"]
    assert rep["utterances"] == 12 and st["transcripts_repeated"] == 4
    assert st["mean_ned_same_text"] < st["mean_ned_diff_text"]
    assert st["abx_accuracy"] > 0.9 and st["abx_accuracy_length_matched"] > 0.9
    assert rep["text_correlation"]["all"]["spearman_text_vs_units"] > 0.5


def test_no_repeats_and_too_little_data():
    rep = unit_quality({"a": [1, 2], "b": [2, 3], "c": [1]}, {"a": "x", "b": "y", "c": "z z"})
    assert rep["same_text"] is None and "no transcript" in rep["same_text_note"]
    with pytest.raises(ValueError, match="at least 2"):
        unit_quality({"a": [1]}, {"a": "x", "b": "y"})
