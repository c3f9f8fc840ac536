"""Fixtures of the packing tests (see packing_fixtures.py)."""

import pytest
from packing_fixtures import make_experiment


@pytest.fixture
def experiment(tmp_path):
    return make_experiment(tmp_path / "recipe")


@pytest.fixture
def packed(experiment, tmp_path):
    """``(experiment, pack directory)`` packed with its decode config and results."""
    from espnet_llm_plugin.packing.pack import pack_model

    e = experiment
    out = pack_model(
        e["exp"] / "config.yaml",
        e["exp"] / "valid.acc.ave.pth",
        tmp_path / "pack",
        decode_config=e["root"] / "decode.yaml",
        decode_options={"nbest": 4},
        results=[e["root"] / "RESULTS.md"],
        root=e["root"],
    )
    return e, out
