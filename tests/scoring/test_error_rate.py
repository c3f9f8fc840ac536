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


def test_error_count_is_the_edit_distance_on_random_sequences():
    import random

    import editdistance

    from espnet_llm_plugin.scoring.error_rate import align

    rng = random.Random(0)
    for _ in range(200):
        ref = [rng.choice("abcde") for _ in range(rng.randint(0, 30))]
        hyp = [rng.choice("abcdef") for _ in range(rng.randint(0, 30))]
        a = align(ref, hyp)
        c = align_counts(ref, hyp)
        assert c.errors == editdistance.eval(ref, hyp)
        # the alignment spells out both sequences in order
        assert [r for _, r, _ in a if r is not None] == ref
        assert [h for _, _, h in a if h is not None] == hyp


def test_long_utterance_aligns_fast_enough_for_cer():
    # a 1,461-character utterance took 8 s with a pure-Python alignment; the counts must be exact
    ref = list("the quick brown fox jumps over the lazy dog " * 34)[:1461]
    hyp = ref[:700] + list("xyz") + ref[710:]
    c = align_counts(ref, hyp)
    assert (c.substitutions, c.deletions, c.insertions) == (3, 7, 0) and c.ref_tokens == 1461


def test_sclite_style_alignment_block():
    from espnet_llm_plugin.scoring.error_rate import align, format_alignment

    block = format_alignment("utt1", align("a cat sat".split(), "a bat sat down".split()))
    lines = block.splitlines()
    assert lines[0] == "id: (utt1)"
    assert lines[1] == "Scores: (#C #S #D #I) 2 1 0 1"
    assert lines[2].split() == ["REF:", "a", "CAT", "sat", "****"]
    assert lines[3].split() == ["HYP:", "a", "BAT", "sat", "DOWN"]
    assert lines[4].split() == ["Eval:", "S", "I"]
    # columns line up: each token starts at the same offset on REF and HYP
    assert lines[2].index("CAT") == lines[3].index("BAT") and lines[2].index("****") == lines[3].index("DOWN")
