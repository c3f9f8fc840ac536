"""Smoke tests of the LLM-ASR benchmarks (bench/llm_decoding_rtf.py, bench/llm_train_step.py).

Each runs in ``--quick`` mode (tiny random Llama, ~15 s in all) and must write its JSON +
markdown; no timing is asserted (speed targets live in the benchmarks themselves).
"""

import json
import subprocess
import sys

import pytest
from bench_loader import BENCH, load

BENCHMARKS = sorted(p.stem for p in BENCH.glob("*.py") if p.stem not in ("common", "run_all", "report"))


def test_every_benchmark_is_listed():
    assert {
        "llm_decoding_rtf",
        "llm_train_step",
        "datastore_search",
        "knnlm_decoding",
        "rescoring_throughput",
        "retrieval_embedding",
        "unit_extraction",
    } <= set(BENCHMARKS)


@pytest.mark.parametrize("name", BENCHMARKS)
def test_help(name):
    out = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert "--quick" in out.stdout and "--device" in out.stdout and "--seed" in out.stdout


def test_common_write_results(tmp_path):
    common = load("common")
    rows = [{"method": "a", "sec": 1.23456}, {"method": "b", "sec": None}]
    md = common.write_results("x", {"machine": {"cpu": 1}}, rows, ["method", "sec"], tmp_path, notes=["note one"])
    data = json.loads((tmp_path / "x.json").read_text())
    assert data["rows"] == rows and data["machine"] == {"cpu": 1}
    assert (tmp_path / "x.md").read_text() == md
    assert "| a | 1.23 |" in md and "| b | - |" in md and "- note one" in md
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files left


def test_decoding_quick_writes_results(tmp_path):
    bench = load("llm_decoding_rtf")
    out = bench.main(["--quick", "--device", "cpu", "--threads", "1", "--out_dir", str(tmp_path)])
    data = json.loads((tmp_path / "llm_decoding_rtf.json").read_text())
    assert [r["method"] for r in data["rows"]] == list(bench.METHODS)
    for r in data["rows"]:
        assert r["sec_per_utt"] > 0 and r["tokens_per_s"] > 0
    assert data["speedup_ours_cached_vs_espnet_beam"] == out["speedup_ours_cached_vs_espnet_beam"]
    assert data["config"]["tokens"] == bench.PRESETS["quick"]["tokens"]
    assert "espnet_batch_score" in data and "best_hyp_equal_cached_vs_uncached" in data
    assert "ours_cached" in (tmp_path / "llm_decoding_rtf.md").read_text()
    # the beam-search target pair, timed once each under --quick; no real model under --quick
    ratio = data["ours_cached_over_hf_generate"]["random"]
    assert ratio["pairs"] == 1 and ratio["wall"] > 0 and ratio["cpu"] > 0
    assert data["real_model"] is None and "--quick" in data["real_model_skipped"]
    assert {r["model"] for r in data["rows"]} == {"random"}


def test_decoding_pairs_are_interleaved_and_ratio_is_the_median():
    bench = load("llm_decoding_rtf")
    calls = []

    def fake(name):
        def decode(x, n):
            calls.append(name)
            return [0] * n

        return decode

    import torch

    timings, outputs = bench.time_decoders(
        {"ours_cached": fake("a"), "ours_uncached": fake("u"), "hf_generate": fake("b")},
        [torch.zeros(2, 3)],
        tokens=4,
        repeats=3,
    )
    # warm-up, then round 0 in order, round 1 reversed (paired methods only), round 2 in order
    assert calls == ["a", "u", "b"] + ["a", "u", "b"] + ["b", "a"] + ["a", "b"]
    assert [len(timings[m][0]) for m in ("ours_cached", "ours_uncached", "hf_generate")] == [3, 1, 3]
    assert outputs["ours_uncached"] == [0] * 4
    ratio = bench.paired_ratio(
        {"ours_cached": ([1.0, 3.0, 10.0], [1.0, 1.0, 1.0]), "hf_generate": ([1.0, 1.0, 2.0], [2.0, 2.0, 2.0])}
    )
    assert ratio == {"wall": 3.0, "cpu": 0.5, "pairs": 3, "wall_min": 1.0, "wall_max": 5.0}
    assert bench.paired_ratio({"ours_cached": ([1.0], [1.0])}) is None


def test_decoding_real_model_is_skipped_with_the_reason_when_not_prepared(tmp_path, monkeypatch):
    monkeypatch.setenv("ESPNET_LLM_PLUGIN_CACHE", str(tmp_path / "empty_cache"))
    bench = load("llm_decoding_rtf")
    assert bench.prepared_real_model()[0] is None
    bench.main(
        [
            "--quick",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--methods",
            "ours_cached,hf_generate",
            "--real_model",
            "on",
            "--out_dir",
            str(tmp_path / "out"),
        ]
    )
    data = json.loads((tmp_path / "out" / "llm_decoding_rtf.json").read_text())
    assert "prepare_pretrained smollm2-135m-instruct" in data["real_model_skipped"]
    assert list(data["ours_cached_over_hf_generate"]) == ["random"]
    assert not (tmp_path / "empty_cache").exists()  # nothing prepared or downloaded
    assert "smollm2-135m-instruct rows skipped" in (tmp_path / "out" / "llm_decoding_rtf.md").read_text()


@pytest.mark.real_model
def test_decoding_real_model_rows(smollm2_dir, tmp_path):
    bench = load("llm_decoding_rtf")
    assert bench.prepared_real_model() == (smollm2_dir, None)
    bench.main(
        [
            "--quick",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--methods",
            "ours_cached,hf_generate",
            "--real_model",
            "on",
            "--real_tokens",
            "3",
            "--repeats",
            "2",
            "--out_dir",
            str(tmp_path),
        ]
    )
    data = json.loads((tmp_path / "llm_decoding_rtf.json").read_text())
    real = [r for r in data["rows"] if r["model"] == "smollm2-135m-instruct"]
    assert [r["method"] for r in real] == ["ours_cached", "hf_generate"]
    assert all(r["timings"] == 2 and r["tokens_per_s"] > 0 for r in real)
    assert data["real_model"]["tokens"] == 3 and data["real_model_skipped"] is None
    assert data["ours_cached_over_hf_generate"]["smollm2-135m-instruct"]["pairs"] == 2


def test_train_step_quick_writes_results(tmp_path):
    bench = load("llm_train_step")
    bench.main(["--quick", "--in_process", "--device", "cpu", "--threads", "1", "--out_dir", str(tmp_path)])
    data = json.loads((tmp_path / "llm_train_step.json").read_text())
    # default --gradient_checkpointing both: every scheme without and with it
    assert sorted((r["scheme"], r["gradient_checkpointing"]) for r in data["rows"]) == sorted(
        (s, c) for s in bench.SCHEMES for c in (False, True)
    )
    by = {r["scheme"]: r for r in data["rows"] if not r["gradient_checkpointing"]}
    assert by["frozen"]["trainable_params"] < by["lora"]["trainable_params"] < by["full"]["trainable_params"]
    for r in data["rows"]:
        assert r["step_s"] > 0 and r["train_mem_bytes"] >= 0
        if r["gradient_checkpointing"]:  # memory at this size is near page noise: zero is possible
            assert r["mem_vs_no_ckpt"] >= 0 and r["time_vs_no_ckpt"] > 0
    hidden = bench.PRESETS["quick"]["hidden"]
    ratios = data["lora_over_full_memory"]
    assert [(r["hidden"], r["gradient_checkpointing"]) for r in ratios] == [(hidden, False), (hidden, True)]
    assert ratios[1]["lora_ckpt_over_full_no_ckpt"] >= 0 and "lora_ckpt_over_full_no_ckpt" not in ratios[0]
    assert isinstance(data["target_met_at_main_size_with_checkpointing"], bool)
    md = (tmp_path / "llm_train_step.md").read_text()
    assert "gradient checkpointing on: LoRA/full memory" in md and "| gradient_checkpointing |" in md
    # bench/report.py renders this JSON (its "training step time and peak memory" section)
    section = load("report").render_train_step(data)
    assert f"| lora | True | {hidden} |" in section and f"| lora | False | {hidden} |" in section
    assert "gradient checkpointing on: LoRA/full memory" in section and "LoRA with / full without" in section


def test_train_step_gradient_checkpointing_option():
    parse = load("llm_train_step").build_parser().parse_args
    assert parse([]).gradient_checkpointing == "both"
    assert parse(["--gradient_checkpointing"]).gradient_checkpointing == "on"
    assert parse(["--gradient_checkpointing", "off"]).gradient_checkpointing == "off"
    with pytest.raises(SystemExit):
        parse(["--gradient_checkpointing", "sometimes"])


def test_bad_options_are_rejected(tmp_path):
    dec, train = load("llm_decoding_rtf"), load("llm_train_step")
    with pytest.raises(ValueError, match="--methods"):
        dec.main(["--quick", "--methods", "nope", "--out_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="--schemes"):
        train.main(["--quick", "--schemes", "half", "--out_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="needs --device cuda"):
        dec.main(["--preset", "1b", "--device", "cpu", "--out_dir", str(tmp_path)])
    assert not list(tmp_path.iterdir())
