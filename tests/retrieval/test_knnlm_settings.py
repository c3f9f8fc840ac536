"""kNN-LM settings: library defaults < llm_usage.json 'knnlm' < explicit values; bad values name their source."""

import json

import pytest

from espnet_llm_plugin.retrieval.knnlm_settings import DEFAULTS, KnnLmSettings, resolve_knnlm_settings


def test_defaults_without_usage_file(tmp_path):
    assert resolve_knnlm_settings(None, tmp_path, "x") == DEFAULTS
    assert resolve_knnlm_settings(None, None, "x") == DEFAULTS
    d = DEFAULTS.to_dict()
    assert set(d) == {"window", "stride", "k", "lambda", "temperature", "temperature_unit"}
    # overlapping windows: keys after the first window keep left context
    assert all(s < w for w, s in zip(DEFAULTS.window, DEFAULTS.stride))


def test_usage_file_then_explicit(tmp_path):
    (tmp_path / "llm_usage.json").write_text(json.dumps({"knnlm": {"lambda": 0.6, "k": 8, "window": 40, "stride": 10}}))
    s = resolve_knnlm_settings(None, tmp_path, "x")
    assert (s.lam, s.k, s.window, s.stride, s.temperature) == (0.6, 8, (40,), (10,), DEFAULTS.temperature)
    assert s.to_dict()["window"] == 40 and s.to_dict()["stride"] == 10
    s = resolve_knnlm_settings({"lambda": 0.1, "k": None}, tmp_path, "x")  # None: not given
    assert (s.lam, s.k) == (0.1, 8)


def test_windows_and_strides():
    s = DEFAULTS.updated({"window": [12, 80]}, "x")  # strides default to half of each window
    assert (s.window, s.stride) == ((12, 80), (6, 40))
    assert s.to_dict()["window"] == [12, 80]
    s = DEFAULTS.updated({"window": 10, "stride": 10}, "x")
    assert (s.window, s.stride) == ((10,), (10,))
    with pytest.raises(ValueError, match="one stride per window"):
        DEFAULTS.updated({"window": [8, 64], "stride": [4]}, "x")


@pytest.mark.parametrize(
    "bad,match",
    [
        ({"lam": 0.3}, "unknown kNN-LM setting"),
        ({"lambda": 1.5}, "lambda"),
        ({"temperature": 0}, "temperature"),
        ({"temperature_unit": "kelvin"}, "temperature_unit"),
        ({"window": 16, "stride": 17}, "stride"),
        ({"window": [16, "x"]}, "list of integers"),
        ({"k": 2.5}, "integer"),
        ({"k": True}, "k must be"),
    ],
)
def test_bad_values_name_the_source(tmp_path, bad, match):
    with pytest.raises(ValueError, match=match) as e:
        resolve_knnlm_settings(bad, None, "decode config knnlm_*")
    assert "decode config knnlm_*" in str(e.value)
    (tmp_path / "llm_usage.json").write_text(json.dumps({"knnlm": bad}))
    with pytest.raises(ValueError, match="llm_usage.json"):
        resolve_knnlm_settings(None, tmp_path, "x")


def test_settings_validate_on_construction():
    with pytest.raises(ValueError, match="window"):
        KnnLmSettings(window=(1,), stride=(1,))
