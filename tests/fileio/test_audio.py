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


def test_truncated_wav_is_refused_naming_the_file(tmp_path):
    soundfile.write(tmp_path / "full.wav", _tone(16000, 1.0), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    assert len(read_audio(str(tmp_path / "full.wav"))[0]) == 16000
    with pytest.raises(
        AudioError, match=r"utterance 'u5' \(.*cut\.wav\): truncated WAV: the header declares 32000 bytes"
    ):
        read_audio(str(tmp_path / "cut.wav"), "u5")


def test_wav_with_extra_chunks_and_streamed_header_is_read(tmp_path):
    import struct

    x = (np.arange(100) % 7).astype("<i2").tobytes()
    fmt = struct.pack("<4sIHHIIHH", b"fmt ", 16, 1, 1, 16000, 32000, 2, 16)
    odd = struct.pack("<4sI", b"LIST", 3) + b"abc\x00"  # odd-sized chunk, padded
    for name, size in (("plain.wav", len(x)), ("streamed.wav", 0xFFFFFFFF)):
        body = b"WAVE" + fmt + odd + struct.pack("<4sI", b"data", size) + x
        (tmp_path / name).write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
        from espnet_llm_plugin.fileio.audio import check_wav_complete

        check_wav_complete(tmp_path / name)  # no error: complete, or a size a stream cannot know
    assert len(read_audio(str(tmp_path / "plain.wav"))[0]) == 100


def test_negative_segment_start_is_refused(tmp_path):
    soundfile.write(tmp_path / "a.wav", _tone(16000, 1.0), 16000)
    with pytest.raises(AudioError, match="utterance 'u1'.*negative"):
        read_audio(str(tmp_path / "a.wav"), "u1", begin=-0.5, end=0.5)


def test_duration_limits_name_the_utterance(caplog):
    from espnet_llm_plugin.fileio.audio import check_duration

    with pytest.raises(AudioError, match=r"utt 'u1': 5 ms of audio, shorter than the minimum 0.1 s"):
        check_duration(0.005, "utt 'u1'", min_duration=0.1)
    with caplog.at_level("WARNING"):
        check_duration(600.0, "utt 'u2'", max_duration=60)
    assert "utt 'u2': 600.0 s of audio, longer than the maximum 60 s" in caplog.text
    with pytest.raises(AudioError, match="u3.*longer than the maximum"):
        check_duration(600.0, "utt 'u3'", max_duration=60, too_long="error")
    check_duration(600.0, "utt 'u4'")  # 0: no limits
