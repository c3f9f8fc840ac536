"""Fixtures shared by the corpus tests: a recipe directory in which local/<corpus>/data.sh
runs as it does in egs2/<corpus>/llm_asr1."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict

import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class DataShRecipe:
    """``root`` holds local -> the repo's local/<corpus> (as the real recipes do), a path.sh
    putting this Python first on PATH, and the db.sh that ``run`` writes."""

    root: Path
    db_var: str

    def run(self, db_value: str, *args: str) -> subprocess.CompletedProcess:
        """``bash local/data.sh ARGS`` with ``<db_var>="<db_value>"`` in db.sh and the variable
        removed from the environment (so only db.sh sets it)."""
        (self.root / "db.sh").write_text(f'{self.db_var}="{db_value}"\n')
        env = {k: v for k, v in os.environ.items() if k != self.db_var}
        return subprocess.run(["bash", "local/data.sh", *args], cwd=self.root, env=env, capture_output=True, text=True)

    def check_needs_db_var(self) -> None:
        """Without the variable in db.sh (and without --download true) data.sh stops and says
        what to set."""
        proc = self.run("")
        assert proc.returncode != 0
        assert f"set {self.db_var} in db.sh" in proc.stderr and "--download true" in proc.stderr

    def prepare(self, corpus: Path, *args: str) -> Path:
        """Run data.sh on ``corpus`` (must succeed); returns the recipe's data/."""
        proc = self.run(str(corpus), *args)
        assert proc.returncode == 0, proc.stderr
        return self.root / "data"


@pytest.fixture
def data_sh_recipe(tmp_path) -> Callable[[str, str], DataShRecipe]:
    """``data_sh_recipe(corpus, db_var)`` -> a DataShRecipe under tmp_path/recipe."""

    def make(corpus: str, db_var: str) -> DataShRecipe:
        root = tmp_path / "recipe"
        root.mkdir()
        # the recipe's own local/ (a link to the repo's local/<corpus>), so data.sh finds
        # local/data_common.sh beside its real directory as it does in egs2/
        (root / "local").symlink_to((REPO / "egs2" / corpus / "llm_asr1" / "local").resolve(strict=True))
        (root / "path.sh").write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
        return DataShRecipe(root, db_var)

    return make


def write_zip(path: Path, files: Dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


@pytest.fixture
def make_zip() -> Callable[[Path, Dict[str, bytes]], Path]:
    """``make_zip(path, {member: bytes})`` writes a zip archive; returns ``path``."""
    return write_zip
