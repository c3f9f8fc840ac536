"""Score combination, reranking, weight grid search and the weights YAML."""

import pytest

from espnet_llm_plugin.rescoring.nbest import Hypothesis, NBestError
from espnet_llm_plugin.rescoring.weight_search import (
    CombinationWeights,
    WeightsConfigError,
    grid_search,
    grid_search_scorings,
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
    assert rows == {
        (0.0, 0.0): 1,
        (0.0, 1.0): 1,
        (0.1, 0.0): 1,
        (0.1, 1.0): 0,
        (0.2, 0.0): 1,
        (0.2, 1.0): 0,
        (1.0, 0.0): 2,
        (1.0, 1.0): 1,
    }
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
    with pytest.raises(WeightsConfigError, match="bad.yaml: key 'lm_weight' must be a finite number"):
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


@pytest.mark.parametrize("bad_lm", [float("nan"), float("inf")])
def test_non_finite_combined_score_is_refused_naming_the_utterance(bad_lm):
    # NaN compares false with everything, so the sort used to keep it first (the worst, picked)
    nb = {"u9": [H("wrong", -1.0, bad_lm), H("right", -1.5, -8.0)]}
    with pytest.raises(NBestError, match=r"utterance 'u9': hypothesis 'wrong'.*not finite"):
        rerank_all(nb, CombinationWeights(1.0, 0.5, 0.0))
    with pytest.raises(NBestError, match="u9"):
        one_best(nb, CombinationWeights(1.0, 0.5, 0.0))


def test_non_finite_weights_are_refused(tmp_path):
    (tmp_path / "w.yaml").write_text("first_pass_weight: 1.0\nlm_weight: .nan\nlength_bonus: 0\n")
    with pytest.raises(WeightsConfigError, match="w.yaml: key 'lm_weight' must be a finite number"):
        CombinationWeights.load(tmp_path / "w.yaml")
    with pytest.raises(ValueError, match="not finite"):
        grid_search(NBEST, REFS, [0.0, float("nan")])


def test_grid_search_refuses_empty_inputs():
    with pytest.raises(NBestError, match="no n-best hypotheses"):
        grid_search({}, REFS, [0.0, 0.5])
    with pytest.raises(NBestError, match="no references"):
        grid_search(NBEST, {}, [0.0, 0.5])


def _lm_dir(root, name, content):
    d = root / name
    d.mkdir()
    (d / "model.safetensors").write_bytes(content)
    return d


def test_weights_tuned_for_another_lm_are_refused_naming_both(tmp_path):
    from espnet_llm_plugin.rescoring.weight_search import lm_identity

    lm_a = _lm_dir(tmp_path, "lm_a", b"weights of a")
    lm_b = _lm_dir(tmp_path, "lm_b", b"weights of b")
    w = CombinationWeights(1.0, 0.3, 0.5)
    w.save(tmp_path / "w.yaml", extra={"tuned_on": "dev", **lm_identity(lm_a)})
    assert CombinationWeights.load(tmp_path / "w.yaml", lm=lm_identity(lm_a)) == w
    with pytest.raises(WeightsConfigError, match=r"w\.yaml: weights were tuned for LM .*lm_a .*but the LM is .*lm_b"):
        CombinationWeights.load(tmp_path / "w.yaml", lm=lm_identity(lm_b))
    # same weights elsewhere (a copied LM): the content hash says it is the same LM
    copy = _lm_dir(tmp_path, "copy_of_a", b"weights of a")
    assert CombinationWeights.load(tmp_path / "w.yaml", lm=lm_identity(copy)) == w
    # same LM, scored differently
    with pytest.raises(WeightsConfigError, match="length_norm=False, this run has length_norm=True"):
        CombinationWeights.load(tmp_path / "w.yaml", lm=lm_identity(lm_a, length_norm=True))


def test_weights_without_lm_record_are_accepted_with_a_warning(tmp_path, caplog):
    from espnet_llm_plugin.rescoring.weight_search import lm_identity

    w = CombinationWeights(1.0, 0.3, 0.5)
    w.save(tmp_path / "old.yaml", extra={"tuned_on": "dev"})
    with caplog.at_level("WARNING"):
        assert CombinationWeights.load(tmp_path / "old.yaml", lm=lm_identity(_lm_dir(tmp_path, "lm", b"x"))) == w
    assert "records no LM identity" in caplog.text


def test_grid_search_over_scorings_picks_the_scoring_with_fewest_errors():
    useless = {u: [H(h.text, h.score, 0.0) for h in hyps] for u, hyps in NBEST.items()}  # LM says nothing
    # an LM that knows the references: 0 for them, -100 for anything else
    oracle = {u: [H(h.text, h.score, 0.0 if h.text == REFS[u] else -100.0) for h in hyps] for u, hyps in NBEST.items()}
    best, weights, table = grid_search_scorings([useless, oracle], [0.1, 0.9], "lam", REFS, [0.0, 1.0])
    assert best == 1 and weights.lm_weight == 1.0
    assert [row["lam"] for row in table] == [0.1, 0.1, 0.9, 0.9]
    # a tie keeps the first scoring
    assert grid_search_scorings([NBEST, NBEST], ["a", "b"], "x", REFS, [1.0])[0] == 0
    with pytest.raises(ValueError, match="one label per scoring"):
        grid_search_scorings([NBEST], [1, 2], "x", REFS, [1.0])
