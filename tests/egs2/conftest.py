"""Recipe tests: a copy of the demo recipe whose outputs land in a temporary directory."""

import os
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "egs2" / "synthetic" / "llm_asr1"


def _make_recipe(root: Path, configs: dict) -> Path:
    """``root/egs2/synthetic/llm_asr1`` linking the demo recipe's scripts, plus ``configs``
    (relative path -> YAML text)."""
    r = root / "egs2" / "synthetic" / "llm_asr1"
    r.mkdir(parents=True)
    for name in ("llm_asr.sh", "utils", "cmd.sh", "run.sh", "db.sh", "local"):
        os.symlink(os.path.realpath(RECIPE / name), r / name)
    (r / "path.sh").write_text(f". {REPO / 'egs2' / 'TEMPLATE' / 'llm_asr1' / 'path.sh'}\n")
    for rel, text in configs.items():
        (r / rel).parent.mkdir(parents=True, exist_ok=True)
        (r / rel).write_text(text)
    return r


@pytest.fixture(scope="session")
def make_recipe():
    return _make_recipe


@pytest.fixture(scope="session")
def recipe_env():
    """The environment a recipe runs in: this interpreter's venv first on PATH."""
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
