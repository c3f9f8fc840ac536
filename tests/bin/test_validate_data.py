"""validate_data: audio checks name the utterance; segments are resolved."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.bin.validate_data import validate
from espnet_llm_plugin.fileio.audio import AudioError


def _dir(tmp_path, sr=16000):
    d = tmp_path / "d"
    d.mkdir()
    soundfile.write(tmp_path / "r.wav", np.zeros(sr, dtype=np.float32), sr)
    (d / "wav.scp").write_text(f"rec {tmp_path / 'r.wav'}\n")
    (d / "segments").write_text("u1 rec 0.0 0.5\nu2 rec 0.5 1.0\n")
    (d / "text").write_text("u1 a\nu2\n")
    (d / "utt2spk").write_text("u1 s\nu2 s\n")
    return d


def test_valid_dir_with_segments(tmp_path):
    assert validate(_dir(tmp_path), fs=16000) == 2


def test_wrong_rate_names_file_and_utterance(tmp_path):
    d = _dir(tmp_path, sr=8000)
    with pytest.raises(AudioError, match=r"wav.scp: utterance 'u1'.*8000 Hz, expected 16000"):
        validate(d, fs=16000)
    proc = subprocess.run([sys.executable, "-m", "espnet_llm_plugin.bin.validate_data", str(d), "--fs", "16000"],
                          capture_output=True, text=True)
    assert proc.returncode != 0 and "validate_data: error:" in proc.stderr
