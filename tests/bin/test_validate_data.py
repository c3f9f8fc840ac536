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
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_llm_plugin.bin.validate_data", str(d), "--fs", "16000"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "validate_data: error:" in proc.stderr


def _short_and_long(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    soundfile.write(tmp_path / "short.wav", np.zeros(80, dtype=np.float32), 16000)  # 5 ms
    soundfile.write(tmp_path / "ok.wav", np.zeros(16000, dtype=np.float32), 16000)
    (d / "wav.scp").write_text(f"u_ok {tmp_path / 'ok.wav'}\nu_short {tmp_path / 'short.wav'}\n")
    (d / "text").write_text("u_ok a\nu_short b\n")
    return d


def test_too_short_utterance_is_named(tmp_path):
    d = _short_and_long(tmp_path)
    with pytest.raises(AudioError, match=r"utterance 'u_short'.*5 ms of audio, shorter than the minimum 0.1 s"):
        validate(d)
    assert validate(d, min_duration=0.0) == 2
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_llm_plugin.bin.validate_data", str(d)], capture_output=True, text=True
    )
    assert proc.returncode != 0 and "u_short" in proc.stderr and "Traceback" not in proc.stderr


def test_too_long_utterance_warns_or_is_refused(tmp_path, caplog):
    d = _short_and_long(tmp_path)
    with caplog.at_level("WARNING"):
        assert validate(d, min_duration=0.0, max_duration=0.5) == 2
    assert "utterance 'u_ok'" in caplog.text and "longer than the maximum 0.5 s" in caplog.text
    with pytest.raises(AudioError, match="utterance 'u_ok'.*longer than the maximum"):
        validate(d, min_duration=0.0, max_duration=0.5, too_long="error")


def test_truncated_wav_is_named(tmp_path):
    d = _dir(tmp_path)
    data = (tmp_path / "r.wav").read_bytes()
    (tmp_path / "r.wav").write_bytes(data[: len(data) - 1000])
    with pytest.raises(AudioError, match=r"r\.wav\): truncated WAV"):
        validate(d)
