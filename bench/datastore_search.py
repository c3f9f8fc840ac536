"""Datastore search speed: index build rate and queries/s vs datastore size.

For each size ``N`` (default 10k, 100k, 1M keys on the CPU; up to 10M on a GPU) and width
``--dim``: faiss ``Flat`` (exact), ``IVF<nlist>,PQ<m>`` (nprobe ``--nprobe``), ``HNSW32``
(efSearch ``--ef_search``, up to ``--hnsw_max`` keys: its build is slow on few cores), and the torch exact search
(:class:`TorchExactSearch`; float32 on the CPU, float16 on a GPU). Reported per row:
build seconds and keys/s (training included), queries/s for a batch of ``--nq`` queries
with ``k`` neighbours, Recall@1 of the true nearest key (vs exact search), and for the
exact searches the memory-bandwidth bound: a batch must read all keys once, so
``QPS <= nq * bandwidth / key_bytes``, with ``bandwidth`` measured by a large tensor copy.

Keys are random Gaussian (cluster structure helps IVF in real data, so recall here is a
pessimistic bound); queries are keys plus small noise.

    .venv/bin/python bench/datastore_search.py --quick
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

from espnet_llm_plugin.core.device import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "datastore_search"
log = logging.getLogger(NAME)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--sizes", type=int, nargs="*", default=None, help="datastore sizes (keys)")
    p.add_argument("--dim", type=int, default=256, help="key width (LLM hidden size)")
    p.add_argument("--nq", type=int, default=64, help="queries per search batch (~ beam x utterances)")
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--nprobe", type=int, default=16, help="IVF lists visited per query")
    p.add_argument("--ef_search", type=int, default=64, help="HNSW search breadth")
    p.add_argument("--hnsw_max", type=int, default=200_000, help="skip HNSW above this size")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--pq_bits", type=int, default=8, help="bits per PQ code (--quick: 4; 8 is the usual)")
    p.add_argument("--train_size", type=int, default=20_000, help="keys sampled to train IVF/PQ")
    return p


def measure_bandwidth(device, n_bytes: int = 1 << 29) -> float:
    """Bytes/s of a large tensor copy (read + write counted)."""
    import torch

    src = torch.empty(n_bytes // 4, dtype=torch.float32, device=device).fill_(1.0)
    dst = torch.empty_like(src)
    dst.copy_(src)
    times = []
    for _ in range(3):
        with common.timer(device) as t:
            dst.copy_(src)
        times.append(t["seconds"])
    return 2 * n_bytes / min(times)


def measure_matmul_flops(device, dim: int, nq: int) -> float:
    """FLOP/s of the search's own GEMM shape ``(nq, D) x (D, 65536)`` in float32 (CPU) / fp16 (GPU)."""
    import torch

    dtype = torch.float16 if device.type == "cuda" else torch.float32
    a = torch.randn(nq, dim, device=device, dtype=dtype)
    b = torch.randn(dim, 65536, device=device, dtype=dtype)
    a @ b
    times = []
    for _ in range(3):
        with common.timer(device) as t:
            a @ b
        times.append(t["seconds"])
    return 2 * nq * dim * 65536 / min(times)


def ivf_pq_string(n: int, dim: int, bits: int, train_size: int) -> str:
    # ~39 training keys per list at least (faiss warns below), and ~4 sqrt(N) lists
    nlist = max(16, min(4096, int(4 * n**0.5), train_size // 39))
    m = max(1, dim // 16)  # 16 dims per sub-quantizer
    while dim % m:
        m -= 1
    return f"IVF{nlist},PQ{m}" + ("" if bits == 8 else f"x{bits}")


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import faiss
    import numpy as np
    import torch

    from espnet_llm_plugin.retrieval.datastore import FaissSearch
    from espnet_llm_plugin.retrieval.torch_search import TorchExactSearch

    device = resolve_device(args.device)
    sizes = args.sizes or (
        [10_000, 30_000]
        if args.quick
        else [10_000, 100_000, 1_000_000] + ([10_000_000] if device.type == "cuda" else [])
    )
    rng = np.random.default_rng(args.seed)
    if args.quick:
        args.pq_bits, args.train_size = 4, min(args.train_size, 2_500)
    bandwidth = measure_bandwidth(device, 1 << (26 if args.quick else 29))
    flops = measure_matmul_flops(device, args.dim, args.nq)
    cpu_flops = flops if device.type == "cpu" else measure_matmul_flops(torch.device("cpu"), args.dim, args.nq)
    cpu_bw = bandwidth if device.type == "cpu" else measure_bandwidth(torch.device("cpu"), 1 << 28)
    log.info("copy bandwidth %.1f GB/s (%s), CPU %.1f GB/s", bandwidth / 1e9, device, cpu_bw / 1e9)
    rows: List[Dict[str, Any]] = []
    for n in sizes:
        keys = rng.standard_normal((n, args.dim), dtype=np.float32)
        pick = rng.integers(0, n, args.nq)
        queries = keys[pick] + 0.05 * rng.standard_normal((args.nq, args.dim), dtype=np.float32)
        true_nn = None
        methods = (
            ["Flat", ivf_pq_string(n, args.dim, args.pq_bits, args.train_size)]
            + (["HNSW32"] if n <= args.hnsw_max else [])
            + ["torch"]
        )
        for method in methods:
            if method == "Flat" and n > 2_000_000 and device.type == "cuda":
                continue  # CPU Flat at 10M keys takes minutes per batch; GPU rows cover it
            row: Dict[str, Any] = {"size": n, "method": method, "dim": args.dim, "nq": args.nq, "k": args.k}
            start = time.perf_counter()
            if method == "torch":
                backend = TorchExactSearch(args.dim, "l2", device=device)
                for b in range(0, n, 1_000_000):
                    backend.add(torch.from_numpy(keys[b : b + 1_000_000]))
                row["device"] = str(device)
                row["key_dtype"] = str(backend.dtype).replace("torch.", "")
                key_bytes = n * args.dim * backend.keys.element_size()
                bw, fl = bandwidth, flops
            else:
                backend = FaissSearch(args.dim, "l2", method)
                if not backend.is_trained:  # train on a sample, as for real datastores
                    sample = keys[rng.choice(n, min(n, args.train_size), replace=False)]
                    backend.train(sample)
                backend.add(keys)
                if method.startswith("IVF"):
                    faiss.extract_index_ivf(backend.index).nprobe = args.nprobe
                if method.startswith("HNSW"):
                    backend.index.hnsw.efSearch = args.ef_search
                row["device"] = "cpu"
                key_bytes = n * args.dim * 4
                bw, fl = cpu_bw, cpu_flops
            common.synchronize(device)
            row["build_s"] = time.perf_counter() - start
            row["build_keys_per_s"] = n / row["build_s"]
            backend.search(queries[:8], args.k)  # warm-up
            times = []
            for _ in range(args.repeats):
                with common.timer(device) as t:
                    _, ids = backend.search(queries, args.k)
                times.append(t["seconds"])
            sec = common.summarize(times)["median"]
            row["qps"] = args.nq / sec
            row["ms_per_batch"] = 1000 * sec
            if method == "Flat" or (true_nn is None and method == "torch"):
                true_nn = ids[:, 0].copy()
            if true_nn is not None:
                row["recall_at_1"] = float((ids[:, 0] == true_nn).mean())
            if method in ("Flat", "torch"):
                row["key_mib"] = common.mib(key_bytes)
                row["bw_bound_qps"] = args.nq * bw / key_bytes  # read every key once per batch
                row["gemm_bound_qps"] = fl / (2 * n * args.dim)  # one multiply-add per key dim
                row["fraction_of_bound"] = row["qps"] / min(row["bw_bound_qps"], row["gemm_bound_qps"])
            log.info("%s", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()})
            rows.append(row)
            del backend
        del keys
    return {
        "machine": common.machine_info(device),
        "copy_bandwidth_gb_s": bandwidth / 1e9,
        "gemm_gflop_s": flops / 1e9,
        "cpu_gemm_gflop_s": cpu_flops / 1e9,
        "cpu_copy_bandwidth_gb_s": cpu_bw / 1e9,
        "args": vars(args),
        "rows": rows,
    }


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    common.setup_logging()
    payload = run(args)
    rows = payload.pop("rows")
    md = common.write_results(
        NAME,
        payload,
        rows,
        [
            "size",
            "method",
            "device",
            "build_s",
            "build_keys_per_s",
            "qps",
            "ms_per_batch",
            "recall_at_1",
            "key_mib",
            "bw_bound_qps",
            "gemm_bound_qps",
            "fraction_of_bound",
        ],
        out_dir=args.out_dir,
        title="kNN-LM datastore search",
        notes=[
            f"copy bandwidth {payload['copy_bandwidth_gb_s']:.1f} GB/s on {payload['machine']['device']}, "
            f"CPU {payload['cpu_copy_bandwidth_gb_s']:.1f} GB/s; bw_bound_qps = nq * bandwidth / key bytes "
            "(exact search reads every key once per query batch)",
            f"GEMM {payload['gemm_gflop_s']:.1f} GFLOP/s (search shape); gemm_bound_qps = FLOP/s / (2 N D); "
            "with a batch of queries exact search is compute-bound when gemm_bound < bw_bound",
            "recall_at_1: share of queries whose first result is the exact nearest key (Flat/torch)",
            "keys are random Gaussian; queries = keys + noise",
        ],
    )
    print(md)


if __name__ == "__main__":
    main()
