"""prepare_librispeech CLI: help without heavy imports, argument errors, a missing corpus.

The CLI on a fake corpus in the official layout (and its download path) is tested in
tests/corpus/test_librispeech.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from espnet_llm_plugin.bin import prepare_librispeech

MODULE = "espnet_llm_plugin.bin.prepare_librispeech"


def test_help_is_light():
    code = (f"import sys, runpy; sys.argv = ['x', '--help']\n"
            f"try:\n    runpy.run_module('{MODULE}', run_name='__main__')\n"
            f"except SystemExit:\n    pass\n"
            f"print('HEAVY' if {{'torch', 'espnet2', 'transformers'}} & set(sys.modules) else 'LIGHT')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "--librispeech_root" in proc.stdout and "--download" in proc.stdout and "--train_hours" in proc.stdout
    assert proc.stdout.strip().endswith("LIGHT")


def test_missing_corpus_message(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        prepare_librispeech.main(["--librispeech_root", str(tmp_path / "nowhere"), "--data_dir", str(tmp_path / "data")])
    msg = str(err.value.code)
    assert msg.startswith("prepare_librispeech: error:") and "LIBRISPEECH=" in msg and "nowhere" in msg
    assert not (tmp_path / "data").exists()


def test_no_root_without_download(tmp_path):
    with pytest.raises(SystemExit) as err:
        prepare_librispeech.main(["--data_dir", str(tmp_path / "data")])
    assert "LIBRISPEECH=" in str(err.value.code) and "--download true" in str(err.value.code)


def test_bad_option_value():
    with pytest.raises(SystemExit) as err:
        prepare_librispeech.get_parser().parse_args(["--download", "maybe"])
    assert err.value.code == 2
