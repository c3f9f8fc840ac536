"""N-best I/O: ESPnet decode layout and JSONL, round trips, and clear errors."""

import json

import pytest

from espnet_llm_plugin.rescoring.nbest import (
    Hypothesis,
    NBestError,
    check_known_utterances,
    read_espnet_nbest,
    read_nbest,
    read_nbest_jsonl,
    write_espnet_nbest,
    write_nbest_jsonl,
)


def write_espnet_like(d, rows):
    """rows: {rank: {utt: (text or None, score_str)}} in ESPnet's DatadirWriter style."""
    for rank, entries in rows.items():
        r = d / f"{rank}best_recog"
        r.mkdir(parents=True)
        with open(r / "score", "w") as fs, open(r / "text", "w") as ft, open(r / "token", "w") as fk:
            for utt, (text, score) in entries.items():
                fs.write(f"{utt} {score}\n")
                fk.write(f"{utt} x\n")
                if text is not None:
                    ft.write(f"{utt} {text}\n")


def test_reads_espnet_decode_dir(tmp_path):
    write_espnet_like(
        tmp_path,
        {
            1: {"u1": ("a b c", "tensor(-1.5000)"), "u2": ("", "tensor(-0.2500)"), "u3": (None, "-3.0")},
            2: {"u1": ("a b", "tensor(-2.2500, device='cuda:0')"), "u3": ("x", "-4.0")},
            3: {"u1": ("a", "-7")},
        },
    )
    nb = read_espnet_nbest(tmp_path)
    assert list(nb) == ["u1", "u2", "u3"]
    assert [(h.text, h.score) for h in nb["u1"]] == [("a b c", -1.5), ("a b", -2.25), ("a", -7.0)]
    assert [(h.text, h.score) for h in nb["u2"]] == [("", -0.25)]
    assert [(h.text, h.score) for h in nb["u3"]] == [("", -3.0), ("x", -4.0)]  # no text line: empty


def sample_nbest():
    return {
        "utt_b": [
            Hypothesis("the cat sat", 0.1 + 0.2, {"lm": -12.345678901234567, "ctc": -1e-20}),
            Hypothesis("the cat", -2.0, {"lm": -9.0}),
        ],
        "utt_a": [Hypothesis("", -0.5)],  # noise-only utterance: empty hypothesis
        "utt_c": [Hypothesis("dog ümlaut", -1.0), Hypothesis("dog", -1.0), Hypothesis("", -30.125)],
    }


def test_round_trip_jsonl_espnet_jsonl_is_exact(tmp_path):
    nb = sample_nbest()
    write_nbest_jsonl(nb, tmp_path / "a.jsonl")
    back = read_nbest_jsonl(tmp_path / "a.jsonl")
    assert back == nb and list(back) == list(nb)
    write_espnet_nbest(back, tmp_path / "dec")
    from_dir = read_espnet_nbest(tmp_path / "dec")
    assert from_dir == {u: nb[u] for u in sorted(nb)}
    assert (tmp_path / "dec" / "text").read_text().splitlines() == ["utt_a", "utt_b the cat sat", "utt_c dog ümlaut"]
    write_nbest_jsonl(from_dir, tmp_path / "b.jsonl")
    assert read_nbest_jsonl(tmp_path / "b.jsonl") == nb
    assert read_nbest(nbest_dir=tmp_path / "dec") == from_dir


def test_write_replaces_atomically_and_keeps_old_on_error(tmp_path):
    write_espnet_nbest(sample_nbest(), tmp_path / "dec")
    before = (tmp_path / "dec" / "1best_recog" / "score").read_text()
    with pytest.raises(NBestError, match="invalid score name"):
        write_espnet_nbest({"u": [Hypothesis("a", 1.0, {"bad name": 1.0})]}, tmp_path / "dec")
    assert (tmp_path / "dec" / "1best_recog" / "score").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["dec"]  # no temp dirs left behind


@pytest.mark.parametrize(
    "rows, match",
    [
        ({1: {"u1": ("a", "-1")}, 3: {"u1": ("b", "-2")}}, "not contiguous"),
        ({1: {"u1": ("a", "-1")}, 2: {"u2": ("b", "-2")}}, "'u2' has rank 2 but no rank 1"),
        ({1: {"u1": ("a", "minus one")}}, "'u1'.*not a number"),
    ],
)
def test_bad_decode_dirs(tmp_path, rows, match):
    write_espnet_like(tmp_path, rows)
    with pytest.raises(NBestError, match=match):
        read_espnet_nbest(tmp_path)


def test_text_without_score_and_missing_dir(tmp_path):
    write_espnet_like(tmp_path, {1: {"u1": ("a", "-1")}})
    with open(tmp_path / "1best_recog" / "text", "a") as f:
        f.write("u9 stray\n")
    with pytest.raises(NBestError, match="'u9' has a text but no score"):
        read_espnet_nbest(tmp_path)
    with pytest.raises(NBestError, match="does not exist"):
        read_espnet_nbest(tmp_path / "nope")
    with pytest.raises(NBestError, match="no \\{n\\}best_recog"):
        read_espnet_nbest(tmp_path / "1best_recog")


@pytest.mark.parametrize(
    "line, match",
    [
        (
            '{"utt_id": "u1", "hyps": [{"text": "a", "score": -1}]}\n{"utt_id": "u1", "hyps": []}',
            "duplicate utt_id 'u1'",
        ),
        ('{"utt_id": "u1", "hyps": [{"text": "a"}]}', "no numeric 'score'"),
        ('{"utt_id": "u1"}', "'u1' has no 'hyps'"),
        ('{"hyps": []}', "missing or invalid 'utt_id'"),
        ("not json", "not valid JSON"),
        ('{"utt_id": "u1", "hyps": [{"text": "a", "score": 1, "scores": {"lm": "x"}}]}', "non-numeric"),
    ],
)
def test_bad_jsonl(tmp_path, line, match):
    (tmp_path / "n.jsonl").write_text(line + "\n")
    with pytest.raises(NBestError, match=match):
        read_nbest_jsonl(tmp_path / "n.jsonl")


def test_unknown_utterance_is_named():
    with pytest.raises(NBestError, match="'utt_x'"):
        check_known_utterances({"u1": [], "utt_x": []}, ["u1"], "nbest.jsonl", "ref text")
    check_known_utterances({"u1": []}, ["u1", "u2"], "a", "b")  # a subset is fine


def test_read_nbest_needs_exactly_one_source(tmp_path):
    with pytest.raises(NBestError, match="exactly one"):
        read_nbest()
    with pytest.raises(NBestError, match="exactly one"):
        read_nbest(tmp_path, tmp_path / "x.jsonl")


def test_jsonl_is_one_object_per_line(tmp_path):
    write_nbest_jsonl(sample_nbest(), tmp_path / "n.jsonl")
    rows = [json.loads(line) for line in (tmp_path / "n.jsonl").read_text().splitlines()]
    assert rows[1] == {"utt_id": "utt_a", "hyps": [{"text": "", "score": -0.5}]}


@pytest.mark.parametrize("bad", ["nan", "inf", "-inf", "tensor(nan)", "tensor(-inf, device='cuda:0')"])
def test_non_finite_score_in_decode_dir_is_refused_naming_file_and_utterance(tmp_path, bad):
    write_espnet_like(tmp_path, {1: {"u1": ("a", "-1.0"), "u2": ("b", bad)}})
    with pytest.raises(NBestError, match=r"1best_recog/score 'u2'.*not finite"):
        read_espnet_nbest(tmp_path)


@pytest.mark.parametrize(
    "hyp",
    [
        '{"text": "a", "score": NaN}',
        '{"text": "a", "score": Infinity}',
        '{"text": "a", "score": -1, "scores": {"lm": NaN}}',
    ],
)
def test_non_finite_score_in_jsonl_is_refused_naming_line_and_utterance(tmp_path, hyp):
    p = tmp_path / "n.jsonl"
    p.write_text(f'{{"utt_id": "ok", "hyps": [{{"text": "x", "score": -1}}]}}\n{{"utt_id": "u7", "hyps": [{hyp}]}}\n')
    with pytest.raises(NBestError, match=r"n\.jsonl:2 'u7'.*not finite"):
        read_nbest_jsonl(p)


def test_empty_hypotheses_are_kept_in_both_forms(tmp_path):
    nb = {"u1": [Hypothesis("", -1.0), Hypothesis("a b", -2.0)], "u2": [Hypothesis("x", -1.0), Hypothesis("", -3.0)]}
    write_espnet_nbest(nb, tmp_path / "dec")
    assert read_espnet_nbest(tmp_path / "dec") == nb
    write_nbest_jsonl(nb, tmp_path / "n.jsonl")
    assert read_nbest_jsonl(tmp_path / "n.jsonl") == nb


def test_utterance_without_any_hypothesis_is_refused_not_dropped(tmp_path):
    p = tmp_path / "n.jsonl"
    p.write_text('{"utt_id": "u1", "hyps": [{"text": "", "score": -1}]}\n{"utt_id": "u2", "hyps": []}\n')
    with pytest.raises(NBestError, match=r"n\.jsonl:2: utterance 'u2' has an empty 'hyps' list"):
        read_nbest_jsonl(p)
    with pytest.raises(NBestError, match=r"1 utterance\(s\) have no hypothesis, e\.g\. 'u2'"):
        write_espnet_nbest({"u1": [Hypothesis("", -1.0)], "u2": []}, tmp_path / "dec")
    assert not (tmp_path / "dec").exists()


def test_empty_sources_are_refused(tmp_path):
    (tmp_path / "n.jsonl").write_text("\n")
    with pytest.raises(NBestError, match="holds no utterance"):
        read_nbest_jsonl(tmp_path / "n.jsonl")
    write_espnet_like(tmp_path / "dec", {1: {}})
    with pytest.raises(NBestError, match="lists no utterance"):
        read_espnet_nbest(tmp_path / "dec")


def test_references_without_nbest_are_refused_or_warned(caplog):
    from espnet_llm_plugin.rescoring.nbest import check_refs_covered

    nb = {"u1": [Hypothesis("a", -1.0)]}
    refs = {"u1": "a", "u2": "b c", "u3": "d"}
    with pytest.raises(
        NBestError, match=r"2 of 3 utterance\(s\) in ref\.txt have no n-best list in dec .*: 'u2', 'u3'"
    ):
        check_refs_covered(nb, refs, "dec", "ref.txt")
    with caplog.at_level("WARNING"):
        assert check_refs_covered(nb, refs, "dec", "ref.txt", allow_missing=True) == ["u2", "u3"]
    assert "'u2', 'u3'" in caplog.text and "all deletions" in caplog.text
