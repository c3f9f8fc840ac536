"""What an n-best score holds (score_info.json): per-token lists (Whisper's) become total log
scores before an LM's total log-probability is added, so like is combined with like."""

import json

import pytest

from espnet_llm_plugin.bin.merge_decode_dirs import merge_decode_dirs
from espnet_llm_plugin.rescoring.nbest import (
    Hypothesis,
    NBestError,
    read_espnet_nbest,
    read_score_info,
    write_espnet_nbest,
    write_score_info,
)
from espnet_llm_plugin.rescoring.weight_search import CombinationWeights

# per token, "a b c d e" (5 tokens) beats "a b" (2 tokens); in total log-probability it does not
PER_TOKEN = {
    "u1": [
        Hypothesis("A B C D E", -0.2, {"num_tokens": 5.0}),
        Hypothesis("A B", -0.3, {"num_tokens": 2.0}),
    ]
}


def _per_token_dir(tmp_path):
    d = tmp_path / "whisper"
    write_espnet_nbest({u: [Hypothesis(h.text, h.score, dict(h.scores)) for h in hs] for u, hs in PER_TOKEN.items()}, d)
    write_score_info(d, {"score_kind": "per_token", "source": "test"})
    return d


def test_per_token_scores_are_read_as_totals_by_default(tmp_path):
    d = _per_token_dir(tmp_path)
    total = read_espnet_nbest(d)["u1"]
    assert [h.score for h in total] == pytest.approx([-1.0, -0.6])
    assert [h.scores["per_token"] for h in total] == pytest.approx([-0.2, -0.3])
    as_is = read_espnet_nbest(d, first_pass_score="as_is")["u1"]
    assert [h.score for h in as_is] == pytest.approx([-0.2, -0.3])


def test_like_with_like_changes_the_rescored_one_best(tmp_path):
    """The same LM total log-probs pick another 1-best when added to per-token scores: the
    reason the rescorer converts (an LM that scores both hypotheses alike)."""
    weights = CombinationWeights(first_pass_weight=1.0, lm_weight=1.0)
    lm = {"A B C D E": -5.0, "A B": -5.0}
    for kind, best in (("total", "A B"), ("as_is", "A B C D E")):
        hyps = read_espnet_nbest(_per_token_dir(tmp_path / kind), first_pass_score=kind)["u1"]
        for h in hyps:
            h.scores["lm"] = lm[h.text]
        assert max(hyps, key=weights.combine).text == best, kind


def test_lists_without_score_info_are_totals(tmp_path):
    d = tmp_path / "espnet"
    write_espnet_nbest({"u1": [Hypothesis("A", -3.0)]}, d)
    assert read_score_info(d) == {"score_kind": "total"}
    assert read_espnet_nbest(d)["u1"][0].score == -3.0


def test_per_token_without_counts_and_bad_info_are_named(tmp_path):
    d = tmp_path / "no_counts"
    write_espnet_nbest({"u7": [Hypothesis("A", -0.5)]}, d)
    write_score_info(d, {"score_kind": "per_token"})
    with pytest.raises(NBestError, match="utterance 'u7': a per-token score needs its token count"):
        read_espnet_nbest(d)
    (d / "score_info.json").write_text(json.dumps({"score_kind": "mean"}))
    with pytest.raises(NBestError, match=r"score_info.json: score_kind must be one of"):
        read_espnet_nbest(d)
    with pytest.raises(NBestError, match="first_pass_score must be one of"):
        read_espnet_nbest(d, first_pass_score="per_word")


def test_merging_jobs_carries_score_info_and_refuses_a_mix(tmp_path):
    work = tmp_path / "work"
    for j in (1, 2):
        job = work / f"output.{j}"
        write_espnet_nbest({f"u{j}": [Hypothesis("A", -0.5, {"num_tokens": 2.0})]}, job)
        write_score_info(job, {"score_kind": "per_token"})
    merge_decode_dirs(work, tmp_path / "out", 2)
    assert read_score_info(tmp_path / "out")["score_kind"] == "per_token"
    assert [h.score for h in read_espnet_nbest(tmp_path / "out")["u2"]] == [-1.0]
    (work / "output.2" / "score_info.json").unlink()
    with pytest.raises(ValueError, match="score_info.json differ"):
        merge_decode_dirs(work, tmp_path / "out2", 2)
