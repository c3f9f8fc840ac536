"""Every CLI answers --help quickly, without importing espnet."""

import pkgutil
import subprocess
import sys

import pytest

import espnet_llm_plugin.bin as bin_pkg

CLIS = sorted(m.name for m in pkgutil.iter_modules(bin_pkg.__path__) if m.name not in ("espnet_entry",))

PROBE = """
import runpy, sys
sys.argv = [{mod!r}, "--help"]
try:
    runpy.run_module({mod!r}, run_name="__main__")
except SystemExit as e:
    assert e.code in (0, None), e.code
print("ESPNET_IMPORTED" if "espnet2" in sys.modules else "ESPNET_NOT_IMPORTED")
"""


def test_there_are_clis():
    assert {"asr_train", "asr_inference", "list_components", "format_audio"} <= set(CLIS)


@pytest.mark.parametrize("name", CLIS)
def test_help(name):
    mod = f"espnet_llm_plugin.bin.{name}"
    proc = subprocess.run([sys.executable, "-c", PROBE.format(mod=mod)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"usage: python -m {mod}"), proc.stdout[:200]  # the command to type
    assert "ESPNET_NOT_IMPORTED" in proc.stdout, f"{mod} --help imports espnet (slow)"
