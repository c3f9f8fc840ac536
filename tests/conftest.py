"""Shared test setup: markers, and the shared data location."""

import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REAL_SPEECH = SHARED_DATA / "real_speech"


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA GPU (skipped without one)")
    config.addinivalue_line("markers", "slow: end-to-end recipe runs (a minute or more)")
    config.addinivalue_line("markers", "espeak: needs the espeak-ng binary (skipped without it)")


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except ImportError:
        has_gpu = False
    skips = {}
    if not has_gpu:
        skips["gpu"] = pytest.mark.skip(reason="needs a CUDA GPU; none here")
    if shutil.which("espeak-ng") is None:
        skips["espeak"] = pytest.mark.skip(
            reason="espeak-ng is not installed (apt-get install espeak-ng; make test installs it)"
        )
    for item in items:
        for marker, skip in skips.items():
            if marker in item.keywords:
                item.add_marker(skip)


@pytest.fixture
def real_speech_dir() -> Path:
    if not (REAL_SPEECH / "audio").is_dir():
        pytest.skip(f"real recordings not found at {REAL_SPEECH} (shared data is absent)")
    return REAL_SPEECH


@pytest.fixture(scope="session")
def asr_task():
    """``espnet2.tasks.asr`` imported without its offline noise."""
    from espnet_llm_plugin.quiet import quiet_espnet_import

    with quiet_espnet_import():
        import espnet2.tasks.asr as module
    return module
