"""KnnLmScorer: lambda=0 is the base LM; batched == per hypothesis; kNN distribution; beam search."""

import math

import numpy as np
import pytest
import torch

from espnet_llm_plugin.retrieval.datastore import FaissDatastore
from espnet_llm_plugin.retrieval.document_store import iter_windows, text_documents
from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer
from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder
from espnet_llm_plugin.retrieval.knnlm_scorer import KnnLmScorer, interpolate_knn, knn_log_probs

SOS = 3


@pytest.fixture(scope="module")
def base(tiny_lm):
    return HfLmScorer(str(tiny_lm))


@pytest.fixture(scope="module")
def datastore(tiny_lm, memory_file):
    enc = KeyEncoder(str(tiny_lm), device="cpu")
    keys, values = enc.encode(iter_windows(text_documents(enc.tokenizer, memory_file), 6, 3))
    return FaissDatastore.build(keys, values, enc.identity())


def test_knn_distribution():
    scores = torch.tensor([[0.0, 1.0, 1.0, 5.0]])
    values = torch.tensor([[4, 2, 4, -1]])
    logp = knn_log_probs(scores, values, 6, temperature=1.0, metric="l2")
    w = torch.softmax(torch.tensor([0.0, -1.0, -1.0]), 0)
    torch.testing.assert_close(logp.exp()[0], torch.tensor([0, 0, w[1], 0, w[0] + w[2], 0]))
    ip = knn_log_probs(scores, values, 6, temperature=2.0, metric="ip")
    w = torch.softmax(torch.tensor([0.0, 0.5, 0.5]), 0)  # similarities / temperature
    torch.testing.assert_close(ip.exp()[0], torch.tensor([0, 0, w[1], 0, w[0] + w[2], 0]))
    assert torch.isneginf(ip[0, 0])


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("pairwise", [True, False])
@pytest.mark.parametrize("lam", [0.25, 0.9])
def test_sparse_interpolation_equals_dense(metric, pairwise, lam):
    """interpolate_knn == log((1 - lam) p_lm + lam p_knn) with the dense kNN distribution:
    repeated tokens, missing neighbours (-1, also in the middle), a row without any, token 0."""
    torch.manual_seed(0)
    n_vocab = 12
    lm = torch.log_softmax(3 * torch.randn(5, n_vocab), dim=-1)
    scores = torch.rand(5, 6) * 4
    values = torch.tensor(
        [[4, 2, 4, 0, 4, 2], [0, 0, -1, 7, -1, -1], [-1] * 6, [11, 10, 9, 8, 7, 6], [3, -1, 3, 0, -1, 0]]
    )
    dense = torch.logaddexp(lm + math.log1p(-lam), knn_log_probs(scores, values, n_vocab, 0.7, metric) + math.log(lam))
    sparse = interpolate_knn(lm, scores, values, lam, 0.7, metric, pairwise=pairwise)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(sparse[2], lm[2] + math.log1p(-lam))  # no neighbours: scaled LM
    assert torch.allclose(sparse.exp().sum(1)[[0, 1, 3, 4]], torch.ones(4), atol=1e-5)


def test_lambda_zero_is_base_lm_exactly(base, datastore):
    knn = KnnLmScorer(base, datastore, lam=0.0)
    ys = torch.tensor([[SOS, 5, 6], [SOS, 7, 8]])
    a, _ = knn.batch_score(ys, [None, None], torch.zeros(2, 1, 1))
    b, _ = base.batch_score(ys, [None, None], torch.zeros(2, 1, 1))
    assert torch.equal(a, b)


def test_interpolation_and_batched_equals_single(base, datastore):
    knn = KnnLmScorer(base, datastore, lam=0.3, k=4, temperature=2.0, temperature_unit="absolute")
    ys = torch.tensor([[SOS, 5, 6], [SOS, 7, 8], [SOS, 20, 21]])
    x = torch.zeros(3, 1, 1)
    batched, _ = knn.batch_score(ys, [None] * 3, x)
    single = torch.stack([knn.score(ys[i], None, x[i])[0] for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-5)
    # by hand: log(0.7 p_lm + 0.3 p_knn)
    lm, hidden = base.full_prefix_scores(ys)
    s, v = datastore.search(hidden.numpy(), 4)
    p_knn = np.zeros((3, base.n_vocab))
    for i in range(3):
        w = np.exp(-s[i] / 2.0 - np.max(-s[i] / 2.0))
        w /= w.sum()
        for j in range(4):
            p_knn[i, v[i, j]] += w[j]
    ref = torch.log(0.7 * lm.exp() + 0.3 * torch.tensor(p_knn, dtype=torch.float32))
    torch.testing.assert_close(batched, ref, rtol=1e-4, atol=1e-4)
    assert torch.allclose(batched.exp().sum(1), torch.ones(3), atol=1e-4)


def test_lambda_one_is_knn_distribution(base, datastore):
    knn = KnnLmScorer(base, datastore, lam=1.0, k=4)
    ys = torch.tensor([[SOS, 5, 6], [SOS, 7, 8]])
    logp, _ = knn.batch_score(ys, [None, None], torch.zeros(2, 1, 1))
    _, hidden = base.full_prefix_scores(ys)
    s, v = datastore.search(hidden.numpy(), 4)
    # the default temperature is in units of the datastore's distance scale
    assert knn.softmax_temperature == pytest.approx(knn.temperature * datastore.distance_scale)
    ref = knn_log_probs(torch.from_numpy(s), torch.from_numpy(v), base.n_vocab, knn.softmax_temperature, "l2")
    torch.testing.assert_close(logp, ref, rtol=1e-4, atol=1e-4)


def test_torch_backend_scores_like_faiss(base, datastore):
    torch_ds = FaissDatastore.build(datastore.keys, datastore.values, datastore.identity, backend="torch")
    ys = torch.tensor([[SOS, 5, 6], [SOS, 7, 8], [SOS, 20, 21]])
    x = torch.zeros(3, 1, 1)
    k = datastore.count  # every key: no ties between duplicate keys at the k-th place
    a, _ = KnnLmScorer(base, datastore, lam=0.3, k=k, temperature=5.0).batch_score(ys, [None] * 3, x)
    b, _ = KnnLmScorer(base, torch_ds, lam=0.3, k=k, temperature=5.0).batch_score(ys, [None] * 3, x)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_memory_text_gets_more_likely(base, datastore):
    """A memory sentence is scored higher with kNN-LM (its keys are the queries' exact matches)."""
    tok = base.tokenizer
    ids = tok("the red probe ran to the moon", add_special_tokens=False).input_ids + [tok.eos_token_id]
    ys = torch.tensor([[SOS] + ids])

    def total(scorer):
        state, s = None, 0.0
        for t in range(1, ys.size(1)):
            logp, state = scorer.score(ys[0, :t], state, torch.zeros(1, 1))
            s += float(logp[ys[0, t]])
        return s

    assert total(KnnLmScorer(base, datastore, lam=0.5, k=8)) > total(base)


def test_bad_arguments(base, datastore, tmp_path):
    with pytest.raises(ValueError, match="lambda"):
        KnnLmScorer(base, datastore, lam=1.5)
    with pytest.raises(ValueError, match="temperature"):
        KnnLmScorer(base, datastore, temperature=0)
    ident = dict(datastore.identity, hidden_size=8)
    small = FaissDatastore.build(np.zeros((3, 8), np.float32), np.zeros(3, np.int64), ident)
    with pytest.raises(ValueError, match="width 8"):
        KnnLmScorer(base, small)
    with pytest.raises(ValueError, match="text-only"):
        KnnLmScorer(base, datastore).set_query_context([1, 2])
    KnnLmScorer(base, datastore).set_query_context(None)  # text-only: no units, no-op


def test_espnet_batch_beam_search_runs(base, datastore):
    from espnet.nets.batch_beam_search import BatchBeamSearch

    knn = KnnLmScorer(base, datastore, lam=0.25, k=4)
    tokens = base.tokenizer.convert_ids_to_tokens(list(range(base.n_vocab)))
    bs = BatchBeamSearch(
        scorers={"lm": knn},
        weights={"lm": 1.0},
        beam_size=3,
        vocab_size=base.n_vocab,
        sos=SOS,
        eos=SOS,
        token_list=tokens,
        pre_beam_score_key="full",
    )
    assert isinstance(bs, BatchBeamSearch)
    maxlen = 12
    hyps = bs(x=torch.zeros(maxlen, 4), maxlenratio=1.0, minlenratio=0.0)
    assert len(hyps) >= 1 and hyps[0].yseq[0] == SOS
    # the best hypothesis' score equals the kNN-LM log-prob of its tokens (ESPnet appends
    # an unscored eos to hypotheses that reach maxlen)
    y = hyps[0].yseq
    n_scored = len(y) - 2 if len(y) - 2 == maxlen else len(y) - 1
    state, total = None, 0.0
    for t in range(1, n_scored + 1):
        logp, state = knn.score(y[:t], state, torch.zeros(1, 1))
        total += float(logp[y[t]])
    assert math.isclose(float(hyps[0].score), total, rel_tol=1e-4, abs_tol=1e-3)


# ---------------------------------------------------------------- multi-modal memory
NUM_UNITS = 6


@pytest.fixture(scope="module")
def unit_lm(tiny_lm, tmp_path_factory):
    """The tiny LM turned speech+text LM: unit tokens added, embeddings resized."""
    from transformers import AutoTokenizer, LlamaForCausalLM

    from espnet_llm_plugin.core.unit_tokens import unit_token_list

    d = tmp_path_factory.mktemp("unit_lm")
    tok = AutoTokenizer.from_pretrained(tiny_lm)
    tok.add_special_tokens({"additional_special_tokens": unit_token_list(NUM_UNITS)})
    model = LlamaForCausalLM.from_pretrained(tiny_lm)
    model.resize_token_embeddings(len(tok))
    tok.save_pretrained(d)
    model.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def mm_datastore(unit_lm, tmp_path_factory):
    from espnet_llm_plugin.retrieval.document_store import multimodal_documents

    d = tmp_path_factory.mktemp("mm_memory")
    (d / "units").write_text("m1 0 1 2 3\nm2 4 5 5 1\n")
    (d / "text").write_text("m1 the cat sat on the mat\nm2 the red probe ran to the moon\n")
    enc = KeyEncoder(str(unit_lm), device="cpu")
    docs = multimodal_documents(enc.tokenizer, d / "units", d / "text")
    keys, values = enc.encode(iter_windows(docs, 6, 3))
    return FaissDatastore.build(keys, values, enc.identity())


def test_multimodal_query_equals_full_prefix_forward(unit_lm, mm_datastore):
    """Cached scores over steps (the span's cache shared) == one uncached forward over
    ``speech_span(units) + [bos] + hypothesis``, with the kNN part from that forward's hidden state."""
    from espnet_llm_plugin.retrieval.knnlm_scorer import speech_prefix_ids

    base = HfLmScorer(str(unit_lm))
    knn = KnnLmScorer(base, mm_datastore, lam=0.4, k=4, multimodal=True)
    units = [0, 1, 2]
    knn.set_query_context(units)
    span = speech_prefix_ids(base.tokenizer, units)
    assert base.tokenizer.convert_ids_to_tokens(span) == ["<speech>", "<unit_0>", "<unit_1>", "<unit_2>", "</speech>"]

    def reference(ys):
        ids = torch.tensor([span + [base.tokenizer.bos_token_id] + y[1:] for y in ys])
        out = base.lm(input_ids=ids, output_hidden_states=True)
        lm = torch.log_softmax(out.logits[:, -1].float(), -1)
        s, v = mm_datastore.search(out.hidden_states[-1][:, -1].detach().numpy(), 4)
        p_knn = knn_log_probs(torch.from_numpy(s), torch.from_numpy(v), base.n_vocab, knn.softmax_temperature, "l2")
        return torch.logaddexp(lm + math.log(0.6), p_knn + math.log(0.4)), lm

    x = torch.zeros(3, 1, 1)
    logp1, states = knn.batch_score(torch.tensor([[SOS]]), [knn.init_state(x[0])], x[:1])
    torch.testing.assert_close(logp1, reference([[SOS]])[0], rtol=1e-4, atol=1e-4)
    # step 2: two hypotheses from the step-1 cache, one fresh (only the span's cache)
    ys = [[SOS, 4], [SOS, 6], [SOS, 9]]
    st = [knn.select_state(states[0], 0), knn.select_state(states[0], 0), None]
    logp2, _ = knn.batch_score(torch.tensor(ys), st, x)
    ref2, lm2 = reference(ys)
    torch.testing.assert_close(logp2, ref2, rtol=1e-4, atol=1e-4)
    # lambda 0: the base LM's scores with the same speech prefix
    zero = KnnLmScorer(base, mm_datastore, lam=0.0, multimodal=True)
    zero.set_query_context(units)
    torch.testing.assert_close(zero.batch_score(torch.tensor(ys), [None] * 3, x)[0], lm2, rtol=1e-4, atol=1e-4)


def test_multimodal_needs_units(unit_lm, mm_datastore, datastore, base):
    knn = KnnLmScorer(HfLmScorer(str(unit_lm)), mm_datastore, multimodal=True)
    with pytest.raises(ValueError, match="knnlm_units_from_data"):
        knn.set_query_context(None)
    with pytest.raises(ValueError, match="knnlm_units_from_data"):
        knn.batch_score(torch.tensor([[SOS]]), [None], torch.zeros(1, 1, 1))
    with pytest.raises(ValueError, match="not one token"):
        knn.set_query_context([NUM_UNITS + 3])
    # text-only tokenizer: no speech tokens
    with pytest.raises(ValueError, match="not one token"):
        KnnLmScorer(base, datastore, multimodal=True).set_query_context([0, 1])


def test_datastore_is_multimodal(unit_lm, tiny_lm):
    from transformers import AutoTokenizer

    from espnet_llm_plugin.retrieval.knnlm_scorer import datastore_is_multimodal

    unit_tok, text_tok = AutoTokenizer.from_pretrained(unit_lm), AutoTokenizer.from_pretrained(tiny_lm)
    assert datastore_is_multimodal({"info": {"build": {"memory_units": "u"}}}, text_tok)
    assert not datastore_is_multimodal({"info": {"build": {"memory_units": None}}}, unit_tok)
    assert datastore_is_multimodal({}, unit_tok) and not datastore_is_multimodal({}, text_tok)


def test_sparse_interpolation_of_half_precision_lm_is_float32():
    lm = torch.log_softmax(torch.randn(2, 9), dim=-1)
    scores, values = torch.rand(2, 3), torch.tensor([[1, 1, 5], [0, -1, -1]])
    out = interpolate_knn(lm.bfloat16(), scores, values, 0.25, 1.0, "l2")
    assert out.dtype == torch.float32
    ref = interpolate_knn(lm.bfloat16().float(), scores, values, 0.25, 1.0, "l2")
    torch.testing.assert_close(out, ref)


def test_multimodal_memory_with_a_text_vocabulary_asr_model(unit_lm, tiny_lm, mm_datastore, monkeypatch):
    """The LLM-ASR case: the ASR token list is the text LM's vocabulary, the speech+text LM has
    unit tokens after it. Scores cover the text tokens only; a neighbour whose next token is a
    unit token (never a hypothesis) counts as missing."""
    from transformers import AutoTokenizer

    text_tok = AutoTokenizer.from_pretrained(tiny_lm)
    tokens = text_tok.convert_ids_to_tokens(list(range(len(text_tok))))
    base = HfLmScorer(str(unit_lm), token_list=tokens)
    knn = KnnLmScorer(base, mm_datastore, lam=0.5, k=4, multimodal=True)
    knn.set_query_context([0, 1, 2])
    ys, x = torch.tensor([[SOS, 4]]), torch.zeros(1, 1, 1)
    logp, _ = knn.batch_score(ys, [None], x)
    assert logp.shape == (1, len(tokens))
    torch.testing.assert_close(logp.exp().sum(-1), torch.ones(1), rtol=1e-5, atol=1e-5)

    unit = len(tokens) + 3
    fake = (torch.tensor([[0.0, 0.1, 0.2, 0.3]]), torch.tensor([[unit, 7, unit, 7]]))
    monkeypatch.setattr(knn.datastore, "search_tensor", lambda q, k: fake)
    scores, values = knn.search(torch.zeros(1, base.hidden_size))
    assert values.tolist() == [[-1, 7, -1, 7]]
    lm_logp = base.batch_score(ys, [None], x)[0]
    logp, _ = knn.batch_score(ys, [None], x)
    # all the kNN mass on token 7: p = 0.5 p_lm + 0.5 at 7, 0.5 p_lm elsewhere
    expected = lm_logp + math.log(0.5)
    expected[0, 7] = torch.logaddexp(expected[0, 7], torch.tensor(math.log(0.5)))
    torch.testing.assert_close(logp, expected, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- real LM
@pytest.mark.real_model
def test_smollm2_default_knn_distribution_is_not_a_hard_1nn(smollm2_key_encoder, smollm2_target_memory):
    """SmolLM2's squared L2 distances are in the hundreds: with a raw temperature of 1 the
    softmax put all weight on the nearest neighbour. The default temperature (in units of
    the datastore's distance scale) spreads it over several neighbours of held-out queries."""
    from espnet_llm_plugin.retrieval.knnlm_perplexity import collect_events
    from espnet_llm_plugin.retrieval.knnlm_scorer import knn_weights

    ds, _, held_out = smollm2_target_memory
    ev = collect_events("held_out", [(str(i), t) for i, t in enumerate(held_out)], smollm2_key_encoder)
    knn = KnnLmScorer(_QueryOnly(ds.dim), ds)  # the defaults; queries come from the key encoder
    scores, values = ds.search_tensor(torch.from_numpy(ev.queries), knn.k)
    w, _ = knn_weights(scores, values, knn.softmax_temperature, ds.metric)
    entropy = -(w * w.clamp_min(1e-30).log()).sum(1)
    # medians over queries: a few have many exact duplicates (every memory text starts alike)
    assert float((w > 0.01).sum(1).float().median()) >= 3
    assert float(entropy.median()) > 0.5  # nats; a 1-NN has 0
    # the old raw temperature 1: a hard 1-NN on the same queries
    w1, _ = knn_weights(scores, values, 1.0, ds.metric)
    assert float((w1 > 0.01).sum(1).float().median()) == 1


class _QueryOnly:
    """The attributes KnnLmScorer's constructor reads from its base (no LM needed here)."""

    def __init__(self, hidden_size):
        self.hidden_size, self.n_vocab = hidden_size, 49152


def test_x_none_with_an_lm_base(base, datastore):
    """With an HfLmScorer base nothing reads speech: x=None works as for ESPnet's LMs."""
    knn = KnnLmScorer(base, datastore, lam=0.5, k=4, temperature=1.0)
    ys = torch.tensor([[SOS, 4, 6], [SOS, 5, 7]])
    x = torch.zeros(2, 1, 1)
    ref, _ = knn.batch_score(ys, [None, None], x)
    logp, _ = knn.batch_score(ys, [knn.init_state(None)] * 2, None)
    torch.testing.assert_close(logp, ref)
    one, _ = knn.score(ys[1], None, None)
    torch.testing.assert_close(one, ref[1], rtol=1e-5, atol=1e-5)


def test_tied_neighbours_do_not_depend_on_the_batch(base, datastore):
    """Duplicate keys (the same context in several memory windows) tie exactly; which of them
    are the k neighbours must not depend on the other hypotheses searched with a query
    (BeamSearch scores one at a time, BatchBeamSearch all at once)."""
    keys = datastore.keys.astype(np.float32)
    dup = np.repeat(keys[:3], 60, axis=0)  # 3 contexts, 60 copies each, different next tokens
    dup_values = np.arange(len(dup)) % base.n_vocab
    for backend in ("faiss", "torch"):
        ds = FaissDatastore.build(dup, dup_values, datastore.identity, backend=backend)
        knn = KnnLmScorer(base, ds, lam=0.5, k=8, temperature=1.0)
        q = torch.tensor(keys[[0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2, 0]])
        q = q + 0.01 * torch.randn(q.shape, generator=torch.Generator().manual_seed(0))
        _, batch_values = knn.search(q)
        for i in range(q.size(0)):
            _, v = knn.search(q[i : i + 1])
            assert v[0].tolist() == batch_values[i].tolist(), (backend, i)
        # the lowest ids among the tied keys, in id order
        group = int(torch.argmin(((torch.tensor(keys[:3]) - q[0]) ** 2).sum(1)))
        assert batch_values[0].tolist() == [int(x) for x in dup_values[group * 60 : group * 60 + 8]]
