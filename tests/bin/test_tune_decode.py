"""tune_decode: a real grid search over decode options with a tiny random ESPnet model."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "decoding"))
from test_knnlm_decoding import save_asr_model, save_lm  # noqa: E402

from espnet_llm_plugin.bin.tune_decode import combinations, main, parse_grid, pick_best  # noqa: E402


def test_grid_parsing_and_choice():
    grid = parse_grid(["knnlm_lambda=0.1,0.5", "knnlm_k=8"])
    assert grid == [("knnlm_lambda", [0.1, 0.5]), ("knnlm_k", [8])]
    assert combinations(grid) == [{"knnlm_lambda": 0.1, "knnlm_k": 8}, {"knnlm_lambda": 0.5, "knnlm_k": 8}]
    assert pick_best([{"wer": 5.0, "a": 1}, {"wer": 4.0, "a": 2}, {"wer": 4.0, "a": 3}])["a"] == 2
    for bad in (["knnlm_k"], ["=1"], ["a=1", "a=2"]):
        with pytest.raises(ValueError):
            parse_grid(bad)


def test_sweep_writes_best_config_and_resumes(tmp_path):
    lm = save_lm(tmp_path / "lm")
    (tmp_path / "asr").mkdir()
    config, model = save_asr_model(tmp_path / "asr", lm, "transformer")
    rng = np.random.default_rng(0)
    scp, ref = [], []
    for i in range(2):
        wav = tmp_path / f"u{i}.wav"
        sf.write(wav, rng.standard_normal(8000).astype("float32") * 0.1, 16000)
        scp.append(f"u{i} {wav}")
        ref.append(f"u{i} the cat sat")
    (tmp_path / "wav.scp").write_text("\n".join(scp) + "\n")
    (tmp_path / "text").write_text("\n".join(ref) + "\n")
    base = tmp_path / "base.yaml"
    base.write_text("beam_size: 2\nctc_weight: 0.0\nmaxlenratio: 0.0\nminlenratio: 0.0\n")
    argv = [
        "--config",
        str(base),
        "--grid",
        "no_repeat_ngram_size=0,1",
        "--asr_train_config",
        str(config),
        "--asr_model_file",
        str(model),
        "--wav_scp",
        str(tmp_path / "wav.scp"),
        "--ref",
        str(tmp_path / "text"),
        "--work_dir",
        str(tmp_path / "work"),
        "--out_config",
        str(tmp_path / "best.yaml"),
    ]
    main(argv)
    report = json.loads((tmp_path / "best.tuning.json").read_text())
    assert [r["no_repeat_ngram_size"] for r in report["rows"]] == [0, 1]
    best = yaml.safe_load((tmp_path / "best.yaml").read_text())
    chosen = min(report["rows"], key=lambda r: r["wer"])["no_repeat_ngram_size"]
    assert best["no_repeat_ngram_size"] == report["chosen"]["no_repeat_ngram_size"] == chosen
    assert best["beam_size"] == 2  # the base config is kept
    assert "(chosen)" in (tmp_path / "best.tuning.md").read_text()
    # a second run reuses the finished decodes
    logs = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*.log")}
    main(argv)
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*.log")} == logs


def test_missing_files_are_named(tmp_path):
    (tmp_path / "base.yaml").write_text("beam_size: 2\n")
    with pytest.raises(SystemExit, match="wav.scp: file not found"):
        main(
            [
                "--config",
                str(tmp_path / "base.yaml"),
                "--grid",
                "beam_size=1,2",
                "--asr_train_config",
                str(tmp_path / "c.yaml"),
                "--asr_model_file",
                str(tmp_path / "m.pth"),
                "--wav_scp",
                str(tmp_path / "wav.scp"),
                "--ref",
                str(tmp_path / "text"),
                "--work_dir",
                str(tmp_path / "w"),
                "--out_config",
                str(tmp_path / "b.yaml"),
            ]
        )
