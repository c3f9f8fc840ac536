"""Training-step time and peak memory of LLM-based ASR under frozen / LoRA / full LLM fine-tuning.

The model is what an ``llm`` decoder config trains: fixed random encoder features
``(B, T_enc, D_enc)`` -> ``Conv1dMlpAdapter`` (trainable) -> ``LlmDecoder`` (our HF Llama wrapper,
``finetune`` = frozen | lora | full) -> cross-entropy on the transcript tokens, then backward and
an AdamW step. The LLM is a random-initialised Llama written with ``save_pretrained`` and loaded
through ``from_pretrained``. (The speech encoder is not included: its cost does not depend on the
LLM scheme.)

Each (model size, scheme) runs in a fresh subprocess, so one run's memory never pollutes the
next. Peak memory: CUDA ``max_memory_allocated``; CPU peak RSS (``VmHWM``, reset before the
first step where the kernel allows) minus the RSS of the process before the model was built
(interpreter and libraries), i.e. weights + gradients + optimizer state + activations.
On Linux/glibc the worker first fixes malloc's mmap threshold (``--malloc_mmap_threshold``,
default 128 KiB): by default glibc raises that threshold up to 32 MiB as large blocks are freed,
after which activation-sized tensors come from the heap and their memory, once freed, stays in
the process; the peak RSS then grows from step to step and counts freed activations (it hid a
good part of what gradient checkpointing saves). With a fixed threshold every such tensor is its own
mapping, returned to the OS when freed, so the peak RSS follows live tensors as CUDA's
``max_memory_allocated`` does (at the cost of more page faults: somewhat slower CPU steps).

Target: LoRA peak memory <= half of full fine-tuning. That holds once the optimizer state and
gradients of the full model (fp32 AdamW: 12 bytes/parameter on top of the weights) outweigh the
activations, so a sweep over model widths (``--sweep_hidden``) reports where it starts to hold.
Why activations matter: with a trainable adapter, gradients flow through the whole LLM in every
scheme, but only LoRA and full keep each adapted linear layer's input for its weight gradient
(frozen keeps none), and LoRA dropout > 0 keeps one more, dropped copy per adapted layer
(``--lora_dropout 0`` avoids that). LoRA's activations are therefore at least full's.
Gradient checkpointing (``LlmDecoder(gradient_checkpointing=True)``, ``decoder_conf`` key of the
same name) recomputes each LLM layer's activations in backward instead of keeping them: the lever
for the activation part. ``--gradient_checkpointing off|on|both`` (default ``both``; the flag alone
means ``on``) runs every (size, scheme) without and/or with it; the LoRA/full ratio is computed
within one setting, and rows with checkpointing also give their memory and step time relative to
the same scheme without it (``mem_vs_no_ckpt``, ``time_vs_no_ckpt``).
On CUDA the JSON also has model FLOPs utilisation: ``6 * params * tokens / step_time / peak``
(``mfu_6n``) and the same plus attention FLOPs ``12 * layers * hidden * seq`` per token
(``mfu_6n_attn``); peak defaults to 989 TFLOP/s (H100/H200 SXM, bf16 dense). These count useful
FLOPs only: the recomputation of gradient checkpointing is not credited.

Sizes: ``--quick`` tiny; default ``--preset cpu`` (~22M-parameter LLM); ``--preset 1b`` a ~1B
Llama in bfloat16 with SDPA attention (CUDA only).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import logging
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from espnet_llm_plugin.core.device import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

logger = logging.getLogger("llm_train_step")

NAME = "llm_train_step"
SCHEMES = ("frozen", "lora", "full")
CHECKPOINTING = {"off": (False,), "on": (True,), "both": (False, True)}
TARGET_LORA_OVER_FULL = 0.5
H100_BF16_DENSE_TFLOPS = 989.0
PROMPT, SUFFIX = "w1 w2 w3", "w4"
RESULT_TAG = "TRAIN_STEP_RESULT "
DEFAULT_MMAP_THRESHOLD = 128 * 1024  # glibc's initial value, kept fixed
M_MMAP_THRESHOLD = -3  # mallopt parameter (malloc.h)

PRESETS: Dict[str, Dict[str, Any]] = {
    "quick": dict(
        vocab=300,
        hidden=64,
        layers=2,
        heads=4,
        kv_heads=None,
        intermediate=None,
        batch=2,
        enc_frames=40,
        enc_dim=48,
        text_len=12,
        dtype="float32",
        steps=2,
        warmup=1,
        sweep_hidden=[],
    ),
    "cpu": dict(
        vocab=8000,
        hidden=384,
        layers=8,
        heads=6,
        kv_heads=None,
        intermediate=None,
        batch=4,
        enc_frames=200,
        enc_dim=256,
        text_len=40,
        dtype="float32",
        steps=3,
        warmup=1,
        sweep_hidden=[128, 768],
    ),
    "1b": dict(
        vocab=32000,
        hidden=2048,
        layers=16,
        heads=32,
        kv_heads=8,
        intermediate=8192,
        batch=8,
        enc_frames=500,
        enc_dim=1024,
        text_len=100,
        dtype="bfloat16",
        steps=10,
        warmup=3,
        sweep_hidden=[],
    ),
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument(
        "--preset", default="cpu", choices=["cpu", "1b"], help="model/batch size (--quick overrides it with tiny sizes)"
    )
    p.add_argument("--schemes", default=",".join(SCHEMES), help=f"comma list from {SCHEMES}")
    p.add_argument("--steps", type=int, help="timed steps per scheme (median reported)")
    p.add_argument("--warmup", type=int, help="untimed steps first (optimizer state is allocated)")
    p.add_argument("--batch", type=int, help="utterances per batch")
    p.add_argument("--hidden", type=int, help="LLM width of the main rows (heads: 64-wide unless the preset's)")
    p.add_argument("--layers", type=int, help="LLM layers")
    p.add_argument(
        "--sweep_hidden",
        type=str,
        help="comma list of extra LLM widths for the LoRA-vs-full memory sweep ('' for none; preset: cpu 128,768)",
    )
    p.add_argument(
        "--peak_tflops", type=float, help="accelerator peak for MFU (default: 989 bf16 on an H100/H200, none on CPU)"
    )
    p.add_argument(
        "--lora_dropout",
        type=float,
        default=0.05,
        help="LoRA dropout (LlmDecoder's default 0.05; > 0 makes peft keep a dropped copy "
        "of every adapted layer's input for backward, 0 shares the base layer's)",
    )
    p.add_argument(
        "--gradient_checkpointing",
        nargs="?",
        const="on",
        default="both",
        choices=sorted(CHECKPOINTING),
        help="LlmDecoder gradient checkpointing for every run: off, on, or both (each "
        "(size, scheme) twice, to compare memory and time); the flag alone means on "
        "(default: both)",
    )
    p.add_argument(
        "--malloc_mmap_threshold",
        type=int,
        default=DEFAULT_MMAP_THRESHOLD,
        help="CPU, glibc: fix malloc's mmap threshold at this many bytes so that freed "
        "tensors leave the peak-RSS measurement (0: glibc's dynamic default, under "
        "which freed activations stay resident; default %(default)s)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--in_process",
        action="store_true",
        help="run every measurement in this process (faster start; CPU memory numbers "
        "then include what earlier runs left allocated)",
    )
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON job for one subprocess
    return p


# ------------------------------------------------------------------------------ worker
def fix_malloc_mmap_threshold(nbytes: int) -> bool:
    """glibc: serve every allocation of ``nbytes`` or more by its own mmap (released on free).

    Setting the threshold also switches off glibc's dynamic raising of it (up to 32 MiB), which
    otherwise keeps freed activations resident and inflates the peak RSS. Returns whether it
    was set (False: ``nbytes <= 0``, or not glibc).
    """
    if nbytes <= 0 or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, int(nbytes)))
    except (OSError, AttributeError):
        return False


def train_step_worker(job: Dict[str, Any]) -> Dict[str, Any]:
    """Build the model for one scheme, run warm-up + timed steps, return time and memory."""
    import torch

    if job["threads"]:
        torch.set_num_threads(job["threads"])
    device = resolve_device(job["device"])
    # host memory is the measure on the CPU only
    mmap_threshold_fixed = device.type == "cpu" and fix_malloc_mmap_threshold(job.get("malloc_mmap_threshold", 0))
    # libraries loaded before the baseline RSS is read: only the model's memory is counted
    import peft  # noqa: F401  (imported by the lora scheme; load it for every scheme alike)
    from transformers import AutoTokenizer

    from espnet_llm_plugin.asr.adapter import Conv1dMlpAdapter
    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
    from espnet_llm_plugin.core.finetune import parameter_counts

    cfg = job["config"]
    tokenizer = AutoTokenizer.from_pretrained(job["llm_dir"], local_files_only=True)
    V = len(tokenizer)
    baseline_rss = common.rss_bytes()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    torch.manual_seed(job["seed"])
    decoder = LlmDecoder(
        V,
        cfg["hidden"],
        llm_path=job["llm_dir"],
        prompt=PROMPT,
        prompt_suffix=SUFFIX,
        finetune=job["scheme"],
        lora_r=16,
        lora_alpha=16,
        lora_dropout=job.get("lora_dropout", 0.05),
        dtype=cfg["dtype"],
        gradient_checkpointing=bool(job.get("gradient_checkpointing", False)),
    )
    adapter = Conv1dMlpAdapter(cfg["enc_dim"], cfg["hidden"], stride=2, num_conv_layers=1)
    model = torch.nn.ModuleDict({"adapter": adapter, "decoder": decoder}).to(device).train()
    llm = decoder._causal_lm()
    llm_params = sum(p.numel() for n, p in llm.named_parameters() if "lora_" not in n)  # base LLM
    trainable, total = parameter_counts(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    g = torch.Generator().manual_seed(job["seed"])
    B, T = cfg["batch"], cfg["enc_frames"]
    feats = torch.randn(B, T, cfg["enc_dim"], generator=g).to(device)
    feat_lens = torch.tensor([T - 7 * i for i in range(B)]).clamp(min=T // 2).to(device)
    L = cfg["text_len"]
    ys = torch.randint(4, V, (B, L + 1), generator=g)
    ys[:, 0] = decoder.eos_id  # ESPnet's sos (= the LLM's eos id, replaced by bos inside)
    text_lens = torch.tensor([L - 3 * i for i in range(B)]).clamp(min=1)
    ys_in, targets = ys[:, :-1].to(device), ys[:, 1:].clone()
    targets[torch.arange(L).unsqueeze(0) >= text_lens.unsqueeze(1)] = -100
    targets, text_lens = targets.to(device), text_lens.to(device)
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if (device.type == "cuda" and cfg["dtype"] == "bfloat16")
        else _null()
    )

    def step() -> float:
        with autocast:
            hs, hlens = model["adapter"](feats, feat_lens)
            logits, _ = model["decoder"](hs, hlens, ys_in, text_lens)
            loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), targets.reshape(-1), ignore_index=-100)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return float(loss.detach())

    # tokens the LLM reads per step (prompt + speech + suffix + text, padding excluded)
    adapter_lens = adapter.output_lengths(feat_lens.cpu())
    seqs = decoder.prompt_ids.numel() + adapter_lens + decoder.suffix_ids.numel() + text_lens.cpu()
    tokens = int(seqs.sum())

    before_steps_rss = common.rss_bytes()
    peak_reset = common.reset_peak_memory(device)
    for _ in range(job["warmup"]):
        step()
    times, losses = [], []
    for _ in range(job["steps"]):
        with common.timer(device) as t:
            losses.append(step())
        times.append(t["seconds"])
    peak = common.peak_memory_bytes(device)
    if device.type == "cuda":
        train_mem = peak
    else:
        # the high-water mark is reset after the baseline is read: when the run needs less than
        # what was freed meanwhile (a tiny model), the difference is page noise below zero
        train_mem = None if peak is None or baseline_rss is None else max(0, peak - baseline_rss)
    s = common.summarize(times)
    lcfg = llm.config
    attn_flops = sum(12 * lcfg.num_hidden_layers * lcfg.hidden_size * int(n) ** 2 for n in seqs)
    return {
        "scheme": job["scheme"],
        "gradient_checkpointing": decoder.gradient_checkpointing,
        "hidden": cfg["hidden"],
        "llm_params": llm_params,
        "trainable_params": trainable,
        "total_params": total,
        "step_s": s["median"],
        "min_s": s["min"],
        "max_s": s["max"],
        "steps": s["repeats"],
        "tokens_per_step": tokens,
        "tokens_per_s": tokens / s["median"],
        "flops_6n_per_step": 6 * llm_params * tokens,
        "attn_flops_per_step": attn_flops,
        "train_mem_bytes": train_mem,
        "peak_bytes": peak,
        "rss_before_model_bytes": baseline_rss,
        "rss_before_steps_bytes": before_steps_rss,
        "cpu_peak_reset": peak_reset if device.type == "cpu" else None,
        "malloc_mmap_threshold_fixed": mmap_threshold_fixed,
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "attn_implementation": getattr(lcfg, "_attn_implementation", None),
    }


def find_run(rows: List[Dict[str, Any]], hidden: int, scheme: str, ckpt: bool) -> Optional[Dict[str, Any]]:
    """The row of one (LLM width, scheme, checkpointing setting) run, or None when it did not run."""
    return next(
        (
            r
            for r in rows
            if r["hidden"] == hidden and r["scheme"] == scheme and bool(r.get("gradient_checkpointing")) == ckpt
        ),
        None,
    )


def memory_ratios(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """LoRA / full training memory per (model size, checkpointing setting); also stored in the rows.

    For the setting with checkpointing, ``lora_ckpt_over_full_no_ckpt`` compares LoRA with it to
    full fine-tuning without it (when both ran).
    """
    ratios: List[Dict[str, Any]] = []
    for hidden in sorted({r["hidden"] for r in rows}):
        for ckpt in (False, True):
            by = {s: find_run(rows, hidden, s, ckpt) for s in ("lora", "full")}
            if None in by.values() or not by["full"]["train_mem_bytes"]:
                continue
            ratio = by["lora"]["train_mem_bytes"] / by["full"]["train_mem_bytes"]
            entry = {
                "hidden": hidden,
                "llm_params_M": by["full"]["llm_params_M"],
                "gradient_checkpointing": ckpt,
                "lora_over_full_memory": ratio,
                "target_met": ratio <= TARGET_LORA_OVER_FULL,
            }
            full_plain = find_run(rows, hidden, "full", False)
            if ckpt and full_plain is not None and full_plain["train_mem_bytes"]:
                entry["lora_ckpt_over_full_no_ckpt"] = by["lora"]["train_mem_bytes"] / full_plain["train_mem_bytes"]
            ratios.append(entry)
            for s in ("lora", "full"):
                by[s]["lora_over_full_memory"] = ratio
    return ratios


def add_checkpointing_ratios(rows: List[Dict[str, Any]]) -> None:
    """Rows with checkpointing get ``mem_vs_no_ckpt`` and ``time_vs_no_ckpt`` (same size and scheme)."""
    for r in rows:
        if not r.get("gradient_checkpointing"):
            continue
        plain = find_run(rows, r["hidden"], r["scheme"], False)
        if plain is None:
            continue
        if plain["train_mem_bytes"] and r["train_mem_bytes"] is not None:
            r["mem_vs_no_ckpt"] = r["train_mem_bytes"] / plain["train_mem_bytes"]
        r["time_vs_no_ckpt"] = r["step_s"] / plain["step_s"]


class _null:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def run_in_subprocess(job: Dict[str, Any]) -> Dict[str, Any]:
    """One measurement in a fresh interpreter (clean peak memory); returns its result dict."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(job)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    raise RuntimeError(
        f"train-step worker for scheme={job['scheme']} hidden={job['config']['hidden']} "
        f"gradient_checkpointing={job.get('gradient_checkpointing', False)} failed "
        f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    )


# ------------------------------------------------------------------------------ main
def _peak_tflops(args: argparse.Namespace, device: Any) -> Optional[float]:
    if args.peak_tflops is not None:
        return args.peak_tflops
    if device.type == "cuda":
        import torch

        name = torch.cuda.get_device_name(device)
        if "H100" in name or "H200" in name:
            return H100_BF16_DENSE_TFLOPS
    return None


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.worker:  # internal subprocess mode
        result = train_step_worker(json.loads(args.worker))
        print(RESULT_TAG + json.dumps(result), flush=True)
        return result
    common.setup_logging()
    schemes = [s.strip() for s in args.schemes.split(",") if s.strip()]
    bad = [s for s in schemes if s not in SCHEMES]
    if bad or not schemes:
        raise ValueError(f"--schemes: unknown {bad}; choose from {SCHEMES}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = dict(PRESETS["quick" if args.quick else args.preset])
    preset_hidden = cfg["hidden"]
    for key in ("steps", "warmup", "batch", "hidden", "layers"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
    if min(cfg["steps"], cfg["batch"], cfg["hidden"], cfg["layers"]) <= 0 or cfg["warmup"] < 0:
        raise ValueError("--steps, --batch, --hidden and --layers must be positive, --warmup >= 0")
    if cfg["hidden"] != preset_hidden:  # other width: 64-wide heads, default MLP width
        cfg.update(heads=max(1, cfg["hidden"] // 64), kv_heads=None, intermediate=None)
    if args.sweep_hidden is not None:
        try:
            cfg["sweep_hidden"] = [int(h) for h in args.sweep_hidden.split(",") if h.strip()]
        except ValueError as e:
            raise ValueError(f"--sweep_hidden: a comma list of integers, got {args.sweep_hidden!r}") from e
    if cfg["dtype"] != "float32" and device.type != "cuda":
        raise ValueError(f"--preset {args.preset} trains in {cfg['dtype']} and needs --device cuda")
    peak_tflops = _peak_tflops(args, device)
    checkpointing = CHECKPOINTING[args.gradient_checkpointing]

    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench_llm_train_") as tmp:
        sizes = [cfg["hidden"]] + [h for h in cfg["sweep_hidden"] if h != cfg["hidden"]]
        for hidden in sizes:
            main_size = hidden == cfg["hidden"]
            heads = cfg["heads"] if main_size else max(1, hidden // 64)
            if hidden % heads:
                raise ValueError(f"--sweep_hidden {hidden} is not divisible by {heads} heads (64 per head)")
            llm_dir = common.random_llama_dir(
                Path(tmp) / f"llm_{hidden}",
                cfg["vocab"],
                hidden,
                cfg["layers"],
                heads,
                cfg["kv_heads"] if main_size else None,
                cfg["intermediate"] if main_size else None,
                seed=args.seed,
            )
            size_cfg = dict(cfg, hidden=hidden, heads=heads)
            size_schemes = schemes if main_size else [s for s in schemes if s in ("lora", "full")]
            runs = [(scheme, ckpt) for scheme in size_schemes for ckpt in checkpointing]
            for scheme, ckpt in runs:
                job = {
                    "llm_dir": str(llm_dir),
                    "scheme": scheme,
                    "config": size_cfg,
                    "device": str(device),
                    "seed": args.seed,
                    "threads": args.threads,
                    "lora_dropout": args.lora_dropout,
                    "gradient_checkpointing": ckpt,
                    "malloc_mmap_threshold": args.malloc_mmap_threshold,
                    "steps": cfg["steps"] if main_size else 1,
                    "warmup": cfg["warmup"],
                }
                logger.info(
                    "hidden %d, %s, gradient checkpointing %s: running %d+%d steps",
                    hidden,
                    scheme,
                    "on" if ckpt else "off",
                    job["warmup"],
                    job["steps"],
                )
                r = train_step_worker(job) if args.in_process else run_in_subprocess(job)
                r["train_mem_mib"] = common.mib(r["train_mem_bytes"])
                r["peak_mib"] = common.mib(r["peak_bytes"])
                r["llm_params_M"] = round(r["llm_params"] / 1e6, 2)
                r["trainable_M"] = round(r["trainable_params"] / 1e6, 3)
                if peak_tflops:
                    r["mfu_6n"] = r["flops_6n_per_step"] / r["step_s"] / (peak_tflops * 1e12)
                    r["mfu_6n_attn"] = (
                        (r["flops_6n_per_step"] + r["attn_flops_per_step"]) / r["step_s"] / (peak_tflops * 1e12)
                    )
                r["sweep_only"] = not main_size
                rows.append(r)
                logger.info(
                    "hidden %d, %s, gradient checkpointing %s: %.3f s/step, memory %s MiB",
                    hidden,
                    scheme,
                    "on" if ckpt else "off",
                    r["step_s"],
                    r["train_mem_mib"],
                )

    ratios = memory_ratios(rows)
    add_checkpointing_ratios(rows)
    holds_from = {
        ckpt: next((r["llm_params_M"] for r in ratios if r["target_met"] and r["gradient_checkpointing"] == ckpt), None)
        for ckpt in (False, True)
    }
    main_ratio = {
        ckpt: next((r for r in ratios if r["hidden"] == cfg["hidden"] and r["gradient_checkpointing"] == ckpt), None)
        for ckpt in (False, True)
    }

    memory_measure = "cuda max_memory_allocated"
    if device.type == "cpu":
        memory_measure = "peak RSS (VmHWM) minus RSS before the model was built, " + (
            "every run in one process" if args.in_process else "fresh process per run"
        )
        if all(r.get("malloc_mmap_threshold_fixed") for r in rows):
            memory_measure += f", glibc mmap threshold fixed at {args.malloc_mmap_threshold} bytes"
        else:
            memory_measure += ", glibc's dynamic mmap threshold (freed activations may stay resident)"
    payload: Dict[str, Any] = {
        "benchmark": NAME,
        "config": {
            **{k: v for k, v in cfg.items()},
            "preset": "quick" if args.quick else args.preset,
            "seed": args.seed,
            "threads": args.threads,
            "peak_tflops": peak_tflops,
            "gradient_checkpointing": args.gradient_checkpointing,
            "malloc_mmap_threshold": args.malloc_mmap_threshold,
            "optimizer": "AdamW (torch), states in parameter dtype",
            "lora": {"r": 16, "alpha": 16, "dropout": args.lora_dropout, "targets": "every nn.Linear but lm_head"},
        },
        "machine": common.machine_info(device),
        "memory_measure": memory_measure,
        "lora_over_full_memory": ratios,
        "target_lora_over_full": TARGET_LORA_OVER_FULL,
        # without / with gradient checkpointing (None: that setting or LoRA/full not run)
        "target_met_at_main_size": None if main_ratio[False] is None else main_ratio[False]["target_met"],
        "target_holds_from_llm_params_M": holds_from[False],
        "target_met_at_main_size_with_checkpointing": (
            None if main_ratio[True] is None else main_ratio[True]["target_met"]
        ),
        "target_holds_from_llm_params_M_with_checkpointing": holds_from[True],
    }
    notes = [
        f"batch {cfg['batch']}, {cfg['enc_frames']} encoder frames (adapter stride 2), "
        f"{cfg['text_len']} text tokens, {cfg['dtype']}, device {device}, LoRA r=16 alpha=16 "
        f"dropout={args.lora_dropout:g} on every Linear but lm_head; "
        f"sweep rows (sweep_only) ran {cfg['warmup']}+1 steps",
        "memory: " + payload["memory_measure"],
    ]
    for r in ratios:
        line = (
            f"LLM {r['llm_params_M']}M params, gradient checkpointing "
            f"{'on' if r['gradient_checkpointing'] else 'off'}: LoRA/full memory = "
            f"{r['lora_over_full_memory']:.2f} (target <= {TARGET_LORA_OVER_FULL}: "
            f"{'met' if r['target_met'] else 'NOT met'})"
        )
        if r.get("lora_ckpt_over_full_no_ckpt") is not None:
            line += f"; LoRA with / full without checkpointing = {r['lora_ckpt_over_full_no_ckpt']:.2f}"
        notes.append(line)
    if True in checkpointing:
        notes.append(
            "mem_vs_no_ckpt, time_vs_no_ckpt: training memory and step time with gradient "
            "checkpointing / without, same size and scheme"
        )
    if peak_tflops is None:
        notes.append("MFU: not reported (no accelerator peak known; pass --peak_tflops)")
    else:
        notes.append(
            f"MFU against {peak_tflops:g} TFLOP/s; frozen/LoRA skip the weight-gradient "
            f"third of 6N, so their hardware utilisation is about 2/3 of mfu_6n"
        )
    columns = [
        "hidden",
        "llm_params_M",
        "scheme",
        "gradient_checkpointing",
        "trainable_M",
        "step_s",
        "tokens_per_s",
        "train_mem_mib",
        "peak_mib",
        "lora_over_full_memory",
        "mem_vs_no_ckpt",
        "time_vs_no_ckpt",
        "mfu_6n",
        "mfu_6n_attn",
        "sweep_only",
    ]
    md = common.write_results(
        NAME, payload, rows, columns, args.out_dir, title="LLM-ASR training step: frozen / LoRA / full", notes=notes
    )
    print(md)
    payload["rows"] = rows
    return payload


if __name__ == "__main__":
    main()
