"""WER/CER alignment counts on hand-made cases."""

import pytest

from espnet_llm_plugin.scoring.error_rate import ErrorCounts, align_counts, score_corpus, tokens


@pytest.mark.parametrize(
    "ref,hyp,s,d,i",
    [
        ("a b c", "a b c", 0, 0, 0),
        ("a b c", "a x c", 1, 0, 0),
        ("a b c", "a c", 0, 1, 0),
        ("a b c", "a b c d", 0, 0, 1),
        ("a b c", "", 0, 3, 0),
        ("", "x y", 0, 0, 2),
        ("a b c d", "x a b d", 0, 1, 1),  # insertion at start, deletion of c
        ("the cat sat", "a cat sat on", 1, 0, 1),
    ],
)
def test_counts(ref, hyp, s, d, i):
    c = align_counts(ref.split(), hyp.split())
    assert (c.substitutions, c.deletions, c.insertions) == (s, d, i)
    assert c.correct == len(ref.split()) - s - d


def test_corpus_rates_and_missing_hypothesis():
    refs = {"u1": "a b c d", "u2": "e f", "u3": ""}
    hyps = {"u1": "a b x d", "u3": "noise"}
    w = score_corpus(refs, hyps, "word")
    assert w.ref_tokens == 6 and w.errors == 1 + 2 + 1
    assert w.error_rate == pytest.approx(100 * 4 / 6)
    assert w.utterances == 3 and w.utterances_with_error == 3


def test_char_units_drop_spaces_and_empty_refs():
    assert tokens("ab c", "char") == ["a", "b", "c"]
    assert ErrorCounts().error_rate == 0.0
    assert ErrorCounts(insertions=1).error_rate == float("inf")
    with pytest.raises(ValueError):
        tokens("x", "phone")
