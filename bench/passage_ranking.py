"""Passage ranking for the cross-attention retriever: index memory and ms per query, BM25 and TF-IDF.

What ``retrieve_passages`` spends when it ranks a memory of passages against first-pass
hypotheses (:class:`~espnet_llm_plugin.retrieval.passage_retrieval.Bm25Index`,
:class:`~espnet_llm_plugin.retrieval.passage_retrieval.TfidfIndex`, both sparse). Passages are
random Zipf-distributed words (``--vocab`` words, ``--passage_words`` per passage, +-50%), so
the word statistics look like text; queries are ``--query_words`` words drawn the same way.

Reported per (size, scorer): build time, index memory (bytes of the sparse arrays), median and
p90 ms per query over ``--queries`` queries, and the process's peak RSS after the build.
Default sizes 8,000 and 100,000 passages; ``--quick`` 1,000 and 8,000.

    .venv/bin/python bench/passage_ranking.py --quick
    .venv/bin/python bench/passage_ranking.py
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

from espnet_llm_plugin.core.device import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "passage_ranking"
logger = logging.getLogger(NAME)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="passages (default 8000 100000)")
    p.add_argument("--vocab", type=int, default=50000, help="distinct words")
    p.add_argument("--passage_words", type=int, default=40, help="mean words per passage")
    p.add_argument("--query_words", type=int, default=12, help="words per query")
    p.add_argument("--queries", type=int, default=200, help="timed queries per index")
    return p


def zipf_texts(rng: np.random.Generator, n: int, vocab: int, mean_words: int) -> List[str]:
    """``n`` texts of Zipf(1.1)-distributed words ``w<rank>`` (rank < vocab)."""
    lengths = np.maximum(1, (mean_words * rng.uniform(0.5, 1.5, size=n)).astype(int))
    ranks = rng.zipf(1.1, size=int(lengths.sum())) % vocab
    out, pos = [], 0
    for length in lengths:
        out.append(" ".join(f"w{r}" for r in ranks[pos : pos + length]))
        pos += length
    return out


def index_bytes(index: Any) -> int:
    """Bytes of the sparse arrays an index holds (data, indices, indptr)."""
    matrix = getattr(index, "weights", None)
    if matrix is None:
        matrix = index.matrix
    return int(matrix.data.nbytes + matrix.indices.nbytes + matrix.indptr.nbytes)


def main(argv=None) -> Dict[str, Any]:
    args = get_parser().parse_args(argv)
    common.setup_logging()
    from espnet_llm_plugin.retrieval.passage_retrieval import build_index

    sizes = args.sizes or ([1000, 8000] if args.quick else [8000, 100000])
    queries = 50 if args.quick and args.queries == 200 else args.queries
    rng = np.random.default_rng(args.seed)
    rows = []
    for size in sizes:
        texts = zipf_texts(rng, size, args.vocab, args.passage_words)
        qs = zipf_texts(rng, queries, args.vocab, args.query_words)
        for scorer in ("bm25", "tfidf"):
            t0 = time.perf_counter()
            index = build_index(texts, scorer)
            build_s = time.perf_counter() - t0
            times = []
            for q in qs:
                t0 = time.perf_counter()
                index.scores(q)
                times.append((time.perf_counter() - t0) * 1e3)
            times.sort()
            row = {
                "passages": size,
                "scorer": scorer,
                "build_s": round(build_s, 3),
                "index_mib": common.mib(index_bytes(index)),
                "ms_per_query": round(statistics.median(times), 3),
                "p90_ms_per_query": round(times[int(0.9 * (len(times) - 1))], 3),
                "peak_rss_mib": common.mib(common.peak_rss_bytes()),
            }
            logger.info("%s", row)
            rows.append(row)
            del index
    payload = {"machine": common.machine_info(resolve_device("cpu")), "args": vars(args) | {"queries": queries}}
    md = common.write_results(
        NAME,
        payload,
        rows,
        ["passages", "scorer", "build_s", "index_mib", "ms_per_query", "p90_ms_per_query", "peak_rss_mib"],
        out_dir=args.out_dir,
        title="Passage ranking: index memory and ms/query (CPU, sparse)",
        notes=[
            f"random Zipf text, vocabulary {args.vocab}, {args.passage_words} words/passage, "
            f"{args.query_words} words/query, {queries} queries per row"
        ],
    )
    print(md)
    return payload | {"rows": rows}


if __name__ == "__main__":
    main()
