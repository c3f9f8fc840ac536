"""TorchExactSearch == brute force; faiss Flat == torch exact."""

import numpy as np
import pytest
import torch

from espnet_llm_plugin.retrieval.datastore import FaissSearch
from espnet_llm_plugin.retrieval.torch_search import TorchExactSearch


def brute_force(keys, queries, k, metric):
    if metric == "l2":
        s = torch.cdist(torch.tensor(queries, dtype=torch.float64), torch.tensor(keys, dtype=torch.float64)) ** 2
        return s.topk(k, dim=1, largest=False)
    s = torch.tensor(queries, dtype=torch.float64) @ torch.tensor(keys, dtype=torch.float64).T
    return s.topk(k, dim=1, largest=True)


@pytest.mark.parametrize("metric", ["l2", "ip"])
@pytest.mark.parametrize("chunk", [7, 100, 100000])
def test_exact_search_equals_brute_force(metric, chunk):
    rng = np.random.default_rng(0)
    keys = rng.standard_normal((523, 16)).astype(np.float32)
    queries = rng.standard_normal((9, 16)).astype(np.float32)
    ts = TorchExactSearch(16, metric, chunk_size=chunk)
    ts.add(keys[:300])
    ts.add(keys[300:])  # incremental add
    s, i = ts.search(queries, 5)
    ref_s, ref_i = brute_force(keys, queries, 5, metric)
    assert (i == ref_i.numpy()).all()
    np.testing.assert_allclose(s, ref_s.numpy(), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_faiss_flat_equals_torch_exact(metric):
    rng = np.random.default_rng(1)
    keys = rng.standard_normal((1000, 24)).astype(np.float32)
    queries = rng.standard_normal((20, 24)).astype(np.float32)
    fs = FaissSearch(24, metric, "Flat")
    fs.add(keys)
    ts = TorchExactSearch(24, metric, chunk_size=128)
    ts.add(keys)
    fs_s, fs_i = fs.search(queries, 8)
    ts_s, ts_i = ts.search(queries, 8)
    assert (fs_i == ts_i).all()
    np.testing.assert_allclose(fs_s, ts_s, rtol=1e-4, atol=1e-3)


def test_fewer_keys_than_k_and_bad_queries():
    ts = TorchExactSearch(4)
    ts.add(np.eye(4, dtype=np.float32)[:2])
    s, i = ts.search(np.ones((1, 4), np.float32), 3)
    assert list(i[0][:2]) in ([0, 1], [1, 0]) and i[0][2] == -1
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        ts.search(np.ones((1, 5), np.float32), 1)
    with pytest.raises(ValueError, match=r"\(N, 4\)"):
        ts.add(np.ones((2, 3), np.float32))


def test_half_precision_keys_close_to_fp32():
    rng = np.random.default_rng(2)
    keys = rng.standard_normal((200, 16)).astype(np.float32)
    q = keys[:5] + 0.01 * rng.standard_normal((5, 16)).astype(np.float32)
    ts = TorchExactSearch(16, "l2", dtype="bfloat16")
    ts.add(keys)
    _, i = ts.search(q, 1)
    assert list(i[:, 0]) == [0, 1, 2, 3, 4]


@pytest.mark.gpu
def test_cuda_fp16_search_matches_cpu():
    rng = np.random.default_rng(3)
    keys = rng.standard_normal((5000, 64)).astype(np.float32)
    q = keys[:50] + 0.01 * rng.standard_normal((50, 64)).astype(np.float32)
    ts = TorchExactSearch(64, "l2", device="cuda", chunk_size=1024)
    ts.add(keys)
    _, i = ts.search(q, 1)
    assert (i[:, 0] == np.arange(50)).all()
