"""whisper_nbest: the CLI decodes a data dir with a prepared Whisper (a tiny random one, and
the real tiny.en) into a decode dir that rescore_nbest reads, and names a bad input without a
traceback."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decoding"))
from tiny_whisper import build_tiny_whisper_dir  # noqa: E402

from espnet_llm_plugin.rescoring.nbest import read_espnet_nbest, read_score_info  # noqa: E402


def _data_dir(root, wavs):
    """``{utt: (samples, rate)}`` -> a Kaldi data dir with wav.scp and utt2spk."""
    d = root / "data"
    d.mkdir()
    for utt, (wav, sr) in wavs.items():
        soundfile.write(root / f"{utt}.wav", wav.astype(np.float32), sr)
    (d / "wav.scp").write_text("".join(f"{u} {root / (u + '.wav')}\n" for u in wavs))
    (d / "utt2spk").write_text("".join(f"{u} {u}\n" for u in wavs))
    return d


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "espnet_llm_plugin.bin.whisper_nbest", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_on_a_tiny_whisper(tmp_path):
    whisper = build_tiny_whisper_dir(tmp_path / "whisper")
    rng = np.random.RandomState(0)
    data = _data_dir(tmp_path, {"a": (0.1 * rng.randn(8000), 8000), "b": (0.1 * rng.randn(16000), 16000)})
    proc = _cli("--whisper_dir", whisper, "--data_dir", data, "--output_dir", tmp_path / "out",
                "--beam_size", "3", "--nbest", "2", "--max_new_tokens", "6", "--device", "auto")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["utterances"] == 2 and summary["audio_s"] == pytest.approx(2.0)
    info = read_score_info(tmp_path / "out")
    assert (info["score_kind"], info["beam_size"], info["max_new_tokens"]) == ("per_token", 3, 6)
    hyps = read_espnet_nbest(tmp_path / "out")
    assert sorted(hyps) == ["a", "b"] and all(1 <= len(h) <= 2 for h in hyps.values())
    assert all(h.num_tokens <= 6 and h.text == h.text.upper() for hs in hyps.values() for h in hs)
    assert (tmp_path / "out" / "1best_recog" / "text_raw").is_file()


def test_help_names_the_options():
    proc = _cli("--help")
    assert proc.returncode == 0
    for option in ("--whisper_dir", "--data_dir", "--output_dir", "--beam_size", "--nbest", "--max_new_tokens",
                   "--text_form", "--device", "--key_file"):  # fmt: skip
        assert option in proc.stdout


@pytest.mark.real_model
@pytest.mark.espeak
def test_cli_with_whisper_tiny_en(whisper_tiny_en_dir, tmp_path):
    from espnet_llm_plugin.corpus.espeak_synth import run_espeak

    data = _data_dir(tmp_path, {"u1": run_espeak("the cat sat on the mat", "en-us", 160, 50)})  # 22.05 kHz
    proc = _cli("--whisper_dir", whisper_tiny_en_dir, "--data_dir", data, "--out_dir", tmp_path / "out",
                "--beam_size", "2", "--nbest", "2", "--device", "cpu")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "text").read_text() == "u1 THE CAT SAT ON THE MAT\n"
    assert "u1 The cat sat on the mat." in (tmp_path / "out" / "1best_recog" / "text_raw").read_text()
    per_token = read_espnet_nbest(tmp_path / "out", first_pass_score="as_is")["u1"][0]
    total = read_espnet_nbest(tmp_path / "out")["u1"][0]
    assert total.score == pytest.approx(per_token.score * per_token.num_tokens)


def test_bad_inputs_are_named_without_a_traceback(tmp_path):
    (tmp_path / "whisper").mkdir()
    (tmp_path / "whisper" / "config.json").write_text("{}")
    proc = _cli("--whisper_dir", tmp_path / "whisper", "--data_dir", tmp_path / "nope", "--out_dir", tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "whisper_nbest: error:" in proc.stderr and "nope" in proc.stderr
    data = _data_dir(tmp_path, {"u1": (np.zeros(1600), 16000)})
    proc = _cli("--whisper_dir", tmp_path / "whisper", "--data_dir", data, "--out_dir", tmp_path / "o")
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "is not a prepared Whisper directory" in proc.stderr and "prepare_pretrained" in proc.stderr
    proc = _cli("--whisper_dir", tmp_path / "whisper", "--data_dir", data, "--out_dir", tmp_path / "o",
                "--beam_size", "2", "--nbest", "3")  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr and "nbest <= beam_size" in proc.stderr
    assert not (tmp_path / "o").exists()
