"""KnnLmScorer: lambda=0 is the base LM; batched == per hypothesis; kNN distribution; beam search."""

import math

import numpy as np
import pytest
import torch

from espnet_llm_plugin.retrieval.datastore import FaissDatastore
from espnet_llm_plugin.retrieval.document_store import iter_windows, text_documents
from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer
from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder
from espnet_llm_plugin.retrieval.knnlm_scorer import KnnLmScorer, knn_log_probs

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


def test_lambda_zero_is_base_lm_exactly(base, datastore):
    knn = KnnLmScorer(base, datastore, lam=0.0)
    ys = torch.tensor([[SOS, 5, 6], [SOS, 7, 8]])
    a, _ = knn.batch_score(ys, [None, None], torch.zeros(2, 1, 1))
    b, _ = base.batch_score(ys, [None, None], torch.zeros(2, 1, 1))
    assert torch.equal(a, b)


def test_interpolation_and_batched_equals_single(base, datastore):
    knn = KnnLmScorer(base, datastore, lam=0.3, k=4, temperature=2.0)
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
    with pytest.raises(NotImplementedError, match="multi-modal"):
        KnnLmScorer(base, datastore).set_query_context([1, 2])


def test_espnet_batch_beam_search_runs(base, datastore):
    from espnet.nets.batch_beam_search import BatchBeamSearch

    knn = KnnLmScorer(base, datastore, lam=0.25, k=4)
    tokens = base.tokenizer.convert_ids_to_tokens(list(range(base.n_vocab)))
    bs = BatchBeamSearch(
        scorers={"lm": knn}, weights={"lm": 1.0}, beam_size=3, vocab_size=base.n_vocab,
        sos=SOS, eos=SOS, token_list=tokens, pre_beam_score_key="full",
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
