"""whisper_nbest: the CLI decodes a data dir with a prepared Whisper into a decode dir that
rescore_nbest reads, and names a bad input without a traceback."""

import subprocess
import sys

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.rescoring.nbest import read_espnet_nbest


def _data_dir(root):
    from espnet_llm_plugin.corpus.espeak_synth import run_espeak

    d = root / "data"
    d.mkdir()
    wav, sr = run_espeak("the cat sat on the mat", "en-us", 160, 50)
    soundfile.write(root / "u1.wav", wav.astype(np.float32), sr)  # 22.05 kHz: resampled
    (d / "wav.scp").write_text(f"u1 {root / 'u1.wav'}\n")
    (d / "utt2spk").write_text("u1 u1\n")
    return d


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "espnet_llm_plugin.bin.whisper_nbest", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.real_model
@pytest.mark.espeak
def test_cli_writes_a_decode_dir(whisper_tiny_en_dir, tmp_path):
    data = _data_dir(tmp_path)
    proc = _cli(
        "--whisper_dir",
        whisper_tiny_en_dir,
        "--data_dir",
        data,
        "--out_dir",
        tmp_path / "out",
        "--beam_size",
        "2",
        "--nbest",
        "2",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "text").read_text() == "u1 THE CAT SAT ON THE MAT\n"
    hyps = read_espnet_nbest(tmp_path / "out")["u1"]
    assert hyps[0].score == pytest.approx(hyps[0].scores["per_token"] * hyps[0].scores["num_tokens"])


def test_bad_inputs_are_named_without_a_traceback(tmp_path):
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / "config.json").write_text("{}")
    proc = _cli("--whisper_dir", tmp_path / "whisper", "--data_dir", tmp_path / "nope", "--out_dir", tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "whisper_nbest: error:" in proc.stderr and "nope" in proc.stderr
    data = tmp_path / "data"
    data.mkdir()
    (data / "wav.scp").write_text(f"u1 {tmp_path / 'u1.wav'}\n")
    (data / "utt2spk").write_text("u1 u1\n")
    proc = _cli("--whisper_dir", tmp_path / "whisper", "--data_dir", data, "--out_dir", tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "is not a prepared Whisper directory" in proc.stderr and "prepare_pretrained" in proc.stderr
    assert not (tmp_path / "o").exists()
