"""FaissDatastore: build, search, save/load, manifest checks, corrupt files, shards + merge."""

import json

import numpy as np
import pytest

from espnet_llm_plugin.retrieval.datastore import (
    DatastoreError,
    FaissDatastore,
    merge_datastores,
    read_manifest,
)

D, V = 16, 50
IDENT = {"model_path": "lm", "config_hash": "c", "tokenizer_hash": "t", "vocab_size": V, "hidden_size": D, "layer": -1}


def data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, D)).astype(np.float32), rng.integers(0, V, n)


def test_search_returns_values_of_nearest_keys():
    keys, values = data()
    ds = FaissDatastore.build(keys, values, IDENT)
    scores, vals = ds.search(keys[:10], 3)
    assert (vals[:, 0] == values[:10]).all() and np.allclose(scores[:, 0], 0, atol=1e-4)
    assert scores.shape == vals.shape == (10, 3)


@pytest.mark.parametrize("index", ["Flat", "IVF8,PQ8x4", "HNSW32", "IVF8,Flat"])
def test_index_types_find_exact_matches(index):
    keys, values = data(800)
    ds = FaissDatastore.build(keys, values, IDENT, index=index)
    _, ids = ds.backend.search(keys[:20], 1)
    assert (ids[:, 0] == np.arange(20)).mean() >= (0.5 if "PQ" in index else 0.9)


def test_save_load_round_trip(tmp_path):
    keys, values = data()
    for backend in ("faiss", "torch"):
        ds = FaissDatastore.build(keys, values, IDENT, metric="ip")
        ds.save(tmp_path / "ds", extra={"note": 1})
        back = FaissDatastore.load(tmp_path / "ds", expect={"tokenizer_hash": "t", "hidden_size": D}, backend=backend)
        q = keys[:7] + 0.1
        s1, v1 = ds.search(q, 4)
        s2, v2 = back.search(q, 4)
        assert (v1 == v2).all()
        np.testing.assert_allclose(s1, s2, rtol=1e-4, atol=1e-4)
        assert back.count == len(values) and back.metric == "ip"
        np.testing.assert_array_equal(back.keys, keys)
    m = read_manifest(tmp_path / "ds")
    assert m["count"] == 600 and m["key_encoder"] == IDENT and m["info"] == {"note": 1}


def test_fp16_storage(tmp_path):
    keys, values = data()
    ds = FaissDatastore.build(keys, values, IDENT, fp16=True)
    assert ds.index_string == "SQfp16" and ds.keys.dtype == np.float16
    ds.save(tmp_path / "ds")
    back = FaissDatastore.load(tmp_path / "ds")
    _, v = back.search(keys[:10], 1)
    assert (v[:, 0] == values[:10]).all()
    assert np.load(tmp_path / "ds" / "keys.npy").dtype == np.float16


def test_incremental_add_equals_one_build():
    keys, values = data()
    a = FaissDatastore.build(keys, values, IDENT)
    b = FaissDatastore(IDENT)
    b.add(keys[:250], values[:250])
    b.add(keys[250:], values[250:])
    q = data(5, seed=9)[0]
    assert all((x == y).all() for x, y in zip(a.search(q, 5), b.search(q, 5)))


def test_manifest_mismatch_refused(tmp_path):
    keys, values = data()
    FaissDatastore.build(keys, values, IDENT).save(tmp_path / "ds")
    with pytest.raises(DatastoreError, match="another tokenizer"):
        FaissDatastore.load(tmp_path / "ds", expect={"tokenizer_hash": "other"})
    with pytest.raises(DatastoreError, match="width 16"):
        FaissDatastore.load(tmp_path / "ds", expect={"hidden_size": 32})
    with pytest.raises(DatastoreError, match="not found"):
        FaissDatastore.load(tmp_path / "nothing")


def test_corrupt_index_refused_and_nothing_overwritten(tmp_path):
    keys, values = data()
    FaissDatastore.build(keys, values, IDENT).save(tmp_path / "ds")
    (tmp_path / "ds" / "index.faiss").write_bytes(b"garbage" * 10)
    before = {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()}
    with pytest.raises(DatastoreError, match="corrupt"):
        FaissDatastore.load(tmp_path / "ds")
    # an index of another datastore (wrong count) is refused too
    FaissDatastore.build(keys[:10], values[:10], IDENT).save(tmp_path / "small")
    (tmp_path / "ds" / "index.faiss").write_bytes((tmp_path / "small" / "index.faiss").read_bytes())
    with pytest.raises(DatastoreError, match="does not belong"):
        FaissDatastore.load(tmp_path / "ds")
    (tmp_path / "ds" / "index.faiss").write_bytes(before["index.faiss"])
    assert {p.name: p.read_bytes() for p in (tmp_path / "ds").iterdir()} == before


def test_failed_save_keeps_old_directory(tmp_path):
    keys, values = data()
    FaissDatastore.build(keys, values, IDENT).save(tmp_path / "ds")
    before = (tmp_path / "ds" / "manifest.json").read_text()
    bad = FaissDatastore(IDENT)
    with pytest.raises(DatastoreError, match="empty"):
        bad.save(tmp_path / "ds")
    assert (tmp_path / "ds" / "manifest.json").read_text() == before


def test_bad_input_errors():
    keys, values = data()
    with pytest.raises(DatastoreError, match=r"\(N, 16\)"):
        FaissDatastore.build(keys[:, :8], values, IDENT)
    with pytest.raises(DatastoreError, match="vocab_size"):
        FaissDatastore.build(keys, values + V, IDENT)
    with pytest.raises(DatastoreError, match="empty"):
        FaissDatastore.build(keys[:0], values[:0], IDENT)
    with pytest.raises(ValueError, match="too few keys"):
        FaissDatastore.build(keys[:20], values[:20], IDENT, index="IVF64,Flat")
    with pytest.raises(ValueError, match="index_factory"):
        FaissDatastore(IDENT, index="NoSuchIndex")


@pytest.mark.parametrize("index", ["Flat", "IVF8,Flat"])
def test_sharded_build_and_merge_equals_single_build(tmp_path, index):
    keys, values = data(900)
    single = FaissDatastore.build(keys, values, IDENT, index=index)
    bounds = [0, 200, 650, 900]
    shards = []
    for j in range(3):
        d = tmp_path / f"shard{j}"
        FaissDatastore.build(
            keys[bounds[j] : bounds[j + 1]], values[bounds[j] : bounds[j + 1]], IDENT, index="Flat"
        ).save(d)
        shards.append(d)
    merged = merge_datastores(shards, tmp_path / "merged", index=index)
    loaded = FaissDatastore.load(tmp_path / "merged")
    np.testing.assert_array_equal(loaded.values, values)
    q = data(10, seed=5)[0]
    for a, b in zip(single.search(q, 6), loaded.search(q, 6)):
        np.testing.assert_array_equal(a, b)
    assert (
        merged.count == 900 and json.loads((tmp_path / "merged" / "manifest.json").read_text())["info"]["merged_from"]
    )


def test_merge_refuses_mixed_shards(tmp_path):
    keys, values = data()
    FaissDatastore.build(keys, values, IDENT).save(tmp_path / "a")
    FaissDatastore.build(keys, values, dict(IDENT, tokenizer_hash="x")).save(tmp_path / "b")
    with pytest.raises(DatastoreError, match="key_encoder"):
        merge_datastores([tmp_path / "a", tmp_path / "b"], tmp_path / "m")
    assert not (tmp_path / "m").exists()


def test_ivf_pq_skips_polysemous_training_with_same_results():
    """index_factory turns polysemous training on for IVF-PQ (slow: minutes for PQ32); it only
    permutes codes, so the datastore turns it off and searches exactly as a faiss-built index."""
    import faiss

    keys, values = data(2000)
    ds = FaissDatastore.build(keys, values, IDENT, index="IVF8,PQ4")
    ivf = faiss.downcast_index(faiss.extract_index_ivf(ds.backend.index))
    assert not ivf.do_polysemous_training
    ref = faiss.index_factory(D, "IVF8,PQ4")
    ref_ivf = faiss.downcast_index(faiss.extract_index_ivf(ref))
    assert ref_ivf.do_polysemous_training
    training = faiss.PolysemousTraining()
    training.n_iter = 2000  # a short annealing: still permutes the codes
    ref_ivf.polysemous_training = training
    ref.train(keys)
    ref.add(keys)
    assert not np.array_equal(ref.sa_encode(keys[:50]), ds.backend.index.sa_encode(keys[:50]))
    for nprobe in (1, 4):
        ds.backend.set_search_params(f"nprobe={nprobe}")
        ref_ivf.nprobe = nprobe
        s, i = ds.backend.search(keys[:30], 5)
        rs, ri = ref.search(keys[:30], 5)
        np.testing.assert_allclose(s, rs, rtol=1e-5, atol=1e-5)
        assert (i == ri).mean() > 0.99  # ties may order differently


def test_search_params(tmp_path):
    import faiss

    keys, values = data(800)
    ds = FaissDatastore.build(keys, values, IDENT, index="IVF16,Flat")
    ivf = faiss.extract_index_ivf(ds.backend.index)
    assert ivf.nprobe == 1  # faiss' default
    ds.backend.set_search_params("nprobe=16")
    assert ivf.nprobe == 16
    exact = FaissDatastore.build(keys, values, IDENT)
    q = keys[:40] + 0.3
    assert np.array_equal(ds.search(q, 4)[1], exact.search(q, 4)[1])  # all lists visited: exact
    ds.save(tmp_path / "ivf")
    loaded = FaissDatastore.load(tmp_path / "ivf", search_params="nprobe=4")
    assert faiss.extract_index_ivf(loaded.backend.index).nprobe == 4
    hnsw = FaissDatastore.build(keys, values, IDENT, index="HNSW16")
    hnsw.backend.set_search_params("efSearch=100")
    assert hnsw.backend.index.hnsw.efSearch == 100
    with pytest.raises(ValueError, match="search parameters"):
        hnsw.backend.set_search_params("nprobe=4")
    with pytest.raises(ValueError, match="search parameters"):
        ds.backend.set_search_params("no_such_param=1")


@pytest.mark.parametrize("backend", ["faiss", "torch"])
def test_search_tensor_equals_search(backend):
    import torch

    keys, values = data(500)
    ds = FaissDatastore.build(keys, values, IDENT, backend=backend)
    q = keys[:12] + 0.05
    scores, vals = ds.search(q, 7)
    t_scores, t_vals = ds.search_tensor(torch.from_numpy(q), 7)
    assert t_vals.dtype == torch.int64 and t_scores.dtype == torch.float32
    np.testing.assert_allclose(t_scores.numpy(), scores, rtol=1e-4, atol=1e-4)
    assert np.array_equal(t_vals.numpy(), vals)
    ds.add(keys[:3] + 100.0, np.array([1, 2, 3]))  # values added later are seen
    far = torch.from_numpy(keys[:3] + 100.0)
    assert ds.search_tensor(far, 1)[1][:, 0].tolist() == [1, 2, 3]
    _, padded = ds.search_tensor(far[:1], 600)  # more than stored: padded with -1
    assert (padded[0, :503] >= 0).all() and (padded[0, 503:] == -1).all()
    with pytest.raises(ValueError, match="shape"):
        ds.search_tensor(torch.zeros(2, D + 1), 3)


def test_distance_scale_is_the_median_random_pair_distance():
    from espnet_llm_plugin.retrieval.datastore import distance_scale

    keys, _ = data(2000)
    s = distance_scale(keys, "l2")
    # iid standard normal keys: ||a - b||^2 ~ 2 chi2(D), median ~ 2 (D - 2/3)
    assert s == pytest.approx(2 * (D - 2 / 3), rel=0.05)
    assert distance_scale(keys, "l2") == s  # seeded
    assert distance_scale(10 * keys, "l2") == pytest.approx(100 * s)  # follows the magnitude
    assert distance_scale(keys[:1], "l2") == 1.0 and distance_scale(np.ones((5, D), np.float32)) == 1.0
    # ip: |<a,a> - <a,b>| ~ ||a||^2 ~ D for independent keys
    assert distance_scale(keys, "ip") == pytest.approx(D, rel=0.2)


def test_distance_scale_in_manifest_and_computed_for_old_datastores(tmp_path):
    keys, values = data()
    ds = FaissDatastore.build(keys, values, IDENT)
    ds.save(tmp_path / "ds")
    m = read_manifest(tmp_path / "ds")
    assert m["distance_scale"] == pytest.approx(ds.distance_scale)
    for backend in ("faiss", "torch"):
        assert FaissDatastore.load(tmp_path / "ds", backend=backend).distance_scale == pytest.approx(ds.distance_scale)
    # a manifest from before the scale existed: computed from keys.npy on load
    m.pop("distance_scale")
    (tmp_path / "ds" / "manifest.json").write_text(json.dumps(m))
    old = FaissDatastore.load(tmp_path / "ds")
    assert old.distance_scale == pytest.approx(ds.distance_scale)
    # adding keys recomputes it
    old.add(10 * keys[:600], values[:600])
    assert old.distance_scale > 5 * ds.distance_scale


@pytest.mark.parametrize("metric", ["l2", "ip"])
def test_exact_ties_give_the_lowest_ids_on_every_backend_and_batch(metric):
    """Duplicate keys tie exactly: the k returned are the lowest ids of the tie, in id order,
    alike for faiss and torch and for a query searched alone or with 15 others (torch's topk
    chose among ties by its kernel's internals)."""
    import torch

    rng = np.random.default_rng(0)
    base = (rng.standard_normal((5, 32)) * 30).astype(np.float32)
    keys = np.repeat(base, 100, axis=0)  # ids 100 g .. 100 g + 99 share key g
    values = np.arange(len(keys)) % V
    ident = dict(IDENT, hidden_size=32)
    groups = rng.integers(0, 5, 16)
    queries = base[groups] + rng.standard_normal((16, 32)).astype(np.float32)
    results = {}
    for backend in ("faiss", "torch"):
        ds = FaissDatastore.build(keys, values, ident, metric=metric, backend=backend)
        scores, vals = ds.search_tensor(torch.from_numpy(queries), 8)
        for i in range(16):
            _, alone = ds.search_tensor(torch.from_numpy(queries[i : i + 1]), 8)
            assert alone[0].tolist() == vals[i].tolist(), (backend, i)
        _, np_vals = ds.search(queries, 8)
        assert np_vals.tolist() == vals.tolist()
        results[backend] = vals.tolist()
    assert results["faiss"] == results["torch"]
    # each query's nearest group, its 8 lowest ids (metric ip: the largest inner product)
    ref = FaissDatastore.build(base, np.arange(5), dict(IDENT, hidden_size=32), metric=metric)
    nearest = ref.search(queries, 1)[1][:, 0]
    for i, g in enumerate(nearest):
        assert results["faiss"][i] == [int(v) for v in values[100 * g : 100 * g + 8]]


def test_fewer_keys_than_k_pads_with_missing_neighbours():
    keys, values = data(5)
    for backend in ("faiss", "torch"):
        ds = FaissDatastore.build(keys, values, IDENT, backend=backend)
        scores, vals = ds.search(keys[:2], 8)
        assert vals.shape == (2, 8) and (vals[:, 5:] == -1).all() and (vals[:, :5] >= 0).all()
        assert vals[0, 0] == values[0]


def test_key_encoder_fingerprint_mismatch_names_both_and_the_dir(tmp_path):
    keys, values = data()
    FaissDatastore.build(keys, values, dict(IDENT, weights_sha256="a" * 64)).save(tmp_path / "ds")
    FaissDatastore.load(tmp_path / "ds", expect={"weights_sha256": "a" * 64, "hidden_size": D})
    with pytest.raises(DatastoreError) as e:
        FaissDatastore.load(tmp_path / "ds", expect={"weights_sha256": "b" * 64})
    assert "a" * 64 in str(e.value) and "b" * 64 in str(e.value) and str(tmp_path / "ds") in str(e.value)


def test_datastore_without_fingerprint_loads_with_a_warning(tmp_path, caplog):
    keys, values = data()
    FaissDatastore.build(keys, values, IDENT).save(tmp_path / "old")  # IDENT has no weights_sha256
    with caplog.at_level("WARNING"):
        ds = FaissDatastore.load(tmp_path / "old", expect={"weights_sha256": "b" * 64})
    assert ds.count == len(values)
    assert "no key-encoder weights fingerprint" in caplog.text and str(tmp_path / "old") in caplog.text
