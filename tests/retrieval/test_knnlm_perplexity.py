"""kNN-LM perplexity: the per-target interpolation equals KnnLmScorer's, and the perplexity of a
text equals what KnnLmScorer gives its tokens step by step in beam-search scoring."""

import math

import numpy as np
import pytest
import torch

from espnet_llm_plugin.retrieval.datastore import FaissDatastore
from espnet_llm_plugin.retrieval.document_store import iter_windows, text_documents
from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer
from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder
from espnet_llm_plugin.retrieval.knnlm_perplexity import (
    collect_events,
    evaluate_grid,
    knnlm_target_logp,
    text_logprobs,
)
from espnet_llm_plugin.retrieval.knnlm_scorer import KnnLmScorer, interpolate_knn, knn_log_probs

TEXTS = [("a", "the cat sat on the mat"), ("b", "a big red dog ran home"), ("c", "two small cats")]


@pytest.mark.parametrize("lam", [0.0, 0.3, 0.8, 1.0])
def test_target_logp_equals_full_vocabulary_interpolation(lam):
    g = torch.Generator().manual_seed(0)
    n, V, k = 6, 30, 5
    lm = torch.log_softmax(torch.randn(n, V, generator=g), -1)
    scores = torch.rand(n, k, generator=g).sort(1).values * 10
    values = torch.randint(0, 8, (n, k), generator=g)  # few tokens: repeats and hits
    values[1, 3:] = -1  # missing neighbours
    values[2] = -1
    targets = torch.tensor([0, 1, 2, 3, 4, 25])
    values[0, 0] = 0  # a hit
    got = knnlm_target_logp(lm.gather(1, targets[:, None])[:, 0].double(), scores, values, targets, lam, 2.0, "l2")
    if lam == 0.0:
        full = lm
    elif lam == 1.0:
        full = knn_log_probs(scores, values, V, 2.0, "l2")
    else:
        full = interpolate_knn(lm, scores, values, lam, 2.0, "l2")
    torch.testing.assert_close(got, full.gather(1, targets[:, None])[:, 0].double(), rtol=1e-6, atol=1e-6)


def test_lambda_zero_is_the_base_exactly():
    lm = torch.tensor([-1.5, -3.25], dtype=torch.float64)
    out = knnlm_target_logp(
        lm, torch.zeros(2, 2), torch.tensor([[1, 2], [3, -1]]), torch.tensor([1, 3]), 0.0, 1.0, "l2"
    )
    assert torch.equal(out, lm)


@pytest.fixture(scope="module")
def setup(tiny_lm, memory_file):
    enc = KeyEncoder(str(tiny_lm), device="cpu", batch_size=2)
    keys, values = enc.encode(iter_windows(text_documents(enc.tokenizer, memory_file), 6, 3))
    return enc, FaissDatastore.build(keys, values, enc.identity())


def test_events_are_the_lm_log_probs_of_framed_texts(setup):
    enc, _ = setup
    ev = collect_events("s", TEXTS, enc)
    tok = enc.tokenizer
    ids = [[tok.bos_token_id] + tok(t, add_special_tokens=False).input_ids + [tok.eos_token_id] for _, t in TEXTS]
    assert ev.n_events == sum(len(i) - 1 for i in ids) and ev.n_texts == 3 and ev.n_words == 6 + 6 + 3
    ref = []
    with torch.no_grad():
        for i in ids:
            lp = torch.log_softmax(enc.model(input_ids=torch.tensor([i])).logits[0, :-1].float(), -1)
            ref += lp.gather(1, torch.tensor(i[1:])[:, None])[:, 0].tolist()
    np.testing.assert_allclose(ev.lm_logp, ref, rtol=1e-5, atol=1e-5)
    # eval windows shorter than a text: each event keeps its context from the window
    short = collect_events("s", TEXTS, enc, eval_window=4, eval_stride=2)
    np.testing.assert_array_equal(short.targets, ev.targets)


@pytest.mark.parametrize("k,lam,temperature", [(4, 0.3, 0.5), (8, 0.7, 0.05), (4, 1.0, 1.0)])
def test_perplexity_equals_knnlm_scorer_in_beam_search_scoring(setup, tiny_lm, k, lam, temperature):
    """The grid's log-prob of each set == the sum of KnnLmScorer.score over the texts' tokens
    (sos = ESPnet's, then the tokens and eos), as beam search would score these hypotheses."""
    enc, ds = setup
    ev = collect_events("s", TEXTS, enc)
    res = evaluate_grid(ev, ds, [k], [lam], [temperature], temperature_scale=ds.distance_scale)
    knn = KnnLmScorer(HfLmScorer(str(tiny_lm)), ds, lam=lam, k=k, temperature=temperature)
    tok = enc.tokenizer
    total = 0.0
    for _, text in TEXTS:
        ys = torch.tensor([tok.eos_token_id] + tok(text, add_special_tokens=False).input_ids + [tok.eos_token_id])
        state = None
        for t in range(1, len(ys)):
            logp, state = knn.score(ys[:t], state, torch.zeros(1, 1))
            total += float(logp[ys[t]])
    got = res["grid"][0]["logprob"]
    if lam == 1.0 and not math.isfinite(total):
        assert got is None and res["grid"][0]["ppl_token"] is None
    else:
        assert got == pytest.approx(total, rel=1e-4, abs=1e-3)
        assert res["grid"][0]["ppl_token"] == pytest.approx(math.exp(-total / ev.n_events), rel=1e-4)
        assert res["grid"][0]["ppl_word"] == pytest.approx(math.exp(-total / (ev.n_words + ev.n_texts)), rel=1e-4)


def test_grid_base_and_best(setup):
    enc, ds = setup
    ev = collect_events("s", TEXTS, enc)
    res = evaluate_grid(ev, ds, [2, 8], [0.0, 0.5], [0.1, 1.0])
    assert len(res["grid"]) == 8
    base = res["base"]["ppl_token"]
    assert all(g["ppl_token"] == base for g in res["grid"] if g["lambda"] == 0.0)
    assert res["best"]["ppl_token"] == min(g["ppl_token"] for g in res["grid"])
    with pytest.raises(ValueError, match="no text"):
        collect_events("empty", [], enc)


def test_framing_end_other_than_eos_scores_alike(tiny_lm, memory_file, tmp_path):
    """An LM dir whose llm_usage.json frames texts with other start/end tokens than ESPnet's
    sos/eos: memory, eval texts and the decoding scorer all follow it, and the perplexity still
    equals what KnnLmScorer gives the hypothesis ``sos text eos`` (end token <-> eos exchanged
    in the LM distribution and in the neighbours' values)."""
    import json
    import shutil

    d = tmp_path / "lm"
    shutil.copytree(tiny_lm, d)
    (d / "llm_usage.json").write_text(
        json.dumps({"framing": {"start": ["</s>"], "end": ["<pad>"]}, "text_form": {"case": "lower"}})
    )
    enc = KeyEncoder(str(d), device="cpu")
    docs = text_documents(enc.tokenizer, memory_file, enc.framing, enc.text_form)
    pad = enc.tokenizer.pad_token_id  # a token no text has (<unk> would be: "cats")
    assert all(doc.ids[-1] == pad and doc.ids[0] == enc.tokenizer.eos_token_id for doc in docs)
    keys, values = enc.encode(iter_windows(docs, 6, 3))
    ds = FaissDatastore.build(keys, values, enc.identity())
    upper = [(i, t.upper()) for i, t in TEXTS]  # recipe form: the LM reads them lower-cased
    ev = collect_events("s", upper, enc)
    res = evaluate_grid(ev, ds, [4], [0.5], [0.3], temperature_scale=ds.distance_scale)
    knn = KnnLmScorer(HfLmScorer(str(d)), ds, lam=0.5, k=4, temperature=0.3)
    tok, eos = enc.tokenizer, enc.tokenizer.eos_token_id
    total = 0.0
    for _, text in TEXTS:
        ys = torch.tensor([eos] + tok(text, add_special_tokens=False).input_ids + [eos])
        state = None
        for t in range(1, len(ys)):
            logp, state = knn.score(ys[:t], state, torch.zeros(1, 1))
            total += float(logp[ys[t]])
    assert res["grid"][0]["logprob"] == pytest.approx(total, rel=1e-4, abs=1e-3)


@pytest.mark.real_model
def test_smollm2_default_windows_beat_the_old_ones_on_a_passage_memory(smollm2_key_encoder):
    """A passage memory (demo grammar) with SmolLM2: the default two-scale windows give a
    lower kNN-LM perplexity than the old single 20-token windows both for utterance-like
    queries (a sentence from the start, as decoding queries) and for held-out passages read
    whole (the kNN-LM paper's setting)."""
    from espnet_llm_plugin.corpus.sentence_grammar import generate_passages
    from espnet_llm_plugin.retrieval.document_store import Document, iter_scaled_windows, text_ids
    from espnet_llm_plugin.retrieval.knnlm_settings import DEFAULTS

    enc = smollm2_key_encoder
    passages = generate_passages(19, seed=0)
    memory, held_out = passages[:16], passages[16:]
    docs = [Document(p["id"], text_ids(enc.tokenizer, p["text"], enc.framing, enc.text_form)) for p in memory]
    sentences = [(f"s{i}", s) for i, p in enumerate(memory[:6]) for s in p["sentences"][1:3]]
    sets = {
        "sentences": collect_events("sentences", sentences, enc),
        "passages": collect_events("passages", [(p["id"], p["text"]) for p in held_out], enc),
    }
    ppl = {}
    for name, (windows, strides) in {"default": (DEFAULTS.window, DEFAULTS.stride), "old": ((20,), (20,))}.items():
        keys, values = enc.encode(iter_scaled_windows(docs, windows, strides))
        ds = FaissDatastore.build(keys, values, enc.identity())
        for set_name, ev in sets.items():
            res = evaluate_grid(ev, ds, [DEFAULTS.k], [DEFAULTS.lam], [DEFAULTS.temperature], ds.distance_scale)
            ppl[name, set_name] = res["grid"][0]["ppl_token"]
            assert ppl[name, set_name] < res["base"]["ppl_token"]
    assert ppl["default", "sentences"] < 0.9 * ppl["old", "sentences"], ppl
    assert ppl["default", "passages"] < 0.9 * ppl["old", "passages"], ppl


@pytest.mark.real_model
def test_smollm2_default_settings_beat_the_old_ones(smollm2_key_encoder, smollm2_target_memory):
    """Held-out target-domain sentences against a memory of the domain: the default k, lambda
    and temperature (relative to the distance scale) give a clearly lower kNN-LM perplexity
    than the old k=16, lambda=0.25, raw temperature 1 (a hard 1-NN on SmolLM2's distances)."""
    from espnet_llm_plugin.retrieval.knnlm_settings import DEFAULTS

    ds, _, held_out = smollm2_target_memory
    ev = collect_events("held_out", [(str(i), t) for i, t in enumerate(held_out)], smollm2_key_encoder)
    new = evaluate_grid(ev, ds, [DEFAULTS.k], [DEFAULTS.lam], [DEFAULTS.temperature], ds.distance_scale)
    old = evaluate_grid(ev, ds, [16], [0.25], [1.0], temperature_scale=1.0)
    assert new["grid"][0]["ppl_token"] < 0.8 * old["grid"][0]["ppl_token"] < 0.8 * old["base"]["ppl_token"]


def test_text_logprobs_are_each_texts_own_events(setup):
    """Per-text totals: the base is the framed text's LM log-prob, lambda 0 gives the base, and
    the kNN-LM totals of a set add up to the grid's log-prob of it, text by text."""
    enc, ds = setup
    texts = [t for _, t in TEXTS]
    base, (knn0,) = text_logprobs(texts, enc, ds, k=4, lams=[0.0], temperature=1.0)
    np.testing.assert_array_equal(base, knn0)
    for i, text in enumerate(texts):
        ev = collect_events("one", [("x", text)], enc)
        assert base[i] == pytest.approx(float(ev.lm_logp.sum()), abs=1e-5)
        scale = ds.distance_scale
        one = evaluate_grid(ev, ds, [4], [0.6], [0.5], temperature_scale=scale)["grid"][0]["logprob"]
        _, knn = text_logprobs([text], enc, ds, k=4, lams=[0.2, 0.6], temperature=0.5 * scale)
        assert knn[1, 0] == pytest.approx(one, abs=1e-5)  # one search serves every lambda
    # scored together or alone, each text gets the same total
    _, (together,) = text_logprobs(texts, enc, ds, k=4, lams=[0.6], temperature=0.5 * ds.distance_scale)
    alone = [text_logprobs([t], enc, ds, k=4, lams=[0.6], temperature=0.5 * ds.distance_scale)[1][0, 0] for t in texts]
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_text_logprobs_favour_what_the_memory_holds(setup):
    enc, ds = setup
    texts = ["the cat sat on the mat", "the mat sat on the cat"]  # in memory / same words, not in it
    base, (knn,) = text_logprobs(texts, enc, ds, k=8, lams=[0.5], temperature=0.1 * ds.distance_scale)
    assert knn[0] - base[0] > knn[1] - base[1]


def test_text_logprobs_name_a_text_with_nothing_to_score(tiny_lm, setup):
    _, ds = setup
    enc = KeyEncoder(str(tiny_lm), device="cpu", framing={"start": [], "end": ["</s>"]})
    with pytest.raises(ValueError, match=r"text 2 \(''\) has no token to score"):
        text_logprobs(["the cat", ""], enc, ds, k=2, lams=[0.5], temperature=1.0)
