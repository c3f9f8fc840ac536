"""Checks every prepare_<corpus> CLI must pass (help without heavy imports, the errors for a
missing corpus, option validation), shared by tests/bin/test_prepare_<corpus>.py: each
defines ``class Test...(PrepareCliChecks)`` with its ``cli``, and pytest runs the checks.

The CLIs on fake corpora in the official layouts (and their download paths) are tested in
tests/corpus/test_<corpus>.py.
"""

from __future__ import annotations

import importlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class PrepareCli:
    """One prepare CLI: ``name`` (prepare_an4), its root option, the db.sh variable its
    errors point to, and an option of its own that --help must list."""

    name: str
    root_option: str
    db_var: str
    own_option: str

    @property
    def module(self) -> str:
        return f"espnet_llm_plugin.bin.{self.name}"

    def main(self, argv):
        return importlib.import_module(self.module).main(argv)

    def check_help_is_light(self) -> None:
        code = (
            f"import sys, runpy; sys.argv = ['x', '--help']\n"
            f"try:\n    runpy.run_module('{self.module}', run_name='__main__')\n"
            f"except SystemExit:\n    pass\n"
            f"print('HEAVY' if {{'torch', 'espnet2', 'transformers'}} & set(sys.modules) "
            f"else 'LIGHT')"
        )
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        for option in (self.root_option, "--download", self.own_option):
            assert option in proc.stdout
        assert proc.stdout.strip().endswith("LIGHT")

    def check_missing_corpus_message(self, tmp_path: Path) -> None:
        with pytest.raises(SystemExit) as err:
            self.main([self.root_option, str(tmp_path / "nowhere"), "--data_dir", str(tmp_path / "data")])
        msg = str(err.value.code)
        assert msg.startswith(f"{self.name}: error:")
        assert f"{self.db_var}=" in msg and "nowhere" in msg
        assert not (tmp_path / "data").exists()

    def check_no_root_without_download(self, tmp_path: Path) -> None:
        with pytest.raises(SystemExit) as err:
            self.main(["--data_dir", str(tmp_path / "data")])
        msg = str(err.value.code)
        assert f"{self.db_var}=" in msg and "--download true" in msg
        assert not (tmp_path / "data").exists()

    def check_bad_option_value(self) -> None:
        parser = importlib.import_module(self.module).get_parser()
        with pytest.raises(SystemExit) as err:
            parser.parse_args(["--download", "maybe"])
        assert err.value.code == 2


class PrepareCliChecks:
    """Mixin of the tests; a subclass named Test... sets ``cli``."""

    cli: PrepareCli

    def test_help_is_light(self):
        self.cli.check_help_is_light()

    def test_missing_corpus_message(self, tmp_path):
        self.cli.check_missing_corpus_message(tmp_path)

    def test_no_root_without_download(self, tmp_path):
        self.cli.check_no_root_without_download(tmp_path)

    def test_bad_option_value(self):
        self.cli.check_bad_option_value()
