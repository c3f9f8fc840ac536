"""LmScorer: log p(text) and log p(text | units), batched = one-by-one, clear errors."""

import pytest
import torch

from espnet_llm_plugin.core.device import DeviceError
from espnet_llm_plugin.rescoring.lm_scorer import LmScorer, LmScorerError, check_units_cover, score_nbest
from espnet_llm_plugin.rescoring.nbest import Hypothesis

TEXTS = ["the cat sat on the mat", "", "a dog", "big red dog ran home to the small blue mat", "one"]


@pytest.fixture(scope="module")
def text_scorer(lm_dirs):
    return LmScorer.from_pretrained(str(lm_dirs["text"]), device="cpu", batch_size=4)


@pytest.fixture(scope="module")
def st_scorer(lm_dirs):
    return LmScorer.from_pretrained(str(lm_dirs["speech_text"]), device="cpu", batch_size=4)


def reference_logprob(scorer, ids, num_context):
    """Unbatched, by hand: sum of log_softmax at each scored position."""
    with torch.no_grad():
        logp = torch.log_softmax(scorer.model(torch.tensor([ids])).logits[0].float(), -1)
    return sum(float(logp[t - 1, ids[t]]) for t in range(num_context, len(ids)))


def test_text_score_is_sum_of_token_logprobs_incl_eos(text_scorer):
    tok = text_scorer.tokenizer
    enc = text_scorer.encode("the cat")
    assert enc.ids == [tok.bos_token_id, *tok.convert_tokens_to_ids(["the", "cat"]), tok.eos_token_id]
    assert enc.num_context == 1
    [score] = text_scorer.score(["the cat"])
    assert score == pytest.approx(reference_logprob(text_scorer, enc.ids, 1), abs=1e-5)
    assert text_scorer.encode("").ids == [tok.bos_token_id, tok.eos_token_id]  # empty: log p(</s> | <s>)


def test_batched_scores_equal_one_by_one(lm_dirs, text_scorer):
    one = LmScorer(text_scorer.model, text_scorer.tokenizer, batch_size=1)
    assert text_scorer.score(TEXTS) == pytest.approx(one.score(TEXTS), abs=1e-5)
    units = [[1, 2, 3], [0], [7, 7, 1, 2], [], [5] * 20]
    st = LmScorer.from_pretrained(str(lm_dirs["speech_text"]), device="cpu", batch_size=3)
    st1 = LmScorer(st.model, st.tokenizer, batch_size=1)
    assert st.score(TEXTS, units) == pytest.approx(st1.score(TEXTS, units), abs=1e-5)


def test_speech_text_score_uses_the_units(st_scorer):
    tok = st_scorer.tokenizer
    enc = st_scorer.encode("the cat", [3, 1])
    assert tok.convert_ids_to_tokens(enc.ids) == [
        "<s>",
        "<speech>",
        "<unit_3>",
        "<unit_1>",
        "</speech>",
        "the",
        "cat",
        "</s>",
    ]
    assert enc.num_context == 5  # only "the cat </s>" is scored
    a, b, c = st_scorer.score(["the cat"] * 3, [[3, 1], [3, 1], [6, 0, 2]])
    assert a == pytest.approx(b, abs=1e-5) and a != pytest.approx(c, abs=1e-3)
    assert a == pytest.approx(reference_logprob(st_scorer, enc.ids, 5), abs=1e-5)


def test_length_norm(text_scorer):
    norm = LmScorer(text_scorer.model, text_scorer.tokenizer, length_norm=True)
    raw, n = text_scorer.score(["the cat sat"])[0], norm.score(["the cat sat"])[0]
    assert n == pytest.approx(raw / 4)  # 3 words + </s>


def test_lm_without_unit_tokens_is_a_clear_error(text_scorer):
    with pytest.raises(LmScorerError, match="no speech/unit tokens.*<speech>"):
        text_scorer.score(["the cat"], [[1, 2]])


def test_unit_beyond_the_vocabulary(st_scorer):
    with pytest.raises(LmScorerError, match="<unit_99>"):
        st_scorer.encode("the", [99])


def test_score_nbest_and_units_coverage(st_scorer):
    nb = {"u1": [Hypothesis("the cat", -1.0), Hypothesis("a cat", -2.0)], "u2": [Hypothesis("", -0.5)]}
    out = score_nbest(st_scorer, nb, {"u1": [1, 2], "u2": [3], "u9": [0]})
    assert set(out["u1"][0].scores) == {"lm"} and "lm" not in nb["u1"][0].scores  # input untouched
    assert out["u1"][1].scores["lm"] == pytest.approx(st_scorer.score(["a cat"], [[1, 2]])[0], abs=1e-5)
    with pytest.raises(LmScorerError, match="units.txt: no units for 1 of 2.*'u2'"):
        check_units_cover(nb, {"u1": [1], "other": [2]}, "units.txt")


def test_bad_device_and_batch(text_scorer):
    with pytest.raises(LmScorerError, match="batch_size"):
        LmScorer(text_scorer.model, text_scorer.tokenizer, batch_size=0)
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match="no CUDA"):
            LmScorer.from_pretrained("x", device="cuda")


@pytest.mark.gpu
def test_gpu_scores_match_cpu(lm_dirs, text_scorer):
    gpu = LmScorer.from_pretrained(str(lm_dirs["text"]), device="cuda", batch_size=4)
    assert gpu.score(TEXTS) == pytest.approx(text_scorer.score(TEXTS), abs=1e-3)


# ---------------------------------------------------------------- text form and framing
def test_recipe_form_hypotheses_are_read_in_the_lm_form(lm_dirs, text_scorer):
    """An upper-case (recipe-form) hypothesis is lower-cased before tokenising (this LM's
    vocabulary is lower case), framed with the chosen start/end tokens; the score covers the
    text and all end tokens."""
    scorer = LmScorer.from_pretrained(
        str(lm_dirs["text"]),
        device="cpu",
        text_form={"case": "lower"},
        framing={"start": ["</s>"], "end": ["<pad>", "</s>"]},
    )
    tok = scorer.tokenizer
    enc = scorer.encode("THE CAT")
    assert tok.convert_ids_to_tokens(enc.ids) == ["</s>", "the", "cat", "<pad>", "</s>"] and enc.num_context == 1
    [score] = scorer.score(["THE CAT"])
    assert score == pytest.approx(reference_logprob(scorer, enc.ids, 1), abs=1e-5)
    # as it is, the upper-case words are unknown to the LM
    assert tok.unk_token_id in text_scorer.encode("THE CAT").ids
    # units: the text part is mapped, the span is not
    st = LmScorer.from_pretrained(str(lm_dirs["speech_text"]), device="cpu", text_form={"case": "lower"})
    assert st.encode("THE CAT", [3]).ids == st.encode("the cat", [3]).ids


def test_text_form_and_framing_from_llm_usage(lm_dirs, tmp_path):
    import json
    import shutil

    d = tmp_path / "lm"
    shutil.copytree(lm_dirs["text"], d)
    (d / "llm_usage.json").write_text(json.dumps({"text_form": {"case": "lower"}, "framing": {"end": ["</s>"]}}))
    scorer = LmScorer.from_pretrained(str(d), device="cpu")
    assert scorer.text_form.case == "lower" and scorer.encode("THE CAT").ids == scorer.encode("the cat").ids
    with pytest.raises(ValueError, match="rescoring LM --framing"):
        LmScorer.from_pretrained(str(d), device="cpu", framing={"ends": ["</s>"]})
    with pytest.raises(LmScorerError, match="no end token"):
        LmScorer.from_pretrained(str(d), device="cpu", framing={"end": []})


@pytest.mark.real_model
def test_smollm2_scores_an_upper_case_hypothesis_in_its_text_form(smollm2_dir, smollm2):
    """A recipe-form UPPER hypothesis is scored as SmolLM2 reads text best (its llm_usage.json
    text form, e.g. sentence case): the score equals that of the mapped text read as it is, and
    is far higher than reading the upper-case string (upper case splits into rare pieces)."""
    from espnet_llm_plugin.core.framing import resolve_framing
    from espnet_llm_plugin.core.text_form import resolve_text_form

    model, tok = smollm2
    form = resolve_text_form(None, smollm2_dir, "test")
    framing = resolve_framing(None, smollm2_dir, "test")
    assert form.to_llm("THE PROBE REACHED TITAN") != "THE PROBE REACHED TITAN", "SmolLM2's usage file has no text form"
    scorer = LmScorer(model, tok, framing=framing, text_form=form)
    as_is = LmScorer(model, tok, framing=framing)
    hyps = [
        "THE PROBE REACHED TITAN",
        "DOCTOR OKONKWO SAID THE ROVER LANDED ON EUROPA",
        "HE DRANK A GLASS OF COFFEE THIS MORNING",
    ]
    got = scorer.score(hyps)
    assert got == pytest.approx(as_is.score([form.to_llm(h) for h in hyps]), abs=1e-4)
    assert sum(got) > sum(as_is.score(hyps)) + 20  # nats (measured: ~75 for sentence case)
    # the default of from_pretrained is the usage file's text form
    assert LmScorer.from_pretrained(str(smollm2_dir), device="cpu").score(hyps) == pytest.approx(got, abs=1e-4)
