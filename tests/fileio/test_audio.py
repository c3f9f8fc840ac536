"""Audio reading: formats, pipes, segments, resampling, errors."""

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.fileio.audio import AudioError, check_sample_rate, read_audio, resample


def _tone(sr, seconds=0.5, f=440.0):
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * f * t)).astype(np.float32)


def test_reads_wav_flac_and_stereo_as_mono(tmp_path):
    x = _tone(16000)
    soundfile.write(tmp_path / "a.flac", x, 16000)
    soundfile.write(tmp_path / "b.wav", np.stack([x, x], axis=1), 22050)
    y, sr = read_audio(str(tmp_path / "a.flac"))
    assert sr == 16000 and y.dtype == np.float32 and np.abs(y - x).max() < 1e-3
    y, sr = read_audio(str(tmp_path / "b.wav"))
    assert sr == 22050 and y.ndim == 1 and len(y) == len(x)


def test_pipe_command_and_segment(tmp_path):
    x = _tone(16000, 2.0)
    soundfile.write(tmp_path / "a.wav", x, 16000)
    y, sr = read_audio(f"cat {tmp_path / 'a.wav'} |", "u1", begin=0.5, end=1.0)
    assert sr == 16000 and len(y) == 8000
    assert np.abs(y - x[8000:16000]).max() < 1e-3


def test_errors_name_the_utterance(tmp_path):
    with pytest.raises(AudioError, match="utterance 'u1'.*not found"):
        read_audio(str(tmp_path / "nope.wav"), "u1")
    (tmp_path / "bad.wav").write_bytes(b"this is not audio")
    with pytest.raises(AudioError, match="utterance 'u2'.*unreadable audio"):
        read_audio(str(tmp_path / "bad.wav"), "u2")
    with pytest.raises(AudioError, match="utterance 'u3'.*command failed"):
        read_audio("false |", "u3")
    with pytest.raises(AudioError, match="sample rate is 8000 Hz, expected 16000"):
        check_sample_rate(8000, 16000, "utterance 'u4'")


def test_resample_keeps_duration_and_pitch():
    x = _tone(22050, 1.0, f=300.0)
    y = resample(x, 22050, 16000)
    assert abs(len(y) - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(y))
    peak_hz = np.argmax(spectrum) * 16000 / len(y)
    assert abs(peak_hz - 300.0) < 2.0


def test_real_recordings_in_users_formats(real_speech_dir):
    for name in ("2412-153948-0000.flac", "LJ002-0020.wav", "common_voice_en_651325.mp3"):
        y, sr = read_audio(str(real_speech_dir / "audio" / name), name)
        assert sr in (16000, 22050, 44100, 48000) and len(y) > sr  # over a second
        assert np.isfinite(y).all() and np.abs(y).max() <= 1.0
