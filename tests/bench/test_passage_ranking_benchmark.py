"""bench/passage_ranking.py on tiny sizes: it writes one row per (size, scorer) with sane numbers."""

import json

from bench_loader import load

passage_ranking = load("passage_ranking")


def test_tiny_run_writes_memory_and_query_time(tmp_path):
    passage_ranking.main(["--sizes", "50", "400", "--queries", "5", "--vocab", "500", "--out_dir", str(tmp_path)])
    data = json.loads((tmp_path / "passage_ranking.json").read_text())
    rows = data["rows"]
    assert [(r["passages"], r["scorer"]) for r in rows] == [(50, "bm25"), (50, "tfidf"), (400, "bm25"), (400, "tfidf")]
    for r in rows:
        assert r["ms_per_query"] > 0 and r["p90_ms_per_query"] >= r["ms_per_query"]
    # sparse: the index grows with the passages, not with passages x vocabulary
    small, large = rows[0]["index_mib"], rows[2]["index_mib"]
    assert large <= 0.5  # a dense 400 x 500 float64 matrix alone would be 1.5 MiB
    assert large >= small
    assert "| 400 | tfidf |" in (tmp_path / "passage_ranking.md").read_text()
