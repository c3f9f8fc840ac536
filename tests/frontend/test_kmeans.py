"""KMeansModel: fit/predict, save/load round trip, refusal of bad files."""

import json

import numpy as np
import pytest

from espnet_llm_plugin.frontend.kmeans import FrameSampler, KMeansError, KMeansModel


def blobs(n_per=200, k=4, d=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((k, d)) * 10
    x = np.concatenate([c + rng.standard_normal((n_per, d)) for c in centers])
    return x.astype(np.float32), np.repeat(np.arange(k), n_per)


def test_fit_recovers_clusters_and_round_trips(tmp_path):
    x, truth = blobs()
    km = KMeansModel.fit(x, 4, n_iter=20, seed=3, feature_spec={"type": "fbank"})
    pred = km.predict(x)
    # each true cluster maps to one unit, all different
    mapping = {t: np.bincount(pred[truth == t]).argmax() for t in range(4)}
    assert len(set(mapping.values())) == 4
    assert all((pred[truth == t] == mapping[t]).all() for t in range(4))
    km.save(tmp_path / "km")
    loaded = KMeansModel.load(tmp_path / "km", expected_dim=8)
    np.testing.assert_array_equal(loaded.centroids, km.centroids)
    np.testing.assert_array_equal(loaded.predict(x), pred)
    meta = json.loads((tmp_path / "km" / "kmeans.json").read_text())
    assert meta["num_units"] == 4 and meta["dim"] == 8 and meta["seed"] == 3
    assert meta["feature"] == {"type": "fbank"} and meta["frames_used"] == 800


def test_seeded_fit_is_deterministic():
    x, _ = blobs(seed=1)
    a = KMeansModel.fit(x, 6, seed=5).centroids
    b = KMeansModel.fit(x, 6, seed=5).centroids
    np.testing.assert_array_equal(a, b)


def test_normalized_predict_is_scale_invariant():
    x, _ = blobs()
    km = KMeansModel.fit(x, 4, normalize=True)
    np.testing.assert_array_equal(km.predict(x), km.predict(3.0 * x))


def test_refusals(tmp_path):
    x, _ = blobs(n_per=2)
    with pytest.raises(KMeansError, match="fewer than num_units"):
        KMeansModel.fit(x, 100)
    km = KMeansModel.fit(blobs()[0], 4)
    with pytest.raises(KMeansError, match="feature dim 5"):
        km.predict(np.zeros((3, 5), np.float32))
    with pytest.raises(KMeansError, match="NaN"):
        km.predict(np.full((2, 8), np.nan, np.float32))
    with pytest.raises(KMeansError, match="does not match"):
        km.check_dim(80)
    km.save(tmp_path / "km")
    with pytest.raises(KMeansError, match="dim 8 does not match"):
        KMeansModel.load(tmp_path / "km", expected_dim=80)


def _saved(tmp_path):
    km = KMeansModel.fit(blobs()[0], 4)
    return km.save(tmp_path / "km")


def test_missing_and_corrupt_files(tmp_path):
    d = _saved(tmp_path)
    (d / "kmeans.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(KMeansError, match="unreadable"):
        KMeansModel.load(d)
    (d / "kmeans.safetensors").unlink()
    with pytest.raises(KMeansError, match="not found"):
        KMeansModel.load(d)


def test_inconsistent_metadata(tmp_path):
    d = _saved(tmp_path)
    meta = json.loads((d / "kmeans.json").read_text())
    meta["num_units"] = 7
    (d / "kmeans.json").write_text(json.dumps(meta))
    with pytest.raises(KMeansError, match="num_units=7"):
        KMeansModel.load(d)
    del meta["feature"]
    (d / "kmeans.json").write_text(json.dumps(meta))
    with pytest.raises(KMeansError, match="missing key 'feature'"):
        KMeansModel.load(d)
    (d / "kmeans.json").write_text("{broken")
    with pytest.raises(KMeansError, match="not valid JSON"):
        KMeansModel.load(d)


def test_non_finite_centroids_refused(tmp_path):
    from safetensors.numpy import save_file

    d = _saved(tmp_path)
    bad = np.full((4, 8), np.inf, np.float32)
    save_file({"centroids": bad}, str(d / "kmeans.safetensors"))
    with pytest.raises(KMeansError, match="NaN or infinite"):
        KMeansModel.load(d)


def test_failed_save_keeps_old_dir(tmp_path):
    d = _saved(tmp_path)
    before = (d / "kmeans.safetensors").read_bytes()
    km = KMeansModel.fit(blobs()[0], 4)
    km.meta["bad"] = object()  # not JSON-able: save fails half way
    with pytest.raises(TypeError):
        km.save(d)
    assert (d / "kmeans.safetensors").read_bytes() == before


def test_frame_sampler_bounded_and_chunking_independent():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1000, 3)).astype(np.float32)
    a = FrameSampler(100, seed=1)
    for i in range(0, 1000, 37):
        a.add(x[i : i + 37])
    b = FrameSampler(100, seed=1)
    b.add(x)
    assert a.frames().shape == (100, 3) and a.seen == 1000
    np.testing.assert_array_equal(a.frames(), b.frames())
    everything = FrameSampler(None)
    everything.add(x)
    assert everything.frames().shape == (1000, 3)
