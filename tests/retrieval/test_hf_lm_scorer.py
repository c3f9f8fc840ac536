"""HfLmScorer: KV-cached batch_score == per-hypothesis score == uncached full-prefix forward."""

import pytest
import torch

from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer, TokenListMismatch

SOS = 3  # ESPnet's sos (= </s> here, as with sym_sos: </s>)


@pytest.fixture(scope="module")
def scorer(tiny_lm):
    return HfLmScorer(str(tiny_lm))


def step_through(scorer, prefixes, batched=True):
    """Feed token by token as beam search does; returns log-probs after each step."""
    n, L = prefixes.shape
    x = torch.zeros(n, 1, 1)
    states = [scorer.init_state(x[0])] * n
    out = []
    for t in range(1, L + 1):
        ys = prefixes[:, :t]
        if batched:
            logp, states = scorer.batch_score(ys, states, x)
        else:
            res = [scorer.score(ys[i], states[i], x[i]) for i in range(n)]
            logp, states = torch.stack([r[0] for r in res]), [r[1] for r in res]
        out.append(logp)
    return out


def test_cached_equals_full_prefix_and_per_hypothesis(scorer):
    g = torch.Generator().manual_seed(0)
    prefixes = torch.cat([torch.full((3, 1), SOS), torch.randint(4, 20, (3, 6), generator=g)], dim=1)
    batched = step_through(scorer, prefixes, batched=True)
    single = step_through(scorer, prefixes, batched=False)
    for t, (b, s) in enumerate(zip(batched, single), 1):
        ref, _ = scorer.full_prefix_scores(prefixes[:, :t])
        torch.testing.assert_close(b, ref, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(s, ref, rtol=1e-4, atol=1e-4)
        assert b.shape == (3, scorer.n_vocab)


def test_beam_reordering_selects_rows(scorer):
    """Hypotheses that swap/duplicate parents (ESPnet's select_state) still score correctly."""
    x = torch.zeros(2, 1, 1)
    ys = torch.tensor([[SOS, 5], [SOS, 6]])
    _, states = scorer.batch_score(ys[:, :1], [None, None], x)
    _, states = scorer.batch_score(ys, states, x)
    # new beam: both children of hypothesis 1, then one of hypothesis 0
    parents = [1, 1, 0]
    new = torch.tensor([[SOS, 6, 7], [SOS, 6, 8], [SOS, 5, 9]])
    sel = [scorer.select_state(states, p) for p in parents]
    logp, hidden, _ = scorer.batch_score_with_hidden(new, sel, torch.zeros(3, 1, 1))
    ref, ref_h = scorer.full_prefix_scores(new)
    torch.testing.assert_close(logp, ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(hidden, ref_h, rtol=1e-4, atol=1e-4)


def test_released_cache_is_recomputed(scorer):
    ys = torch.tensor([[SOS, 5, 6]])
    _, states = scorer.batch_score(ys[:, :2], [None], torch.zeros(1, 1, 1))
    scorer.init_state(None)  # new utterance: caches dropped; the weak ref dies
    import gc

    gc.collect()
    logp, _ = scorer.batch_score(ys, states, torch.zeros(1, 1, 1))
    torch.testing.assert_close(logp, scorer.full_prefix_scores(ys)[0], rtol=1e-4, atol=1e-4)


def test_token_list_check(tiny_lm):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    HfLmScorer(str(tiny_lm), token_list=tokens)
    bad = list(tokens)
    bad[5] = "dog2"
    with pytest.raises(TokenListMismatch, match="id 5: ESPnet 'dog2'"):
        HfLmScorer(str(tiny_lm), token_list=bad)
    with pytest.raises(TokenListMismatch, match="the LM's vocabulary is the shorter one"):
        HfLmScorer(str(tiny_lm), token_list=tokens + ["<sos/eos>"])
    with pytest.raises(TokenListMismatch):
        HfLmScorer(str(tiny_lm), token_list=[])


def test_lm_with_extended_vocabulary_scores_the_asr_tokens(tiny_lm, make_lm, tmp_path):
    """A speech+text LM (text vocabulary + unit tokens) fuses with an ASR model whose token list
    is the text vocabulary: it scores those ids, renormalised, and still reads unit tokens."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_lm)
    tokens = tok.convert_ids_to_tokens(list(range(len(tok))))
    ext = make_lm(tmp_path / "ext", extra_tokens=["<speech>", "</speech>", "<unit_0>", "<unit_1>"])
    sc = HfLmScorer(str(ext), token_list=tokens)
    assert (sc.n_vocab, sc.lm_vocab) == (len(tokens), len(tokens) + 4)
    ys = torch.tensor([[SOS, 5, 6]])
    logp, _ = sc.batch_score(ys, [None], torch.zeros(1, 1, 1))
    assert logp.shape == (1, len(tokens))
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(1))
    # the same order as the LM's full distribution over those ids (a renormalisation)
    full = HfLmScorer(str(ext)).full_prefix_scores(ys)[0][0, : len(tokens)]
    torch.testing.assert_close(logp[0] - logp[0].max(), full - full.max(), rtol=1e-5, atol=1e-5)
    unit0 = len(tokens) + 2
    sc.set_prefix([len(tokens), unit0, len(tokens) + 1])  # <speech><unit_0></speech>
    cached = step_through(sc, torch.tensor([[SOS, 5, 6]]))[-1]
    torch.testing.assert_close(cached, sc.full_prefix_scores(ys)[0], rtol=1e-4, atol=1e-4)


def test_prefix_cached_equals_uncached_over_prefix_plus_hypothesis(tiny_lm):
    scorer = HfLmScorer(str(tiny_lm))
    scorer.set_prefix([5, 6, 7])
    g = torch.Generator().manual_seed(1)
    prefixes = torch.cat([torch.full((2, 1), SOS), torch.randint(4, 20, (2, 4), generator=g)], dim=1)
    batched = step_through(scorer, prefixes)
    for t, b in enumerate(batched, 1):
        ids = torch.cat([torch.tensor([[5, 6, 7]] * 2), prefixes[:, :t]], dim=1)
        ids[:, 3] = scorer.start_id  # the hypothesis' sos -> the LM's start token
        ref = torch.log_softmax(scorer.lm(input_ids=ids).logits[:, -1].float(), -1)
        torch.testing.assert_close(b, ref, rtol=1e-4, atol=1e-4)
    assert len(scorer.prefix_ids) == 3 and scorer._prefix_cache.get_seq_length() == 3  # never extended
    scorer.set_prefix(None)  # back to no prefix
    torch.testing.assert_close(step_through(scorer, prefixes)[-1], scorer.full_prefix_scores(prefixes)[0])
    with pytest.raises(ValueError, match="out of range"):
        scorer.set_prefix([10_000])


# ---------------------------------------------------------------- framing
def test_multi_token_start_is_read_before_every_hypothesis(tiny_lm):
    """framing.start with two tokens: ``[<s>, the] + hypothesis`` (cached == uncached), also
    after a per-utterance prefix (prefix, then the start tokens)."""
    scorer = HfLmScorer(str(tiny_lm), framing={"start": ["<s>", "the"], "end": ["</s>"]})
    tok = scorer.tokenizer
    start = [tok.bos_token_id, tok.convert_tokens_to_ids("the")]
    assert scorer.start_ids == tuple(start)
    g = torch.Generator().manual_seed(2)
    prefixes = torch.cat([torch.full((2, 1), SOS), torch.randint(4, 20, (2, 4), generator=g)], dim=1)
    for prefix in ([], [7, 8]):
        scorer.set_prefix(prefix)
        batched = step_through(scorer, prefixes)
        for t, b in enumerate(batched, 1):
            ids = torch.cat([torch.tensor([prefix + start] * 2, dtype=torch.long), prefixes[:, 1:t]], dim=1)
            ref = torch.log_softmax(scorer.lm(input_ids=ids).logits[:, -1].float(), -1)
            torch.testing.assert_close(b, ref, rtol=1e-4, atol=1e-4)


def test_end_token_other_than_eos_is_scored_at_the_eos_id(tiny_lm):
    """A framing whose texts end with another token than ESPnet's eos: the eos hypothesis gets
    the LM's probability of that end token (the two columns exchanged), and kNN values move
    the same way."""
    legacy = HfLmScorer(str(tiny_lm))
    tok = legacy.tokenizer
    end = tok.convert_tokens_to_ids("home")  # any single token stands for "the text ends"
    eos = tok.eos_token_id
    scorer = HfLmScorer(str(tiny_lm), framing={"end": ["home"]})
    ys = torch.tensor([[SOS, 5, 6], [SOS, 7, 8]])
    a, _ = scorer.batch_score(ys, [None, None], torch.zeros(2, 1, 1))
    b, _ = legacy.batch_score(ys, [None, None], torch.zeros(2, 1, 1))
    torch.testing.assert_close(a[:, eos], b[:, end])
    torch.testing.assert_close(a[:, end], b[:, eos])
    others = [i for i in range(legacy.n_vocab) if i not in (eos, end)]
    torch.testing.assert_close(a[:, others], b[:, others])
    values = torch.tensor([[end, eos, 5, -1]])
    assert scorer.lm_to_scored_ids(values).tolist() == [[eos, end, 5, -1]]
    assert torch.equal(legacy.lm_to_scored_ids(values), values)
    # an explicit ESPnet eos id equal to the end token: nothing to exchange
    same = HfLmScorer(str(tiny_lm), framing={"end": ["home"]}, eos_id=end)
    torch.testing.assert_close(same.batch_score(ys, [None, None], torch.zeros(2, 1, 1))[0], b)


def test_framing_from_llm_usage_and_bad_token(tiny_lm, tmp_path):
    import json
    import shutil

    d = tmp_path / "lm"
    shutil.copytree(tiny_lm, d)
    (d / "llm_usage.json").write_text(json.dumps({"framing": {"start": ["</s>"], "end": ["</s>"]}}))
    scorer = HfLmScorer(str(d))
    assert scorer.start_ids == (scorer.tokenizer.eos_token_id,)
    with pytest.raises(ValueError, match="HfLmScorer framing.*'<nope>'"):
        HfLmScorer(str(tiny_lm), framing={"start": ["<nope>"]})


@pytest.mark.real_model
def test_smollm2_reads_hypotheses_in_its_framing(smollm2_dir, smollm2):
    """SmolLM2 (framing from its llm_usage.json, measured by lm_framing_sweep): the LM reads
    the framing's start tokens (not always its bos, the chat token <|im_start|>), and the eos
    hypothesis (ESPnet's eos = <|im_end|>, the tokenizer's eos) is scored with the LM's
    probability of the framing's first end token."""
    from espnet_llm_plugin.core.framing import resolve_framing

    framing = resolve_framing(None, smollm2_dir, "test")
    model, tok = smollm2
    start, end = framing.start_ids(tok), framing.end_ids(tok)
    scorer = HfLmScorer(str(smollm2_dir))
    assert scorer.start_ids == tuple(start)
    text = tok("The probe reached Titan.", add_special_tokens=False).input_ids
    ys = torch.tensor([[tok.eos_token_id] + text])  # ESPnet sos = eos = <|im_end|>
    logp, _ = scorer.batch_score(ys, [None], torch.zeros(1, 1, 1))
    with torch.no_grad():
        ref = torch.log_softmax(model(input_ids=torch.tensor([start + text])).logits[0, -1].float(), -1)
    assert float(logp[0, tok.eos_token_id]) == pytest.approx(float(ref[end[0]]), abs=1e-3)


def test_x_none_as_for_espnet_lms(scorer):
    """An LM reads no speech: score/batch_score/init_state take x=None (ESPnet's LMs do)."""
    ys = torch.tensor([[SOS, 5, 6], [SOS, 7, 8]])
    ref, _ = scorer.full_prefix_scores(ys)
    state = scorer.init_state(None)
    logp, states = scorer.batch_score(ys, [state, state], None)
    torch.testing.assert_close(logp, ref, rtol=1e-4, atol=1e-4)
    one, _ = scorer.score(ys[1], None, None)
    torch.testing.assert_close(one, ref[1], rtol=1e-4, atol=1e-4)
