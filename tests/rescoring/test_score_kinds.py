"""What an n-best score holds (score_info.json, Hypothesis.score_kind / num_tokens): per-token
lists (Whisper's) become total log scores before an LM's total log-probability is added, so
like is combined with like; a list without a manifest is ESPnet's (total); NaN/inf scores are
refused naming the file and utterance."""

import json

import pytest

from espnet_llm_plugin.bin import rescore_nbest
from espnet_llm_plugin.rescoring.nbest import (
    Hypothesis,
    NBestError,
    convert_score_kind,
    read_espnet_nbest,
    read_nbest,
    read_nbest_jsonl,
    read_score_info,
    resolve_first_pass_score,
    write_espnet_nbest,
    write_nbest_jsonl,
)
from espnet_llm_plugin.rescoring.weight_search import (
    CombinationWeights,
    WeightsConfigError,
    grid_search,
    lm_identity,
    rerank_all,
)


def per_token_list():
    """Per token, "A B C D E" (5 tokens at -0.2) beats "A B" (2 at -0.3); in total
    log-probability (-1.0 against -0.6) it does not."""
    return {
        "u1": [
            Hypothesis("A B C D E", -0.2, num_tokens=5, score_kind="per_token"),
            Hypothesis("A B", -0.3, num_tokens=2, score_kind="per_token"),
        ]
    }


def _per_token_dir(tmp_path):
    d = tmp_path / "whisper"
    write_espnet_nbest(per_token_list(), d, info={"source_model": "whisper-tiny.en", "beam_size": 2})
    return d


def test_manifest_and_counts_round_trip(tmp_path):
    d = _per_token_dir(tmp_path)
    info = read_score_info(d)
    assert info == {"score_kind": "per_token", "source_model": "whisper-tiny.en", "beam_size": 2}
    assert (d / "1best_recog" / "num_tokens").read_text() == "u1 5\n"
    as_is = read_espnet_nbest(d, first_pass_score="as_is")["u1"]
    assert [(h.score, h.num_tokens, h.score_kind) for h in as_is] == [(-0.2, 5, "per_token"), (-0.3, 2, "per_token")]
    # written again as read: the same files
    write_espnet_nbest(read_espnet_nbest(d, first_pass_score="as_is"), tmp_path / "again", info=info)
    for name in ("score_info.json", "1best_recog/score", "2best_recog/num_tokens", "text"):
        assert (tmp_path / "again" / name).read_text() == (d / name).read_text()


def test_per_token_scores_are_read_as_totals_by_default(tmp_path):
    d = _per_token_dir(tmp_path)
    total = read_espnet_nbest(d)["u1"]
    assert [h.score for h in total] == pytest.approx([-1.0, -0.6])
    assert {h.score_kind for h in total} == {"total"}
    back = read_espnet_nbest(d, first_pass_score="per_token")["u1"]
    assert [h.score for h in back] == pytest.approx([-0.2, -0.3])


def test_total_lists_convert_to_per_token_with_espnet_token_counts(tmp_path):
    """ESPnet's own lists have no manifest (total) and no num_tokens file: the count is its
    ``token`` file + 1 (the end token its beam score includes)."""
    d = tmp_path / "espnet"
    write_espnet_nbest({"u1": [Hypothesis("A B", -3.0)]}, d)
    assert read_score_info(d) == {"score_kind": "total"} and not (d / "score_info.json").exists()
    assert read_espnet_nbest(d)["u1"][0].score == -3.0
    assert read_espnet_nbest(d)["u1"][0].num_tokens is None
    with pytest.raises(NBestError, match=r"utterance 'u1': hypothesis 'A B' has a total score but no token count"):
        read_espnet_nbest(d, first_pass_score="per_token")
    (d / "1best_recog" / "token").write_text("u1 ▁A ▁B\n")
    h = read_espnet_nbest(d, first_pass_score="per_token")["u1"][0]
    assert (h.num_tokens, h.score, h.score_kind) == (3, pytest.approx(-1.0), "per_token")


def test_jsonl_carries_kind_and_count(tmp_path):
    write_nbest_jsonl(per_token_list(), tmp_path / "n.jsonl")
    row = json.loads((tmp_path / "n.jsonl").read_text().splitlines()[0])
    assert row["hyps"][0] == {"text": "A B C D E", "score": -0.2, "num_tokens": 5, "score_kind": "per_token"}
    assert read_nbest_jsonl(tmp_path / "n.jsonl")["u1"][0].score_kind == "per_token"
    assert [h.score for h in read_nbest(nbest_jsonl=tmp_path / "n.jsonl")["u1"]] == pytest.approx([-1.0, -0.6])
    mixed = per_token_list()
    mixed["u2"] = [Hypothesis("A", -1.0)]
    (tmp_path / "mixed.jsonl").write_text(
        "".join(
            json.dumps({"utt_id": u, "hyps": [{"text": h.text, "score": h.score, "score_kind": h.score_kind}]}) + "\n"
            for u, hs in mixed.items()
            for h in hs[:1]
        )
    )
    with pytest.raises(NBestError, match=r"mixed.jsonl: scores of different kinds .*'u2'"):
        read_nbest_jsonl(tmp_path / "mixed.jsonl")


def test_like_with_like_in_the_weight_search():
    """The same LM total log-probs pick another 1-best when added to per-token scores. With
    the lists read as totals (the default) the search prefers "A B" (first pass -0.6 + LM -5
    beats -1.0 - 5) at every LM weight; adding the LM's totals to the per-token scores as
    written would pick "A B C D E", the per-token 1-best, at every weight."""
    lm = {"A B C D E": -5.0, "A B": -5.0}
    refs = {"u1": "A B"}
    results = {}
    for kind in ("total", "as_is"):
        nbest = convert_score_kind(per_token_list(), kind, "test")
        for h in nbest["u1"]:
            h.scores["lm"] = lm[h.text]
        weights, _ = grid_search(nbest, refs, [0.5, 1.0], [0.0])
        results[kind] = rerank_all(nbest, weights)["u1"][0].text
        assert rerank_all(nbest, CombinationWeights(lm_weight=1.0))["u1"][0].text == results[kind]
    assert results == {"total": "A B", "as_is": "A B C D E"}


def test_first_pass_kind_follows_the_lm():
    assert resolve_first_pass_score(None, length_norm=False) == "total"
    assert resolve_first_pass_score(None, length_norm=True) == "per_token"
    assert resolve_first_pass_score("as_is", length_norm=False) == "as_is"
    with pytest.raises(NBestError, match="--first_pass_score per_token with --length_norm false would add per_token"):
        resolve_first_pass_score("per_token", length_norm=False)
    with pytest.raises(NBestError, match="first_pass_score must be one of"):
        resolve_first_pass_score("per_word", length_norm=False)


def test_weights_tuned_on_one_kind_are_refused_on_another(tmp_path):
    CombinationWeights(1.0, 0.3, 0.0).save(tmp_path / "w.yaml", extra=lm_identity(tmp_path, first_pass_kind="total"))
    CombinationWeights.load(tmp_path / "w.yaml", lm=lm_identity(tmp_path, first_pass_kind="total"))
    with pytest.raises(WeightsConfigError, match="tuned on total first-pass scores, this run has per_token"):
        CombinationWeights.load(tmp_path / "w.yaml", lm=lm_identity(tmp_path, first_pass_kind="per_token"))


@pytest.mark.parametrize("bad", ["nan", "inf", "tensor(-inf)", "-Infinity"])
def test_non_finite_scores_name_file_and_utterance(tmp_path, bad):
    d = tmp_path / "decode"
    write_espnet_nbest({"u1": [Hypothesis("A", -1.0)], "u9": [Hypothesis("B", -2.0), Hypothesis("C", -3.0)]}, d)
    (d / "2best_recog" / "score").write_text(f"u9 {bad}\n")
    with pytest.raises(NBestError, match=r"2best_recog/score 'u9': score .* is not finite"):
        read_espnet_nbest(d)
    with pytest.raises(NBestError, match=r"utterance 'u1': hypothesis 'A': combined score .* is not finite"):
        CombinationWeights(lm_weight=1.0).combine(
            Hypothesis("A", -1.0, {"lm": float(bad.split("(")[-1].strip(")"))}), utt="u1"
        )


def test_non_finite_lm_scores_name_the_utterance():
    from espnet_llm_plugin.rescoring.lm_scorer import score_nbest

    class NanLm:  # an LM whose forward pass overflowed
        def encode(self, text, units=None):
            return text

        def score_encoded(self, seqs, progress=False):
            return [-1.0 if s == "A" else float("nan") for s in seqs]

    with pytest.raises(NBestError, match=r"LM score 'lm' of utterance 'u2', hypothesis 'B': score nan is not finite"):
        score_nbest(NanLm(), {"u1": [Hypothesis("A", -1.0)], "u2": [Hypothesis("B", -1.0)]})


def test_manifest_errors_are_named(tmp_path):
    d = _per_token_dir(tmp_path)
    (d / "1best_recog" / "num_tokens").write_text("u1 0\n")
    with pytest.raises(NBestError, match=r"1best_recog/num_tokens 'u1': token count '0' is not a positive integer"):
        read_espnet_nbest(d)
    (d / "score_info.json").write_text(json.dumps({"score_kind": "mean"}))
    with pytest.raises(NBestError, match=r"score_info.json: score_kind must be one of"):
        read_espnet_nbest(d)
    (d / "score_info.json").write_text("{")
    with pytest.raises(NBestError, match=r"score_info.json: not valid JSON"):
        read_espnet_nbest(d)
    with pytest.raises(NBestError, match="score_info says 'total', the hypotheses' scores are 'per_token'"):
        write_espnet_nbest(per_token_list(), tmp_path / "x", info={"score_kind": "total"})


def test_rescore_cli_adds_lm_totals_to_totals(lm_dirs, tmp_path):
    """rescore_nbest on a per-token list: the kept first-pass scores are totals (score x
    num_tokens), the output says its kind, the weights record it; asking for per-token
    first-pass scores with total LM scores is refused before the LM loads."""
    d = _per_token_dir(tmp_path)
    (tmp_path / "text").write_text("u1 A B\n")
    common = ["--nbest_dir", d, "--lm_path", lm_dirs["text"], "--weights_config", tmp_path / "w.yaml"]
    rescore_nbest.main([str(a) for a in common + ["--ref_text", tmp_path / "text", "--tune", "true",
                                                  "--lm_weights", "0.001", "--length_bonuses", "0",
                                                  "--out_dir", tmp_path / "out"]])  # fmt: skip
    out = read_nbest_jsonl(tmp_path / "out" / "nbest.jsonl")["u1"]
    assert {h.text: h.scores["first_pass"] for h in out} == pytest.approx({"A B C D E": -1.0, "A B": -0.6})
    assert out[0].text == "A B"  # a tiny LM weight: the total first pass decides, not the per-token one
    assert json.loads((tmp_path / "out" / "wer.json").read_text())["first_pass_kind"] == "total"
    assert "first_pass_kind: total" in (tmp_path / "w.yaml").read_text()
    with pytest.raises(SystemExit):
        rescore_nbest.main([str(a) for a in common + ["--first_pass_score", "per_token", "--out_dir", tmp_path / "o2"]])
    assert not (tmp_path / "o2").exists()
