"""Score combination, reranking, weight grid search and the weights YAML."""

import pytest

from espnet_llm_plugin.rescoring.nbest import Hypothesis, NBestError
from espnet_llm_plugin.rescoring.weight_search import (
    CombinationWeights,
    WeightsConfigError,
    grid_search,
    one_best,
    oracle_counts,
    rerank,
    rerank_all,
    weights_counts,
)
from espnet_llm_plugin.scoring.error_rate import score_corpus


def H(text, score, lm):
    return Hypothesis(text, score, {"lm": lm})


REFS = {"u1": "the cat sat", "u2": "a dog ran home", "u3": ""}
NBEST = {
    # first pass prefers a wrong hyp; the LM prefers the right one
    "u1": [H("the cat sad", -1.0, -20.0), H("the cat sat", -1.5, -8.0), H("cat sat", -3.0, -6.0)],
    "u2": [H("a dog ran home", -0.5, -10.0), H("a dog ran", -0.6, -7.0)],
    "u3": [H("", -0.1, -1.0), H("the", -2.0, -3.0)],
}


def test_combination_and_length_bonus():
    w = CombinationWeights(first_pass_weight=2.0, lm_weight=0.5, length_bonus=0.25)
    assert w.combine(H("a b c", -1.0, -4.0)) == pytest.approx(2 * -1.0 + 0.5 * -4.0 + 0.25 * 3)


def test_lm_weight_zero_reproduces_first_pass_exactly():
    # a list not sorted by score and with ties: weight 0 keeps it as it is
    hyps = [H("b", -2.0, -1.0), H("a", -1.0, -50.0), H("c", -2.0, 0.0)]
    assert rerank(hyps, CombinationWeights(1.0, 0.0, 0.0)) == hyps
    assert one_best(NBEST, CombinationWeights()) == {u: h[0].text for u, h in NBEST.items()}
    ranked = rerank_all(NBEST, CombinationWeights())
    assert {u: [h.text for h in hs] for u, hs in ranked.items()} == {u: [h.text for h in hs] for u, hs in NBEST.items()}
    assert ranked["u1"][1].scores["first_pass"] == -1.5 and ranked["u1"][1].score == -1.5


def test_ties_keep_first_pass_order():
    hyps = [H("x", -1.0, -2.0), H("y", -2.0, -1.0), H("z", -1.5, -1.5)]  # all combine to -3 at lm 1
    assert [h.text for h in rerank(hyps, CombinationWeights(1.0, 1.0))] == ["x", "y", "z"]


def test_lm_weight_changes_the_choice():
    assert one_best(NBEST, CombinationWeights(1.0, 0.2))["u1"] == "the cat sat"
    assert one_best(NBEST, CombinationWeights(1.0, 1.0))["u1"] == "cat sat"


def test_grid_search_minimises_wer_and_prefers_small_weights():
    first = weights_counts(NBEST, REFS, CombinationWeights())
    assert first.errors == score_corpus(REFS, one_best(NBEST), "word").errors == 1
    best, table = grid_search(NBEST, REFS, lm_weights=[1.0, 0.0, 0.2, 0.1], length_bonuses=[1.0, 0.0])
    rows = {(r["lm_weight"], r["length_bonus"]): r["errors"] for r in table}
    # by hand: without a length bonus any LM weight that fixes u1 ("sad") breaks u2 (drops
    # "home"); with bonus 1, weights 0.1 and 0.2 get both right; 1.0 breaks u2 again
    assert rows == {(0.0, 0.0): 1, (0.0, 1.0): 1, (0.1, 0.0): 1, (0.1, 1.0): 0,
                    (0.2, 0.0): 1, (0.2, 1.0): 0, (1.0, 0.0): 2, (1.0, 1.0): 1}
    assert best == CombinationWeights(1.0, 0.1, 1.0)  # the smallest weights among the ties
    assert weights_counts(NBEST, REFS, best).errors == 0


def test_oracle_is_a_lower_bound():
    assert oracle_counts(NBEST, REFS).errors == 0
    assert oracle_counts(NBEST, {**REFS, "u4": "extra ref"}).deletions == 2  # no n-best: all deleted


def test_unknown_utterance_is_named():
    with pytest.raises(NBestError, match="'u1' has no reference"):
        grid_search(NBEST, {"u2": "x", "u3": ""}, [0.0])


def test_missing_lm_score_is_an_error():
    with pytest.raises(NBestError, match="no 'lm' score"):
        rerank([Hypothesis("a", -1.0), Hypothesis("b", -2.0)], CombinationWeights(1.0, 0.5))


def test_yaml_round_trip_and_errors(tmp_path):
    w = CombinationWeights(1.0, 0.35, 0.5)
    w.save(tmp_path / "w.yaml", extra={"tuned_on": "dev"})
    assert CombinationWeights.load(tmp_path / "w.yaml") == w
    (tmp_path / "bad.yaml").write_text("first_pass_weight: 1.0\nlm_weight: high\nlength_bonus: 0\n")
    with pytest.raises(WeightsConfigError, match="bad.yaml: key 'lm_weight' must be a number"):
        CombinationWeights.load(tmp_path / "bad.yaml")
    (tmp_path / "miss.yaml").write_text("first_pass_weight: 1.0\n")
    with pytest.raises(WeightsConfigError, match="missing key 'lm_weight'"):
        CombinationWeights.load(tmp_path / "miss.yaml")
    with pytest.raises(WeightsConfigError, match="does not exist"):
        CombinationWeights.load(tmp_path / "none.yaml")


def test_rescoring_a_rescored_list_does_not_compound():
    w = CombinationWeights(1.0, 0.2, 0.5)
    once = rerank_all(NBEST, w)
    twice = rerank_all(once, w)
    assert twice == once
    assert once["u1"][0].scores["first_pass"] == -1.5 and once["u1"][0].score == pytest.approx(-1.5 - 1.6 + 1.5)
