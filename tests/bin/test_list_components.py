"""list_components prints the registry, and --check verifies it against espnet."""

import subprocess
import sys

from espnet_llm_plugin.registry import components


def test_lists_every_component_and_check_passes_quietly():
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_llm_plugin.bin.list_components", "--check"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    for _, comp in components():
        assert comp.name in proc.stdout
    assert "MISSING" not in proc.stdout and "registered" in proc.stdout
    scorers = proc.stdout.split("decode-time scorers")[1]
    assert all(name in scorers for name in ("no_repeat_ngram", "hf_lm", "knnlm"))
    # the offline import noise of espnet is silenced
    assert "nltk_data" not in proc.stderr and "Flash Attention" not in proc.stdout
