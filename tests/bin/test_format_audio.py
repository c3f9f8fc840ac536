"""format_audio: resampling, segments, and bad input that leaves no output behind."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.bin.format_audio import format_data_dir
from espnet_llm_plugin.fileio.audio import AudioError
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, load_data_dir, read_scp


def _corpus(tmp_path, rates=(16000, 22050), text=None):
    d = tmp_path / "data"
    d.mkdir()
    wav, txt = [], []
    for i, sr in enumerate(rates):
        p = tmp_path / f"u{i}.wav"
        soundfile.write(p, (0.1 * np.random.RandomState(i).randn(sr)).astype(np.float32), sr)
        wav.append(f"u{i} {p}\n")
        txt.append(f"u{i} word {i}\n")
    (d / "wav.scp").write_text("".join(wav))
    (d / "text").write_text(text if text is not None else "".join(txt))
    (d / "utt2spk").write_text("".join(f"u{i} s\n" for i in range(len(rates))))
    return d


def test_formats_and_resamples(tmp_path):
    d = _corpus(tmp_path)
    out = tmp_path / "dump"
    assert format_data_dir(d, out, fs=16000) == 2
    data = load_data_dir(out)
    for utt, path in data.wav_scp.items():
        info = soundfile.info(path)
        assert info.samplerate == 16000 and info.subtype == "PCM_16"
        assert abs(info.frames - 16000) <= 1  # one second each
    assert read_scp(out / "utt2dur") == {"u0": "1.000", "u1": "1.000"}


def test_segments_are_cut(tmp_path):
    d = _corpus(tmp_path, rates=(16000,))
    (d / "segments").write_text("s1 u0 0.0 0.25\ns2 u0 0.5 1.0\n")
    (d / "text").write_text("s1 a\ns2 b\n")
    (d / "utt2spk").write_text("s1 x\ns2 x\n")
    format_data_dir(d, tmp_path / "dump")
    assert read_scp(tmp_path / "dump" / "utt2num_samples") == {"s1": "4000", "s2": "8000"}


def test_wrong_sample_rate_is_an_error_without_resampling(tmp_path):
    d = _corpus(tmp_path)
    with pytest.raises(AudioError, match="utterance 'u1'.*22050 Hz, expected 16000"):
        format_data_dir(d, tmp_path / "dump", allow_resample=False)
    assert not (tmp_path / "dump").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dump")] == []


def test_missing_or_unreadable_audio_names_utterance_and_leaves_nothing(tmp_path):
    d = _corpus(tmp_path)
    (tmp_path / "u1.wav").write_bytes(b"garbage")
    with pytest.raises(AudioError, match="utterance 'u1'.*unreadable"):
        format_data_dir(d, tmp_path / "dump")
    (tmp_path / "u1.wav").unlink()
    with pytest.raises(AudioError, match="utterance 'u1'.*not found"):
        format_data_dir(d, tmp_path / "dump")
    assert not (tmp_path / "dump").exists()


def test_mismatched_ids_and_cli_exit_code(tmp_path):
    d = _corpus(tmp_path, text="u0 a\nu9 b\n")
    with pytest.raises(DataDirError, match="'u9'"):
        format_data_dir(d, tmp_path / "dump")
    proc = subprocess.run(
        [sys.executable, "-m", "espnet_llm_plugin.bin.format_audio", str(d), str(tmp_path / "dump")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "format_audio: error:" in proc.stderr and "u9" in proc.stderr
    assert not (tmp_path / "dump").exists()


def test_real_recordings_flow_through(tmp_path, real_speech_dir):
    d = tmp_path / "real"
    d.mkdir()
    names = sorted(p.name for p in (real_speech_dir / "audio").iterdir())
    (d / "wav.scp").write_text("".join(f"r{i} {real_speech_dir / 'audio' / n}\n" for i, n in enumerate(names)))
    (d / "utt2spk").write_text("".join(f"r{i} r{i}\n" for i in range(len(names))))
    assert format_data_dir(d, tmp_path / "dump", require_text=False) == len(names)
    for path in read_scp(tmp_path / "dump" / "wav.scp").values():
        assert soundfile.info(path).samplerate == 16000


def test_speed_perturbation_adds_scaled_copies(tmp_path):
    d = _corpus(tmp_path)
    out = tmp_path / "dump"
    assert format_data_dir(d, out, speed_perturb_factors=(0.9, 1.0, 1.1)) == 6
    durs = {k: float(v) for k, v in read_scp(out / "utt2dur").items()}
    assert durs["u0"] == pytest.approx(1.0, abs=1e-3)
    assert durs["sp0.9-u0"] == pytest.approx(1 / 0.9, abs=2e-3)
    assert durs["sp1.1-u1"] == pytest.approx(1 / 1.1, abs=2e-3)
    data = load_data_dir(out)
    assert data.text["sp0.9-u1"] == data.text["u1"] == "word 1"
    assert data.utt2spk["sp1.1-u0"] == "sp1.1-s"


def test_bad_speed_factors_are_rejected():
    import argparse

    from espnet_llm_plugin.bin.format_audio import parse_factors

    assert parse_factors("0.9,1.0 1.1") == (0.9, 1.0, 1.1)
    for bad in ("", "fast", "0 1"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_factors(bad)
