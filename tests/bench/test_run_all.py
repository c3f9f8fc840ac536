"""Tests of bench/run_all.py (runs every benchmark, combines results) and bench/report.py.

The real benchmarks are never run here: run_all gets a temporary bench dir with tiny fake
benchmark scripts, and report.py gets hand-made results in the real JSON shapes.
"""

import json
from pathlib import Path

import pytest
from bench_loader import BENCH, load

run_all = load("run_all")
report = load("report")

MACHINE = {
    "platform": "Linux",
    "processor": "x86_64",
    "python": "3.11.7",
    "torch": "2.11.0",
    "cpu_count": 2,
    "torch_threads": 1,
    "device": "cpu",
    "load_average_1min": 3.0,
}

# Small copies of the JSON each real benchmark writes (same keys, fewer rows).
DATASTORE = {
    "machine": MACHINE,
    "copy_bandwidth_gb_s": 4.7,
    "gemm_gflop_s": 7.5,
    "args": {"device": "auto", "quick": True, "sizes": None, "dim": 256, "nq": 64, "k": 16},
    "rows": [
        {
            "size": 10000,
            "method": "Flat",
            "dim": 256,
            "nq": 64,
            "k": 16,
            "device": "cpu",
            "build_s": 0.0011,
            "qps": 800.2,
            "ms_per_batch": 80.0,
            "recall_at_1": 1.0,
            "fraction_of_bound": 0.55,
        },
        {
            "size": 10000,
            "method": "IVF256,PQ16",
            "dim": 256,
            "nq": 64,
            "k": 16,
            "device": "cpu",
            "build_s": 225.1,
            "qps": 1196.2,
            "ms_per_batch": 53.5,
            "recall_at_1": 1.0,
        },
        {
            "size": 100000,
            "method": "Flat",
            "dim": 256,
            "nq": 64,
            "k": 16,
            "device": "cpu",
            "build_s": 0.57,
            "qps": 31.7,
            "ms_per_batch": 2015.9,
            "recall_at_1": 1.0,
            "fraction_of_bound": 0.218,
        },
        {
            "size": 100000,
            "method": "IVF256,PQ16",
            "dim": 256,
            "nq": 64,
            "k": 16,
            "device": "cpu",
            "build_s": 223.3,
            "qps": 670.5,
            "ms_per_batch": 95.5,
            "recall_at_1": 1.0,
        },
    ],
}
KNNLM = {
    "machine": MACHINE,
    "encode": {"keys": 100000, "encode_s": 4.04, "keys_per_s": 24730.1},
    "args": {"datastore_size": 100000},
    "datastore_entries": 100000,
    "rows": [
        {"scorer": "base LM only", "s_per_utt": 0.089, "tokens": 31.0, "ms_per_step": 2.87, "overhead": 0.0},
        {
            "scorer": "kNN-LM faiss Flat",
            "s_per_utt": 0.544,
            "tokens": 19.0,
            "ms_per_step": 28.4,
            "overhead": 8.89,
            "build_s": 0.0493,
        },
    ],
}
DECODING = {
    "benchmark": "llm_decoding_rtf",
    "config": {
        "vocab": 8000,
        "hidden": 384,
        "beam": 10,
        "tokens": 100,
        "dtype": "float32",
        "preset": "cpu",
        "params": 21952896,
    },
    "machine": MACHINE,
    "speedup_ours_cached_vs_espnet_beam": 15.77,
    "target_speedup": 5.0,
    "target_met": True,
    "rows": [
        {
            "method": "ours_cached",
            "sec_per_utt": 23.74,
            "tokens_per_s": 4.21,
            "cpu_s_per_utt": 3.59,
            "rtf": 4.95,
            "utts": 1,
            "ours_cached_speedup": 1.0,
        },
        {
            "method": "espnet_beam",
            "sec_per_utt": 374.5,
            "tokens_per_s": 0.267,
            "cpu_s_per_utt": 66.1,
            "rtf": 78.0,
            "utts": 1,
            "ours_cached_speedup": 15.77,
        },
    ],
}
TRAIN = {
    "benchmark": "llm_train_step",
    "config": {"hidden": 384, "batch": 4},
    "machine": MACHINE,
    "memory_measure": "peak RSS (VmHWM) minus RSS before the model was built",
    "lora_over_full_memory": [
        {"hidden": 384, "llm_params_M": 21.95, "lora_over_full_memory": 1.05, "target_met": False}
    ],
    "rows": [
        {
            "scheme": "frozen",
            "hidden": 384,
            "step_s": 4.61,
            "tokens_per_s": 115.7,
            "train_mem_mib": 378.0,
            "peak_mib": 1078.6,
            "llm_params_M": 21.95,
            "trainable_M": 0.443,
            "sweep_only": False,
        },
        {
            "scheme": "lora",
            "hidden": 384,
            "step_s": 5.6,
            "tokens_per_s": 95.3,
            "train_mem_mib": 686.7,
            "peak_mib": 1387.4,
            "llm_params_M": 21.95,
            "trainable_M": 1.574,
            "sweep_only": False,
        },
    ],
}
RESCORING = {
    "name": "rescoring_throughput",
    "quick": True,
    "machine": MACHINE,
    "num_utts": 20,
    "nbest": 10,
    "rows": [
        {
            "device": "cpu",
            "mode": "text",
            "batch_size": 1,
            "hyps": 200,
            "seconds": 20.2,
            "hyps_per_s": 9.9,
            "max_abs_diff_vs_bs1": 0.0,
            "speedup_vs_one_by_one": 1.0,
        },
        {
            "device": "cpu",
            "mode": "speech+text",
            "batch_size": 8,
            "hyps": 200,
            "seconds": 7.05,
            "hyps_per_s": 28.4,
            "max_abs_diff_vs_bs1": 7.6e-06,
            "speedup_vs_one_by_one": 5.33,
        },
    ],
}
EMBEDDING = {
    "preset": "cpu",
    "settings": {"hidden": 384},
    "pooling": "mean",
    "parameters": 22145664,
    "machine": MACHINE,
    "rows": [
        {
            "side": "speech",
            "sequences": 128,
            "mean_tokens": 158.0,
            "batch": 32,
            "seconds": 89.3,
            "sequences_per_s": 1.4,
            "tokens_per_s": 226.6,
            "dim": 384,
        }
    ],
}
UNITS = {
    "machine": MACHINE,
    "quick": True,
    "kmeans": [
        {"frames": 20000, "num_units": 500, "dim": 256, "frames_used": 20000, "train_s": 3.11, "frames_per_s": 6429.9}
    ],
    "rows": [
        {
            "features": "fbank",
            "dim": 80,
            "num_units": 500,
            "utterances": 20,
            "audio_s": 113.3,
            "wall_s": 5.88,
            "audio_s_per_s": 19.3,
            "features_share": 0.91,
            "model": "-",
        }
    ],
}
WER_RESULT = {
    "ref": "dump/raw/test/text",
    "hyp": "exp/m/d/test/text",
    "missing_hypotheses": 0,
    "wer": {
        "ref_tokens": 100,
        "correct": 80,
        "substitutions": 15,
        "deletions": 5,
        "insertions": 2,
        "utterances": 10,
        "utterances_with_error": 6,
        "errors": 22,
        "error_rate": 22.0,
    },
    "cer": {
        "ref_tokens": 400,
        "correct": 370,
        "substitutions": 20,
        "deletions": 10,
        "insertions": 3,
        "utterances": 10,
        "utterances_with_error": 6,
        "errors": 33,
        "error_rate": 8.25,
    },
    "name": "test",
    "rtf": 0.05,
}


def ok(name, result, variant=None):
    return {
        "key": name if variant is None else f"{name}@{variant}",
        "benchmark": name,
        "variant": variant,
        "status": "ok",
        "wall_s": 1.5,
        "result": result,
    }


def write_wer_result(repo_root, model, decoding, test_set, wer):
    path = repo_root / "egs2" / "demo" / "llm_asr1" / "exp" / model / decoding / test_set / "score"
    path.mkdir(parents=True)
    res = json.loads(json.dumps(WER_RESULT))
    res["wer"]["error_rate"] = wer
    (path / "result.json").write_text(json.dumps(res))


# ---------------------------------------------------------------------------- run_all
GOOD_SCRIPT = '''\
"""Fake datastore benchmark. ``--preset big`` a huge index (CUDA only)."""
import argparse, json, pathlib
PAYLOAD = "@PAYLOAD@"
p = argparse.ArgumentParser()
p.add_argument("--quick", action="store_true")
p.add_argument("--device")
p.add_argument("--out_dir", type=pathlib.Path)
p.add_argument("--preset")
a = p.parse_args()
a.out_dir.mkdir(parents=True, exist_ok=True)
payload = json.loads(PAYLOAD)
payload["args"]["quick"] = a.quick
(a.out_dir / "datastore_search.json").write_text(json.dumps(payload))
(a.out_dir / "datastore_search.md").write_text("# fake")
'''

BAD_SCRIPT = '''\
"""A benchmark that fails on its input."""
raise ValueError("fake_failure: bad input in config key 'sizes'")
'''


@pytest.fixture
def fake_bench(tmp_path):
    bench = tmp_path / "bench"
    bench.mkdir()
    (bench / "datastore_search.py").write_text(GOOD_SCRIPT.replace('"@PAYLOAD@"', json.dumps(json.dumps(DATASTORE))))
    (bench / "broken_bench.py").write_text(BAD_SCRIPT)
    (bench / "common.py").write_text("raise SystemExit('helpers must not be run')\n")
    return bench


def test_run_all_combines_results_and_records_failure(tmp_path, fake_bench):
    repo = tmp_path / "repo"
    write_wer_result(repo, "asr_llm", "decode_beam5", "test", 22.0)
    write_wer_result(repo, "asr_base", "decode_beam10", "test", 30.0)
    out = tmp_path / "results"
    combined = run_all.main(
        [
            "--bench_dir",
            str(fake_bench),
            "--out_dir",
            str(out),
            "--device",
            "cpu",
            "--repo_root",
            str(repo),
            "--date",
            "2030-01-02",
            "--timeout",
            "120",
        ]
    )
    stem = f"2030-01-02-{combined['machine_name']}"
    assert combined["machine_name"].startswith(run_all._slug(run_all.socket.gethostname().split(".")[0], 20))
    saved = json.loads((out / f"{stem}.json").read_text())
    assert saved["mode"] == "quick" and saved["environment"]["cpu_count"] >= 1
    by_key = {r["key"]: r for r in saved["benchmarks"]}
    assert set(by_key) == {"broken_bench", "datastore_search", "datastore_search@big"}  # not common

    good = by_key["datastore_search"]
    assert good["status"] == "ok" and good["wall_s"] >= 0
    assert good["result"]["rows"] == DATASTORE["rows"] and good["result"]["args"]["quick"] is True
    assert (out / stem / "datastore_search" / "datastore_search.json").is_file()

    bad = by_key["broken_bench"]
    assert bad["status"] == "failed" and bad["returncode"] != 0
    assert "fake_failure" in bad["error"].splitlines()[0]
    assert "fake_failure" in Path(bad["log"]).read_text()

    assert run_all.exit_status(combined) == 1  # make bench fails when a benchmark failed
    preset = by_key["datastore_search@big"]
    assert preset["status"] == "skipped" and "CUDA" in preset["reason"]

    md = (out / f"{stem}.md").read_text()
    assert "| broken_bench | failed |" in md
    assert "| 100000 | Flat | cpu |" in md  # datastore rows in the QPS section
    assert "not run: no bench/llm_decoding_rtf.py in this run" in md
    assert f"![qps_vs_size]({stem}_qps_vs_size.png)" in md and f"![wer]({stem}_wer.png)" in md
    for png in (out / f"{stem}_qps_vs_size.png", out / f"{stem}_wer.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| demo | asr_llm | decode_beam5 | test | 22 |" in md


def test_run_all_only_and_timeout(tmp_path, fake_bench):
    (fake_bench / "hangs.py").write_text("import signal\nsignal.pause()\n")
    out = tmp_path / "results"
    combined = run_all.main(
        [
            "--bench_dir",
            str(fake_bench),
            "--out_dir",
            str(out),
            "--device",
            "cpu",
            "--only",
            "hangs",
            "--timeout",
            "1",
            "--repo_root",
            str(tmp_path),
        ]
    )
    by_key = {r["key"]: r for r in combined["benchmarks"]}
    assert by_key["hangs"]["status"] == "timeout" and "killed after 1 s" in by_key["hangs"]["error"]
    assert by_key["datastore_search"]["status"] == "skipped" and run_all.exit_status(combined) == 1
    assert "not selected" in by_key["datastore_search"]["reason"]
    md = (out / f"{combined['date']}-{combined['machine_name']}.md").read_text()
    assert "No qps_vs_size plot" in md and "No wer plot: no recipe results found" in md
    assert not list(out.glob("*.png"))


def test_run_all_rejects_unknown_benchmark(fake_bench, tmp_path):
    with pytest.raises(ValueError, match="unknown benchmark 'nope'.*datastore_search"):
        run_all.main(["--bench_dir", str(fake_bench), "--out_dir", str(tmp_path), "--only", "nope", "--device", "cpu"])
    with pytest.raises(ValueError, match="NAME=ARGS"):
        run_all.parse_bench_args(["--sizes 10"])


def test_discovery_and_gpu_presets_of_real_scripts():
    names = [p.stem for p in run_all.discover_benchmarks(BENCH)]
    assert "llm_decoding_rtf" in names and not {"common", "run_all", "report"} & set(names)
    assert run_all.gpu_only_presets(BENCH / "llm_decoding_rtf.py") == ["1b"]
    assert run_all.gpu_only_presets(BENCH / "rescoring_throughput.py") == []
    runs = run_all.plan_runs(
        [BENCH / "llm_train_step.py"], quick=False, cuda=True, extra_args={"llm_train_step": ["--steps", "2"]}
    )
    assert [(r.key, r.args, r.skip_reason) for r in runs] == [
        ("llm_train_step", ["--steps", "2"], None),
        ("llm_train_step@1b", ["--preset", "1b", "--steps", "2"], None),
    ]
    quick = run_all.plan_runs([BENCH / "llm_train_step.py"], quick=True, cuda=True)
    assert quick[0].args == ["--quick"] and "--full" in quick[1].skip_reason


def test_machine_name_is_file_safe():
    name = run_all.machine_name("NVIDIA H100 80GB HBM3")
    assert name.endswith("-nvidia-h100-80gb-hbm3")
    assert all(c.isalnum() or c == "-" for c in name)


# ---------------------------------------------------------------------------- report
def test_report_sections_from_real_shapes(tmp_path):
    combined = {
        "date": "2030-01-02",
        "machine_name": "host-amd-epyc",
        "mode": "quick",
        "device": "auto",
        "environment": dict(MACHINE, cpu_model="AMD EPYC", faiss="1.15.1", git_commit="abc"),
        "benchmarks": [
            ok("llm_decoding_rtf", DECODING),
            {
                "key": "llm_decoding_rtf@1b",
                "benchmark": "llm_decoding_rtf",
                "variant": "1b",
                "status": "skipped",
                "reason": "preset 1b is CUDA only and no CUDA device is in use",
            },
            ok("knnlm_decoding", KNNLM),
            ok("datastore_search", DATASTORE),
            ok("rescoring_throughput", RESCORING),
            ok("llm_train_step", TRAIN),
            ok("unit_extraction", UNITS),
            {
                "key": "retrieval_embedding",
                "benchmark": "retrieval_embedding",
                "status": "timeout",
                "wall_s": 900.0,
                "error": "killed after 900 s\n...",
                "log": "x/run.log",
            },
        ],
    }
    md = report.render_markdown(combined, [], {"qps_vs_size": "q.png", "wer": None}, {"wer": "no recipe results found"})
    expected_rows = [
        "| ours_cached | 23.7 | 4.95 | 4.21 | 3.59 | 1 |",  # decoding RTF per method
        "| espnet_beam | 374.5 | 78 | 0.267 | 66.1 | 15.8 |",
        "| kNN-LM faiss Flat | 28.4 | 8.89 | 0.544 | 19 | 0.0493 |",  # kNN-LM overhead
        "| 10000 | 800.2 | 1,196.2 |",  # QPS pivot: size, Flat, IVF
        "| 100000 | 31.7 | 670.5 |",
        "| cpu | speech+text | 8 | 200 | 28.4 | 5.33 | 7.6e-06 |",  # rescoring
        "| lora | 384 | 21.9 | 1.57 | 5.6 | 95.3 | 1,387.4 | 686.7 | False |",  # train step
        "| fbank | - | 19.3 | 5.88 | 113.3 | 0.91 |",  # unit extraction
        "| 20000 | 500 | 256 | 3.11 | 6,429.9 |",  # k-means
    ]
    for row in expected_rows:
        assert row in md, row
    assert "LoRA/full memory 1.05" in md and "ours_cached vs espnet_beam: 15.8x" in md
    sections = md.split("\n## ")
    embedding = next(s for s in sections if s.startswith("Embedding throughput"))
    assert "not run: retrieval_embedding: timeout (killed after 900 s), log x/run.log" in embedding
    assert "| llm_decoding_rtf@1b | skipped | - | preset 1b is CUDA only" in md
    assert "![qps_vs_size](q.png)" in md and "No wer plot: no recipe results found" in md


def test_report_cli_writes_md_and_plots(tmp_path):
    repo = tmp_path / "repo"
    write_wer_result(repo, "asr_llm", "decode_beam5", "test", 22.0)
    write_wer_result(repo, "asr_llm", "decode_beam5", "test_other", 41.5)
    out = tmp_path / "results"
    out.mkdir()
    combined = {
        "date": "2030-01-02",
        "machine_name": "h-cpu",
        "benchmarks": [ok("datastore_search", DATASTORE), ok("new_bench", {"rows": [{"thing": "a", "per_s": 3.5}]})],
    }
    (out / "2030-01-02-h-cpu.json").write_text(json.dumps(combined))
    paths = report.main([str(out / "2030-01-02-h-cpu.json"), "--repo_root", str(repo)])
    md = paths["md"].read_text()
    assert paths["qps_vs_size_png"].is_file() and paths["wer_png"].is_file()
    assert "| demo | asr_llm | decode_beam5 | test_other | 41.5 | 8.25 | 0.05 |" in md
    assert "### new_bench" in md and "| a | 3.5 |" in md  # unknown benchmarks still reported
    assert "not run: no bench/unit_extraction.py in this run" in md

    assert report.qps_series(DATASTORE) == {
        "Flat": [(10000, 800.2), (100000, 31.7)],
        "IVF256,PQ16": [(10000, 1196.2), (100000, 670.5)],
    }
    (out / "bad.json").write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="bad.json: not a run_all.py result"):
        report.main([str(out / "bad.json")])
