"""Run every benchmark in ``bench/`` and write one dated, combined report.

Every ``bench/*.py`` except the helpers (``common``, ``run_all``, ``report``) is a benchmark
script with ``--quick``, ``--device`` and ``--out_dir``. Each one runs in its own subprocess
(own process group, killed after ``--timeout`` seconds); a failing or timed-out benchmark is
recorded with the tail of its log and the run goes on. Outputs, with
``STEM = <YYYY-MM-DD>-<machine>`` (machine: short host name + CPU or GPU model):

* ``OUT_DIR/STEM.json``: every benchmark's status, wall time, command and JSON result, plus the
  environment (host, CPU/GPU, library versions, git commit);
* ``OUT_DIR/STEM.md``: the summary written by ``bench/report.py`` (decoding RTF per method,
  kNN-LM overhead, datastore QPS vs size, rescoring throughput, training step time and memory
  per fine-tuning scheme, unit extraction, embedding throughput, recipe WERs);
* ``OUT_DIR/STEM_qps_vs_size.png`` and ``OUT_DIR/STEM_wer.png`` (when there is data for them);
* ``OUT_DIR/STEM/<benchmark>/``: each benchmark's own ``<name>.json``/``.md`` and ``run.log``.

Sizes: ``--quick`` (the default) passes ``--quick`` to every benchmark (about 15 min in all on
2 CPU cores); ``--full`` runs their default sizes and, with CUDA, also their GPU-only presets
(``--preset 1b`` where a script's docstring says "CUDA only"); without CUDA those are listed as
skipped.

    .venv/bin/python bench/run_all.py                      # quick, every benchmark
    .venv/bin/python bench/run_all.py --only datastore_search,knnlm_decoding
    .venv/bin/python bench/run_all.py --full --timeout 7200
"""

from __future__ import annotations

import argparse
import ast
import datetime
import json
import logging
import os
import platform
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from espnet_llm_plugin.core.device import resolve_device

BENCH_DIR = Path(__file__).resolve().parent
HELPER_MODULES = frozenset({"common", "run_all", "report"})
QUICK_TIMEOUT_S = 900
FULL_TIMEOUT_S = 7200
LOG_TAIL_LINES = 30

# "``--preset 1b`` a ~1B Llama in bfloat16 (CUDA only)" in a benchmark's docstring (= --help)
# (the phrase may not run past a full stop, a semicolon or another --preset)
_GPU_PRESET_RE = re.compile(r"--preset\s+`*([\w.-]+)`*(?:(?!--preset)[^.;])*?CUDA only", re.DOTALL)


@dataclass
class BenchRun:
    """One subprocess to run: a benchmark script with extra arguments (e.g. a GPU preset)."""

    key: str  # unique label: the script name, or "<name>@<preset>"
    benchmark: str  # script stem; the script writes <out_dir>/<benchmark>.json
    script: Path
    args: List[str] = field(default_factory=list)
    variant: Optional[str] = None
    skip_reason: Optional[str] = None


# ---------------------------------------------------------------------------- discovery
def discover_benchmarks(bench_dir: Path) -> List[Path]:
    """Every ``bench_dir/*.py`` that is a benchmark (not a helper, not private), sorted."""
    return sorted(
        p
        for p in Path(bench_dir).glob("*.py")
        if p.stem not in HELPER_MODULES and not p.stem.startswith(("_", "test_"))
    )


def gpu_only_presets(script: Path) -> List[str]:
    """Presets the script's docstring marks "CUDA only" (read from the source, nothing run)."""
    try:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
    except (OSError, SyntaxError, ValueError):
        return []
    return sorted(set(_GPU_PRESET_RE.findall(doc)))


def plan_runs(
    scripts: Sequence[Path], quick: bool, cuda: bool, extra_args: Optional[Dict[str, List[str]]] = None
) -> List[BenchRun]:
    """The runs for ``scripts``: each at quick or default size, then its GPU-only presets
    (run only with ``--full`` on a CUDA machine, else recorded as skipped with the reason)."""
    extra_args = extra_args or {}
    runs: List[BenchRun] = []
    for script in scripts:
        name = script.stem
        base = (["--quick"] if quick else []) + extra_args.get(name, [])
        runs.append(BenchRun(key=name, benchmark=name, script=script, args=base))
        for preset in gpu_only_presets(script):
            run = BenchRun(
                key=f"{name}@{preset}",
                benchmark=name,
                script=script,
                args=["--preset", preset] + extra_args.get(name, []),
                variant=preset,
            )
            if not cuda:
                run.skip_reason = f"preset {preset} is CUDA only and no CUDA device is in use"
            elif quick:
                run.skip_reason = f"GPU preset {preset} runs only with --full (--quick overrides it)"
            runs.append(run)
    return runs


def select_runs(runs: List[BenchRun], only: Sequence[str], skip: Sequence[str]) -> List[BenchRun]:
    """Keep runs named in ``only`` (benchmark name or run key; all when empty), minus ``skip``."""
    known = {r.benchmark for r in runs} | {r.key for r in runs}
    for name in list(only) + list(skip):
        if name not in known:
            raise ValueError(f"unknown benchmark {name!r}; available: {', '.join(sorted(known))}")
    chosen = [r for r in runs if not only or r.benchmark in only or r.key in only]
    return [r for r in chosen if r.benchmark not in skip and r.key not in skip]


def parse_bench_args(items: Sequence[str]) -> Dict[str, List[str]]:
    """``["datastore_search=--sizes 1000 10000", ...]`` -> ``{name: [args]}``."""
    out: Dict[str, List[str]] = {}
    for item in items:
        name, sep, rest = item.partition("=")
        if not sep or not name:
            raise ValueError(f"--bench_args {item!r}: expected NAME=ARGS")
        out.setdefault(name, []).extend(shlex.split(rest))
    return out


# ---------------------------------------------------------------------------- machine
def _slug(text: str, max_len: int = 40) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:max_len].strip("-") or "unknown"


def cpu_model() -> str:
    """CPU model name from /proc/cpuinfo (Linux), else ``platform.processor()``."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "cpu"


def machine_name(gpu_model: Optional[str]) -> str:
    """``<short host>-<gpu or cpu model>``, safe in a file name."""
    host = _slug(socket.gethostname().split(".")[0], 20)
    return f"{host}-{_slug(gpu_model or cpu_model())}"


def environment(device: str) -> Dict[str, Any]:
    """Host, CPU/GPU and library versions (``common.machine_info``) for the combined JSON."""
    sys.path.insert(0, str(BENCH_DIR))
    import common  # bench/common.py: the helpers every benchmark uses

    env = common.machine_info(resolve_device(device))
    env.update(
        {
            "hostname": socket.gethostname(),
            "cpu_model": cpu_model(),
            "python_executable": sys.executable,
        }
    )
    try:
        import torch

        env["cuda_available"] = torch.cuda.is_available()
        if env["cuda_available"]:
            env["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            env["cuda"] = torch.version.cuda
    except ImportError:
        env["cuda_available"] = False
    from importlib import metadata

    for lib, dists in (
        ("faiss", ("faiss-cpu", "faiss-gpu", "faiss")),
        ("numpy", ("numpy",)),
        ("peft", ("peft",)),
        ("espnet", ("espnet",)),
    ):
        for dist in dists:  # installed versions, read without importing the libraries
            try:
                env[lib] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=BENCH_DIR, capture_output=True, text=True, timeout=30
        ).stdout.strip()
        env["git_dirty"] = bool(dirty)
    except (OSError, subprocess.SubprocessError):
        pass
    return env


# ---------------------------------------------------------------------------- running
def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def _log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _kill_group(proc: subprocess.Popen) -> None:
    """End the benchmark and its children (it was started in its own process group)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
            return
        except subprocess.TimeoutExpired:
            continue


def run_benchmark(run: BenchRun, run_dir: Path, device: str, timeout_s: float) -> Dict[str, Any]:
    """Run one benchmark into ``run_dir`` (its JSON/md and ``run.log``); never raises for a
    failing benchmark: the returned record says ``ok``, ``failed`` or ``timeout``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for stale in (run_dir / f"{run.benchmark}.json", run_dir / f"{run.benchmark}.md"):
        stale.unlink(missing_ok=True)  # a result left from an earlier run must not count
    cmd = [sys.executable, str(run.script), *run.args, "--device", device, "--out_dir", str(run_dir)]
    log_path = run_dir / "run.log"
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    record: Dict[str, Any] = {
        "key": run.key,
        "benchmark": run.benchmark,
        "variant": run.variant,
        "command": shlex.join(cmd),
        "log": str(log_path),
        "timeout_s": timeout_s,
    }
    start = time.perf_counter()
    with open(log_path, "w") as log:
        try:
            proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, cwd=BENCH_DIR.parent, env=env, start_new_session=True
            )
        except OSError as e:
            record.update(status="failed", wall_s=0.0, returncode=None, error=f"could not start: {e}")
            return record
        try:
            proc.wait(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            timed_out = True
        except BaseException:  # Ctrl-C: take the benchmark down with us
            _kill_group(proc)
            raise
    record["wall_s"] = round(time.perf_counter() - start, 2)
    record["returncode"] = proc.returncode
    result_path = run_dir / f"{run.benchmark}.json"
    tail = _log_tail(log_path)
    if timed_out:
        record.update(status="timeout", error=f"killed after {timeout_s:g} s\n{tail}")
    elif proc.returncode != 0:
        # first line: the exit code and the log's last line (usually the exception)
        record.update(status="failed", error=f"exit code {proc.returncode}: {_last_line(tail)}\n{tail}")
    elif not result_path.is_file():
        record.update(
            status="failed", error=f"exit code 0 but no {result_path.name} was written\n{_log_tail(log_path)}"
        )
    else:
        try:
            record["result"] = json.loads(result_path.read_text())
            record["status"] = "ok"
        except (OSError, ValueError) as e:
            record.update(status="failed", error=f"{result_path}: unreadable JSON ({e})")
    return record


# ---------------------------------------------------------------------------- main
def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", dest="quick", action="store_true", default=True, help="pass --quick to every benchmark (the default)"
    )
    size.add_argument(
        "--full",
        dest="quick",
        action="store_false",
        help="the benchmarks' default sizes, plus GPU-only presets when CUDA is used",
    )
    p.add_argument("--only", default="", help="comma list of benchmarks (or name@preset) to run")
    p.add_argument("--skip", default="", help="comma list of benchmarks not to run")
    p.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda"],
        help="passed to every benchmark (auto: cuda when available)",
    )
    p.add_argument("--out_dir", type=Path, default=BENCH_DIR / "results")
    p.add_argument(
        "--timeout",
        type=float,
        default=None,
        help=f"seconds per benchmark (default {QUICK_TIMEOUT_S} quick, {FULL_TIMEOUT_S} full)",
    )
    p.add_argument(
        "--bench_args",
        action="append",
        default=[],
        metavar="NAME=ARGS",
        help="extra arguments for one benchmark, e.g. 'datastore_search=--sizes 1000 10000'",
    )
    p.add_argument("--bench_dir", type=Path, default=BENCH_DIR, help="where the benchmark scripts are")
    p.add_argument(
        "--repo_root",
        type=Path,
        default=BENCH_DIR.parent,
        help="where egs2/*/llm_asr1/exp/**/score/result.json are looked for (WER plot)",
    )
    p.add_argument("--date", default=None, help="YYYY-MM-DD in the output names (default: today, UTC)")
    return p


def _cuda_in_use(device: str) -> tuple:
    """(CUDA used by the benchmarks?, GPU model name or None)."""
    if device == "cpu":
        return False, None
    import torch

    if not torch.cuda.is_available():
        if device == "cuda":
            raise ValueError("--device cuda: no CUDA device is available")
        return False, None
    return True, torch.cuda.get_device_name(0)


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.path.insert(0, str(BENCH_DIR))
    import report  # bench/report.py

    only = [s for s in args.only.split(",") if s]
    skip = [s for s in args.skip.split(",") if s]
    timeout_s = args.timeout or (QUICK_TIMEOUT_S if args.quick else FULL_TIMEOUT_S)
    scripts = discover_benchmarks(args.bench_dir)
    if not scripts:
        raise ValueError(f"no benchmark scripts found in {args.bench_dir}")
    cuda, gpu_model = _cuda_in_use(args.device)
    all_runs = plan_runs(scripts, args.quick, cuda, parse_bench_args(args.bench_args))
    runs = select_runs(all_runs, only, skip)

    date = args.date or datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    stem = f"{date}-{machine_name(gpu_model)}"
    raw_dir = Path(args.out_dir) / stem
    started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    logging.info(
        "%d benchmark run(s) (%s, device %s, timeout %g s); results under %s",
        len(runs),
        "quick" if args.quick else "full",
        args.device,
        timeout_s,
        raw_dir,
    )

    records: List[Dict[str, Any]] = []
    chosen = {r.key for r in runs}
    total, i, interrupted = len(runs), 0, False
    for run in all_runs:
        if run.key not in chosen:  # listed too, so the report can say why it has no numbers
            records.append(
                {
                    "key": run.key,
                    "benchmark": run.benchmark,
                    "variant": run.variant,
                    "status": "skipped",
                    "reason": "not selected (--only/--skip)",
                }
            )
            continue
        i += 1
        if run.skip_reason:
            logging.info("[%d/%d] %s: skipped (%s)", i, total, run.key, run.skip_reason)
            records.append(
                {
                    "key": run.key,
                    "benchmark": run.benchmark,
                    "variant": run.variant,
                    "status": "skipped",
                    "reason": run.skip_reason,
                }
            )
            continue
        if interrupted:
            records.append(
                {
                    "key": run.key,
                    "benchmark": run.benchmark,
                    "variant": run.variant,
                    "status": "skipped",
                    "reason": "run_all was interrupted (Ctrl-C)",
                }
            )
            continue
        logging.info("[%d/%d] %s: running", i, total, run.key)
        try:
            record = run_benchmark(run, raw_dir / run.key, args.device, timeout_s)
        except KeyboardInterrupt:  # keep what ran so far: write the report, then stop
            logging.warning("interrupted: writing the results of the benchmarks that finished")
            interrupted = True
            records.append(
                {
                    "key": run.key,
                    "benchmark": run.benchmark,
                    "variant": run.variant,
                    "status": "skipped",
                    "reason": "interrupted (Ctrl-C) while running",
                }
            )
            continue
        records.append(record)
        first_error = (record.get("error") or "").splitlines()[:1]
        logging.info(
            "[%d/%d] %s: %s in %.1f s%s",
            i,
            total,
            run.key,
            record["status"],
            record["wall_s"],
            f" ({first_error[0]})" if first_error else "",
        )

    combined = {
        "schema": "espnet_llm_plugin.bench.run_all/1",
        "date": date,
        "machine_name": stem[len(date) + 1 :],
        "mode": "quick" if args.quick else "full",
        "device": args.device,
        "started": started,
        "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "environment": environment(args.device),
        "interrupted": interrupted,
        "benchmarks": records,
    }
    from espnet_llm_plugin.fileio.atomic import atomic_write_text

    json_path = Path(args.out_dir) / f"{stem}.json"
    atomic_write_text(json_path, json.dumps(combined, indent=1, default=str) + "\n")
    paths = {"json": json_path}
    paths.update(report.write_report(combined, Path(args.out_dir), stem, repo_root=args.repo_root))
    counts: Dict[str, int] = {}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    logging.info(
        "done: %s; wrote %s",
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
        ", ".join(str(p) for p in paths.values() if p),
    )
    if interrupted:
        raise KeyboardInterrupt
    return combined


def exit_status(combined: Dict[str, Any]) -> int:
    """1 when a benchmark failed or timed out (the report is written either way), else 0."""
    return int(any(r.get("status") in ("failed", "timeout") for r in combined["benchmarks"]))


if __name__ == "__main__":
    sys.exit(exit_status(main()))
