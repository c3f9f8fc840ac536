"""bench/knnlm_decoding.py: a tiny run writes every index's row with overhead and recall; the
target verdict; the IVF list count. No timing is asserted (the target lives in the benchmark)."""

import json

import pytest
from bench_loader import load

bench = load("knnlm_decoding")


def test_tiny_run_writes_rows_with_overhead_and_recall(tmp_path):
    out = bench.main(
        [
            "--quick",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--datastore_size",
            "2000",
            "--utts",
            "2",
            "--steps",
            "6",
            "--heldout",
            "100",
            "--out_dir",
            str(tmp_path),
        ]
    )
    data = json.loads((tmp_path / "knnlm_decoding.json").read_text())
    assert data["rows"] == json.loads(json.dumps(out["rows"]))
    by = {r["kind"]: r for r in data["rows"]}
    assert set(by) == {"base", *bench.INDEX_KINDS}
    assert by["ivf_flat"]["index"] == "IVF32,Flat" and by["ivf_flat"]["search_params"] == "nprobe=16"
    assert by["hnsw"]["index"] == "HNSW32" and by["hnsw"]["search_params"] == "efSearch=64"
    for kind in bench.INDEX_KINDS:
        r = by[kind]
        assert r["entries"] == 2000 and r["tokens"] == 6  # eos masked: every decode has 6 steps
        assert r["ms_per_step"] > 0 and r["base_ms_per_step"] > 0 and r["cpu_ms_per_step"] > 0
        assert r["overhead_pct"] == pytest.approx(100 * r["overhead"])
        assert 0 <= r["recall_at_k"] <= 1 and 0 <= r["heldout_recall_at_k"] <= 1 and r["knn_tv"] >= 0
        assert r["search_ms"] > 0 and r["lm_ms"] > 0 and r["dist_ms"] > 0
        assert ("meets_target" in r) == (kind in ("ivf_flat", "ivf_pq", "hnsw"))
    for exact in ("flat", "torch"):  # exact search: full recall, the same kNN distribution
        assert by[exact]["recall_at_k"] == 1.0 and by[exact]["recall_at_1"] == 1.0
        assert by[exact]["knn_tv"] < 1e-4 and by[exact]["best_hyp_equal_exact"]
    target = data["target"]
    assert target["applicable"] is False and target["met"] is None and data["target_met"] is None
    assert data["config"]["params"] > 0 and data["config"]["decode_queries"] > 6
    md = (tmp_path / "knnlm_decoding.md").read_text()
    assert "not applicable to this run (2000 entries" in md and "overhead_pct" in md


def row(kind, overhead, recall, meets):
    return {
        "scorer": f"kNN-LM {kind}",
        "kind": kind,
        "overhead": overhead,
        "recall_at_k": recall,
        "meets_target": meets,
    }


def test_target_verdict():
    rows = [
        {"scorer": "base LM only", "kind": "base", "overhead": 0.0},
        row("flat", 1.2, 1.0, None),
        row("ivf_pq", 0.05, 0.2, False),
        row("hnsw", 0.25, 0.95, True),
    ]
    v = bench.target_verdict(rows, 100_000, "cpu", 0.8)
    assert v["applicable"] and v["met"] is True and v["indexes_meeting"] == ["kNN-LM hnsw"]
    assert v["best_overhead_index"] == "kNN-LM ivf_pq" and "MET" in v["summary"]
    # fast but useless (low recall) does not count
    v = bench.target_verdict(rows[:3], 100_000, "cpu", 0.8)
    assert v["met"] is False and "NOT met" in v["summary"] and "+5% (recall@k 0.20)" in v["summary"]
    assert bench.target_verdict(rows, 10_000, "cpu", 0.8)["met"] is None  # too small
    assert bench.target_verdict(rows, 100_000, "cuda", 0.8)["applicable"] is False
    assert bench.target_verdict(rows[:2], 100_000, "cpu", 0.8)["met"] is None  # no IVF/HNSW run


def test_auto_nlist_and_bad_options():
    assert bench.auto_nlist(100_000) == 1024 and bench.auto_nlist(10_000) == 256
    assert bench.auto_nlist(2000) == 32 and bench.auto_nlist(50) == 1
    args = bench.get_parser().parse_args(["--indexes", "flat,nope"])
    bench.apply_preset(args)
    with pytest.raises(ValueError, match="nope"):
        bench.index_specs(args, 1000, 128, "cpu")
    args = bench.get_parser().parse_args(["--pq_m", "7"])
    bench.apply_preset(args)
    with pytest.raises(ValueError, match="pq_m"):
        bench.index_specs(args, 1000, 384, "cpu")


def test_report_section_states_target_and_recall():
    report = load("report")
    result = {
        "machine": {"device": "cpu"},
        "config": {"preset": "cpu", "params": 21952896, "hidden": 384, "beam": 5, "k": 16, "threads": 1},
        "datastore_entries": 100000,
        "encode": {"keys_per_s": 1172.1},
        "target": bench.target_verdict([row("hnsw", 0.096, 0.92, True)], 100_000, "cpu", 0.8),
        "rows": [
            {"scorer": "base LM only", "kind": "base", "ms_per_step": 41.0, "overhead": 0.0},
            dict(
                row("hnsw", 0.096, 0.92, True),
                ms_per_step=45.0,
                base_ms_per_step=41.0,
                overhead_pct=9.6,
                heldout_recall_at_k=0.82,
                search_ms=3.1,
                dist_ms=0.6,
            ),
        ],
    }
    md = report.render_knnlm(result)
    assert "| kNN-LM hnsw | 45 | 0.096 | - | - | - | 41 | 9.6 | - | 0.92 | 0.82 | 3.1 | 0.6 | True |" in md
    assert "target <= +30% with 100000 entries: MET (kNN-LM hnsw: +10% (recall@k 0.92))" in md
    assert "base LM 22.0M params (width 384), beam 5, k 16, threads 1" in md and "quick sizes" not in md
