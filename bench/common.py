"""Helpers shared by the benchmark scripts in ``bench/``.

Small and generic on purpose: device choice, timers that wait for the GPU, peak-memory probes,
machine description, a random Llama directory for LLM benchmarks, and the results writer
(``bench/results/<name>.json`` + ``.md``). Heavy imports (torch, transformers) happen inside the
functions, so a script's ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
REPO_ROOT = BENCH_DIR.parent


def setup_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--seed``, ``--quick``, ``--out_dir``: the options every benchmark has."""
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="where to run (auto: cuda when available)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for weights and inputs")
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes (a smoke run that finishes in well under 2 min on a CPU)"
    )
    parser.add_argument("--out_dir", type=Path, default=RESULTS_DIR, help="where <name>.json and <name>.md are written")


def synchronize(device: Any) -> None:
    """Wait for queued GPU work so wall-clock timers measure it."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.synchronize(device)


@contextmanager
def timer(device: Any) -> Iterator[Dict[str, float]]:
    """``with timer(dev) as t: ...``; afterwards ``t["seconds"]`` is the elapsed wall time and
    ``t["cpu_seconds"]`` this process' CPU time (all threads): on a shared CPU with one torch
    thread, the CPU time is the steadier measure of the work done."""
    result: Dict[str, float] = {}
    synchronize(device)
    start, cpu_start = time.perf_counter(), time.process_time()
    try:
        yield result
    finally:
        synchronize(device)
        result["seconds"] = time.perf_counter() - start
        result["cpu_seconds"] = time.process_time() - cpu_start


def summarize(seconds: Sequence[float]) -> Dict[str, float]:
    """Median / min / max of repeated timings (the median is the number to report)."""
    return {"median": statistics.median(seconds), "min": min(seconds), "max": max(seconds), "repeats": len(seconds)}


# ---------------------------------------------------------------------------- memory
def _proc_status_kib(field: str) -> Optional[int]:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_bytes() -> Optional[int]:
    """Current resident set size of this process (Linux ``VmRSS``), or None."""
    kib = _proc_status_kib("VmRSS")
    return None if kib is None else kib * 1024


def peak_rss_bytes() -> Optional[int]:
    """Peak resident set size of this process (Linux ``VmHWM``), or None."""
    kib = _proc_status_kib("VmHWM")
    return None if kib is None else kib * 1024


def reset_peak_memory(device: Any) -> bool:
    """Start a new peak-memory window; returns False where the peak cannot be reset.

    CUDA: ``torch.cuda.reset_peak_memory_stats``. CPU: writing ``5`` to
    ``/proc/self/clear_refs`` resets ``VmHWM`` (Linux >= 4.0); where that fails the CPU peak
    covers the whole process life, so run each measurement in a fresh process.
    """
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_memory_bytes(device: Any) -> Optional[int]:
    """Peak since :func:`reset_peak_memory`: CUDA allocated bytes, or the process peak RSS."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    return peak_rss_bytes()


def mib(n: Optional[float]) -> Optional[float]:
    return None if n is None else round(n / 2**20, 1)


# ---------------------------------------------------------------------------- machine
def machine_info(device: Any) -> Dict[str, Any]:
    """What produced the numbers: host, library versions, threads, GPU and git commit."""
    import torch

    info: Dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "load_average_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    try:
        import transformers

        info["transformers"] = transformers.__version__
    except ImportError:
        pass
    if getattr(device, "type", str(device)) == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["gpu_memory_mib"] = mib(torch.cuda.get_device_properties(device).total_memory)
    try:
        info["git_commit"] = (
            subprocess.run(
                ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
            ).stdout.strip()
            or None
        )
    except (OSError, subprocess.SubprocessError):
        info["git_commit"] = None
    return info


# ---------------------------------------------------------------------------- models
def random_llama_dir(
    out_dir: Path,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: Optional[int] = None,
    intermediate_size: Optional[int] = None,
    max_position_embeddings: int = 4096,
    seed: int = 0,
) -> Path:
    """Write a randomly initialised Llama + a word-level tokenizer of ``vocab_size`` tokens.

    The tokenizer has the specials ``<unk> <s> </s> <pad>`` and words ``w0 w1 ...``; the model
    comes from :func:`espnet_llm_plugin.lm.causal_lm_pretraining.build_llama`, so it loads with
    ``from_pretrained`` exactly like a user's pretrained LLM. Returns ``out_dir``.
    """
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    from espnet_llm_plugin.lm.causal_lm_pretraining import LmConfig, build_llama, save_pretrained_dir
    from espnet_llm_plugin.lm.tokenizer_training import SPECIAL_TOKENS

    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    words = SPECIAL_TOKENS + [f"w{i}" for i in range(vocab_size - len(SPECIAL_TOKENS))]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>", pad_token="<pad>"
    )
    cfg = LmConfig(
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    model = build_llama(tokenizer, cfg, seed=seed)
    save_pretrained_dir(Path(out_dir), model, tokenizer)
    return Path(out_dir)


# ---------------------------------------------------------------------------- results
def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if value == 0 or 0.01 <= abs(value) < 1e6:
            return f"{value:.3g}" if abs(value) < 100 else f"{value:,.1f}"
        return f"{value:.3g}"
    return str(value)


def markdown_table(rows: List[Dict[str, Any]], columns: Sequence[str]) -> str:
    """A GitHub markdown table of ``rows`` (missing cells: ``-``)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def write_results(
    name: str,
    payload: Dict[str, Any],
    rows: List[Dict[str, Any]],
    columns: Sequence[str],
    out_dir: Path = RESULTS_DIR,
    title: str = "",
    notes: Sequence[str] = (),
) -> str:
    """Write ``<out_dir>/<name>.json`` (``payload`` + ``rows``) and ``<name>.md``; returns the md.

    Both files are written atomically (temp file + rename).
    """
    from espnet_llm_plugin.fileio.atomic import atomic_write_text

    out_dir = Path(out_dir)
    data = dict(payload)
    data["rows"] = rows
    atomic_write_text(out_dir / f"{name}.json", json.dumps(data, indent=1, default=str) + "\n")
    md = f"# {title or name}\n\n" + markdown_table(rows, columns)
    if notes:
        md += "\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    machine = payload.get("machine")
    if machine:
        md += "\nMachine: " + ", ".join(f"{k}={v}" for k, v in machine.items()) + "\n"
    atomic_write_text(out_dir / f"{name}.md", md)
    return md
