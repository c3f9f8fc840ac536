"""Markdown summary and plots of a combined benchmark run (``bench/run_all.py`` output).

Reads ``OUT_DIR/<date>-<machine>.json`` and writes next to it ``<stem>.md`` with one section per
topic (decoding RTF per method, kNN-LM overhead, datastore QPS vs size, rescoring throughput,
training step time and peak memory per fine-tuning scheme, unit extraction, embedding
throughput, recipe WERs, other benchmarks), and PNG plots (matplotlib, Agg backend):

* ``<stem>_qps_vs_size.png``: queries/s vs datastore size, log-log, one line per index type
  and device (from ``datastore_search``);
* ``<stem>_wer.png``: WER per model/decoding, grouped by test set, from every recipe result
  ``egs2/*/llm_asr1/exp/**/score/result.json`` (skipped with a note when there is none).

A section whose benchmark did not run says "not run" and why.

    .venv/bin/python bench/report.py bench/results/2026-11-25-vm-amd-epyc.json
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))
from common import markdown_table  # noqa: E402  (bench/common.py, light to import)

WER_GLOB = "egs2/*/llm_asr1/exp/**/score/result.json"

Record = Dict[str, Any]
_QUICK_NOTE = (
    "quick sizes (a tiny model): a smoke run, not the measurement the target is about; run with --full for that"
)


# ---------------------------------------------------------------------------- helpers
def records_of(combined: Dict[str, Any], benchmark: str) -> List[Record]:
    """Every run record of ``benchmark`` (default size first, then presets)."""
    return [r for r in combined.get("benchmarks", []) if r.get("benchmark") == benchmark]


def not_run_reason(records: Sequence[Record], benchmark: str) -> str:
    """Why there is no result for ``benchmark``: its skip reason or the first error line."""
    if not records:
        return f"no bench/{benchmark}.py in this run"
    reasons = []
    for r in records:
        if r.get("status") == "skipped":
            reasons.append(f"{r['key']}: skipped, {r.get('reason', 'no reason given')}")
        else:
            first = (r.get("error") or "").strip().splitlines()
            reasons.append(
                f"{r['key']}: {r.get('status')}"
                + (f" ({first[0]})" if first else "")
                + (f", log {r['log']}" if r.get("log") else "")
            )
    return "; ".join(reasons)


def _rows(result: Dict[str, Any], **equal: Any) -> List[Dict[str, Any]]:
    rows = result.get("rows") or []
    return [r for r in rows if all(r.get(k) == v for k, v in equal.items())]


def _device_of(result: Dict[str, Any]) -> str:
    return str((result.get("machine") or {}).get("device", "?"))


# ---------------------------------------------------------------------------- sections
def render_decoding_rtf(result: Dict[str, Any]) -> str:
    cfg = result.get("config") or {}
    md = markdown_table(
        _rows(result), ["method", "sec_per_utt", "rtf", "tokens_per_s", "cpu_s_per_utt", "ours_cached_speedup"]
    )
    notes = [
        f"LLM {cfg.get('params', '?')} params ({cfg.get('dtype', '?')}), beam "
        f"{cfg.get('beam', '?')}, {cfg.get('tokens', '?')} tokens/utt, preset "
        f"{cfg.get('preset', '?')}, device {_device_of(result)}"
    ]
    if cfg.get("preset") == "quick":
        notes.append(_QUICK_NOTE)
    if "speedup_ours_cached_vs_espnet_beam" in result:
        notes.append(
            f"ours_cached vs espnet_beam: {result['speedup_ours_cached_vs_espnet_beam']:.1f}x "
            f"(target >= {result.get('target_speedup', '?')}x: "
            f"{'met' if result.get('target_met') else 'NOT met'})"
        )
    return md + "\n" + "".join(f"- {n}\n" for n in notes)


def render_knnlm(result: Dict[str, Any]) -> str:
    md = markdown_table(
        _rows(result),
        [
            "scorer",
            "ms_per_step",
            "overhead",
            "s_per_utt",
            "tokens",
            "build_s",
            "base_ms_per_step",
            "overhead_pct",
            "overhead_cpu_pct",
            "recall_at_k",
            "heldout_recall_at_k",
            "search_ms",
            "dist_ms",
            "meets_target",
        ],
    )
    notes = []
    target = result.get("target") or {}
    if target.get("summary"):  # the issue-6 target: <= +30% at 100k entries on the CPU (IVF/HNSW)
        notes.append(target["summary"])
    notes.append(
        "overhead = ms per decoding step with kNN-LM / base LM only - 1 (median over "
        "back-to-back pairs); recall_at_k vs exact search"
    )
    cfg = result.get("config") or {}
    if cfg.get("params"):
        notes.append(
            f"base LM {cfg['params'] / 1e6:.1f}M params (width {cfg.get('hidden', '?')}), beam "
            f"{cfg.get('beam', '?')}, k {cfg.get('k', '?')}, threads {cfg.get('threads') or 'default'}"
        )
    if cfg.get("preset") == "quick":
        notes.append(_QUICK_NOTE)
    if result.get("datastore_entries") is not None:
        notes.append(f"datastore {result['datastore_entries']} entries, device {_device_of(result)}")
    enc = result.get("encode") or {}
    if enc.get("keys_per_s"):
        notes.append(f"key encoding {enc['keys_per_s']:.0f} keys/s")
    return md + "\n" + "".join(f"- {n}\n" for n in notes)


def render_datastore(result: Dict[str, Any]) -> str:
    rows = _rows(result)
    sizes = sorted({r["size"] for r in rows if "size" in r})
    series = qps_series(result)
    # pivot: one row per size, one QPS column per index type (and device)
    pivot = []
    for size in sizes:
        row: Dict[str, Any] = {"size": size}
        for label, points in series.items():
            row[label] = dict(points).get(size)
        pivot.append(row)
    md = "Queries/s:\n\n" + markdown_table(pivot, ["size", *series])
    md += "\nAll rows:\n\n" + markdown_table(
        rows, ["size", "method", "device", "build_s", "qps", "recall_at_1", "fraction_of_bound"]
    )
    args = result.get("args") or {}
    return (
        md + f"\n- dim {args.get('dim', '?')}, {args.get('nq', '?')} queries per batch, k "
        f"{args.get('k', '?')}; recall_at_1 vs exact search\n"
    )


def render_rescoring(result: Dict[str, Any]) -> str:
    return markdown_table(
        _rows(result),
        ["device", "mode", "batch_size", "hyps", "hyps_per_s", "speedup_vs_one_by_one", "max_abs_diff_vs_bs1"],
    )


def render_train_step(result: Dict[str, Any]) -> str:
    rows = _rows(result)
    columns = [
        "scheme",
        "gradient_checkpointing",
        "hidden",
        "llm_params_M",
        "trainable_M",
        "step_s",
        "tokens_per_s",
        "peak_mib",
        "train_mem_mib",
        "mem_vs_no_ckpt",
        "time_vs_no_ckpt",
        "sweep_only",
    ]
    if not any("gradient_checkpointing" in r for r in rows):  # results from before the option
        columns = [c for c in columns if c not in ("gradient_checkpointing", "mem_vs_no_ckpt", "time_vs_no_ckpt")]
    md = markdown_table(rows, columns)
    notes = [_QUICK_NOTE] if (result.get("config") or {}).get("preset") == "quick" else []
    if result.get("memory_measure"):
        notes.append(f"memory: {result['memory_measure']}")
    for s in result.get("lora_over_full_memory") or []:
        setting = ""
        if "gradient_checkpointing" in s:
            setting = f", gradient checkpointing {'on' if s['gradient_checkpointing'] else 'off'}"
        line = (
            f"LLM {s.get('llm_params_M')}M params{setting}: LoRA/full memory "
            f"{s.get('lora_over_full_memory', float('nan')):.2f}"
        )
        if s.get("lora_ckpt_over_full_no_ckpt") is not None:
            line += f" (LoRA with / full without checkpointing: {s['lora_ckpt_over_full_no_ckpt']:.2f})"
        notes.append(line)
    if any(r.get("gradient_checkpointing") for r in rows):
        notes.append(
            "mem_vs_no_ckpt, time_vs_no_ckpt: memory and step time with gradient checkpointing / "
            "without, same size and scheme"
        )
    return md + "\n" + "".join(f"- {n}\n" for n in notes)


def render_unit_extraction(result: Dict[str, Any]) -> str:
    md = markdown_table(_rows(result), ["features", "model", "audio_s_per_s", "wall_s", "audio_s", "features_share"])
    if result.get("kmeans"):
        md += "\nk-means training (faiss):\n\n" + markdown_table(
            result["kmeans"], ["frames", "num_units", "dim", "train_s", "frames_per_s"]
        )
    return md


def render_embedding(result: Dict[str, Any]) -> str:
    md = markdown_table(
        _rows(result), ["side", "sequences", "batch", "mean_tokens", "sequences_per_s", "tokens_per_s", "dim"]
    )
    if result.get("parameters"):
        md += f"\n- LM {result['parameters']} params, preset {result.get('preset', '?')}\n"
    return md


def render_generic(result: Dict[str, Any]) -> str:
    """Any other benchmark: its rows with every column they have."""
    rows = _rows(result)
    columns: List[str] = []
    for r in rows:
        columns += [k for k, v in r.items() if k not in columns and not isinstance(v, (dict, list))]
    return markdown_table(rows, columns) if rows else "(no rows in its JSON)\n"


# (title, benchmark script name, renderer)
SECTIONS: List[Tuple[str, str, Callable[[Dict[str, Any]], str]]] = [
    ("Decoding RTF per method", "llm_decoding_rtf", render_decoding_rtf),
    ("kNN-LM decoding overhead", "knnlm_decoding", render_knnlm),
    ("Datastore QPS vs size", "datastore_search", render_datastore),
    ("Rescoring throughput", "rescoring_throughput", render_rescoring),
    ("Training step time and peak memory per fine-tuning scheme", "llm_train_step", render_train_step),
    ("Unit extraction", "unit_extraction", render_unit_extraction),
    ("Embedding throughput (retrieval)", "retrieval_embedding", render_embedding),
]


# ---------------------------------------------------------------------------- plots
def qps_series(result: Dict[str, Any]) -> Dict[str, List[Tuple[int, float]]]:
    """``{"<method> (<device>)": [(size, qps), ...]}`` from datastore_search rows, sorted by size.
    The device is in the label only when rows come from more than one device."""
    rows = [r for r in _rows(result) if r.get("qps") is not None and r.get("size") is not None]
    devices = {r.get("device") for r in rows}
    series: Dict[str, List[Tuple[int, float]]] = {}
    for r in rows:
        label = str(r.get("method")) + (f" ({r.get('device')})" if len(devices) > 1 else "")
        series.setdefault(label, []).append((int(r["size"]), float(r["qps"])))
    return {k: sorted(v) for k, v in series.items()}


def plot_qps_vs_size(series: Dict[str, List[Tuple[int, float]]], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from espnet_llm_plugin.fileio.atomic import atomic_file

    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for label, points in series.items():
        xs, ys = zip(*points)
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("datastore size (keys)")
    ax.set_ylabel("queries / s")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


def collect_wer_results(repo_root: Path) -> List[Dict[str, Any]]:
    """One row per ``egs2/<recipe>/llm_asr1/exp/<model>/<decode>/<test set>/score/result.json``."""
    out = []
    for path in sorted(Path(repo_root).glob(WER_GLOB)):
        try:
            res = json.loads(path.read_text())
            wer = float(res["wer"]["error_rate"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            logging.warning("skipping %s: not a score_wer result.json (%s)", path, e)
            continue
        exp = path.parents[2]  # .../<model>/<decode>/<test set>/score/result.json
        while exp.name != "exp" and exp != exp.parent:
            exp = exp.parent
        parts = path.relative_to(exp).parts[:-2]
        recipe = exp.parent.parent.name
        out.append(
            {
                "recipe": recipe,
                "model": "/".join(parts[:-2]) or "-",
                "decoding": parts[-2] if len(parts) > 1 else "-",
                "test_set": parts[-1] if parts else "-",
                "wer": wer,
                "cer": (res.get("cer") or {}).get("error_rate"),
                "rtf": res.get("rtf"),
                "path": str(path),
            }
        )
    return out


def plot_wer(results: List[Dict[str, Any]], path: Path) -> Path:
    """Grouped bar chart: one group per (recipe, test set), one bar per model/decoding."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from espnet_llm_plugin.fileio.atomic import atomic_file

    groups = sorted({(r["recipe"], r["test_set"]) for r in results})
    methods = sorted({f"{r['model']}/{r['decoding']}" for r in results})
    wer = {((r["recipe"], r["test_set"]), f"{r['model']}/{r['decoding']}"): r["wer"] for r in results}
    width = 0.8 / max(len(methods), 1)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.2 * len(groups) * max(len(methods), 1) * 0.5 + 3), 4.5))
    for j, method in enumerate(methods):
        xs = [i + j * width for i, g in enumerate(groups) if (g, method) in wer]
        ys = [wer[(g, method)] for g in groups if (g, method) in wer]
        ax.bar(xs, ys, width, label=method)
    ax.set_xticks([i + width * (len(methods) - 1) / 2 for i in range(len(groups))])
    ax.set_xticklabels([f"{rec}\n{ts}" if len({g[0] for g in groups}) > 1 else ts for rec, ts in groups])
    ax.set_ylabel("WER %")
    ax.set_title("WER per model / decoding")
    ax.legend(fontsize=7)
    fig.tight_layout()
    with atomic_file(path, "wb") as f:
        fig.savefig(f, format="png", dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------------- report
def run_table(combined: Dict[str, Any]) -> str:
    rows = []
    for r in combined.get("benchmarks", []):
        note = r.get("reason") or (r.get("error") or "").strip().splitlines()[:1]
        rows.append(
            {
                "benchmark": r.get("key"),
                "status": r.get("status"),
                "wall_s": r.get("wall_s"),
                "note": (note if isinstance(note, str) else (note[0] if note else "")) or "-",
            }
        )
    return markdown_table(rows, ["benchmark", "status", "wall_s", "note"])


def render_markdown(
    combined: Dict[str, Any],
    wer_results: List[Dict[str, Any]],
    plots: Dict[str, Optional[str]],
    plot_notes: Dict[str, str],
) -> str:
    """The whole summary. ``plots``: plot name -> file name (relative to the md) or None."""
    env = combined.get("environment") or {}
    hw = env.get("gpus") or [env.get("cpu_model", "?")]
    md = [
        f"# Benchmarks {combined.get('date', '')} on {combined.get('machine_name', '?')}\n",
        f"Mode {combined.get('mode', '?')}, device {combined.get('device', '?')}; "
        f"{', '.join(map(str, hw))}, {env.get('cpu_count', '?')} CPU cores, torch "
        f"{env.get('torch', '?')}, transformers {env.get('transformers', '?')}, faiss "
        f"{env.get('faiss', '?')}, commit {str(env.get('git_commit') or '?')[:10]}"
        f"{' (dirty tree)' if env.get('git_dirty') else ''}; 1-min load average at the end "
        f"{env.get('load_average_1min', '?')}.\n",
        "## Runs\n",
        run_table(combined),
    ]
    known = {name for _, name, _ in SECTIONS}
    for title, name, render in SECTIONS:
        md.append(f"## {title}\n")
        records = records_of(combined, name)
        done = [r for r in records if r.get("status") == "ok" and r.get("result") is not None]
        if not done:
            md.append(f"not run: {not_run_reason(records, name)}\n")
        for r in done:
            if len(done) > 1 or r.get("variant"):
                md.append(f"### {r['key']}\n")
            md.append(render(r["result"]))
        if name == "datastore_search":
            md.append(_plot_line("qps_vs_size", plots, plot_notes))
    md.append("## WER per method (recipe results)\n")
    if wer_results:
        md.append(
            markdown_table(
                [dict(r, wer_pct=r["wer"], cer_pct=r["cer"]) for r in wer_results],
                ["recipe", "model", "decoding", "test_set", "wer_pct", "cer_pct", "rtf"],
            )
        )
    md.append(_plot_line("wer", plots, plot_notes))
    others = sorted({r["benchmark"] for r in combined.get("benchmarks", [])} - known)
    if others:
        md.append("## Other benchmarks\n")
        for name in others:
            md.append(f"### {name}\n")
            done = [r for r in records_of(combined, name) if r.get("status") == "ok" and r.get("result")]
            if not done:
                md.append(f"not run: {not_run_reason(records_of(combined, name), name)}\n")
            for r in done:
                md.append(render_generic(r["result"]))
    return "\n".join(md)


def _plot_line(name: str, plots: Dict[str, Optional[str]], notes: Dict[str, str]) -> str:
    if plots.get(name):
        return f"\n![{name}]({plots[name]})\n"
    return f"\nNo {name} plot: {notes.get(name, 'no data')}.\n"


def write_report(
    combined: Dict[str, Any], out_dir: Path, stem: str, repo_root: Optional[Path] = None
) -> Dict[str, Optional[Path]]:
    """Write ``<stem>.md`` and the plots into ``out_dir``; returns their paths (None: no plot)."""
    out_dir = Path(out_dir)
    repo_root = Path(repo_root) if repo_root is not None else BENCH_DIR.parent
    plots: Dict[str, Optional[str]] = {"qps_vs_size": None, "wer": None}
    notes: Dict[str, str] = {}
    paths: Dict[str, Optional[Path]] = {"qps_vs_size_png": None, "wer_png": None}

    ok = [r for r in records_of(combined, "datastore_search") if r.get("status") == "ok" and r.get("result")]
    series = qps_series(ok[0]["result"]) if ok else {}
    if series:
        args = ok[0]["result"].get("args") or {}
        path = plot_qps_vs_size(
            series,
            out_dir / f"{stem}_qps_vs_size.png",
            f"datastore search, dim {args.get('dim', '?')}, nq {args.get('nq', '?')}",
        )
        plots["qps_vs_size"], paths["qps_vs_size_png"] = path.name, path
    else:
        notes["qps_vs_size"] = "datastore_search has no results in this run"

    wer_results = collect_wer_results(repo_root)
    if wer_results:
        path = plot_wer(wer_results, out_dir / f"{stem}_wer.png")
        plots["wer"], paths["wer_png"] = path.name, path
    else:
        notes["wer"] = f"no recipe results found ({repo_root}/{WER_GLOB}); run a recipe first"

    from espnet_llm_plugin.fileio.atomic import atomic_write_text

    md_path = out_dir / f"{stem}.md"
    atomic_write_text(md_path, render_markdown(combined, wer_results, plots, notes))
    paths["md"] = md_path
    return paths


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Optional[Path]]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("combined_json", type=Path, help="OUT_DIR/<date>-<machine>.json from run_all.py")
    p.add_argument(
        "--repo_root",
        type=Path,
        default=BENCH_DIR.parent,
        help="where egs2/*/llm_asr1/exp/**/score/result.json are looked for",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        combined = json.loads(args.combined_json.read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{args.combined_json}: cannot read the combined results ({e})") from e
    if not isinstance(combined, dict) or "benchmarks" not in combined:
        raise ValueError(f"{args.combined_json}: not a run_all.py result (no 'benchmarks' key)")
    paths = write_report(combined, args.combined_json.parent, args.combined_json.stem, args.repo_root)
    logging.info("wrote %s", ", ".join(str(v) for v in paths.values() if v))
    return paths


if __name__ == "__main__":
    main()
