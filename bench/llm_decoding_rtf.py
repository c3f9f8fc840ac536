"""Decoding speed of LLM-based ASR: our KV-cached LlmDecoder vs ESPnet's Hugging Face decoder.

One random-initialised Llama directory (a user's LLM goes through the same ``from_pretrained``
path) and one fake adapter output ``(T, D)`` per utterance are decoded with beam 10 into exactly
``--tokens`` tokens by every method (EOS is masked, so all do equal work):

* ``ours_cached``      our ``LlmDecoder`` as the decoder scorer of ESPnet's ``BatchBeamSearch``:
                       one KV cache per step, only the new token is fed.
* ``ours_uncached``    the same decoder through its uncached path (``_score_uncached``): every
                       step re-runs ``[prompt][speech][suffix][prefix]`` for all hypotheses.
* ``espnet_beam``      ESPnet's ``hugging_face_transformers`` decoder (``causal_lm: true``) in the
                       same ``BatchBeamSearch``, scored through its ``forward`` (no KV cache). Its own
                       ``batch_score`` cannot be used for a causal LM (see ``espnet_batch_score`` in
                       the JSON: it needs ``hf_generate``, which ``asr_inference`` never sets for a
                       causal LM, and it feeds ``encoder_outputs`` that a causal LM ignores).
* ``espnet_generate``  ESPnet's inference path for that decoder (``asr_inference.py``,
                       ``hugging_face_decoder: true``): HF ``generate`` on the prefix, which
                       ESPnet repeats ``num_beams`` times *and* passes ``num_beams`` (so beam x beam
                       rows); no ESPnet scorer (CTC, LM) can join this search.
* ``hf_generate``      plain HF ``generate`` beam search (``LlmDecoder.generate``) for reference.

Timing: ``ours_cached`` and ``hf_generate`` (the pair the beam-search speed target compares)
are timed ``--repeats`` times, interleaved per utterance (A B, then B A, ...), so that load
on a shared machine hits both alike; the ratio reported is the median of the per-pair ratios,
in wall time and in CPU time (this process, all threads). The other methods are timed once.

Real model: with full sizes (``--real_model auto``, not under ``--quick``) the same pair also
decodes with SmolLM2-135M-Instruct as prepared by ``python -m
espnet_llm_plugin.bin.prepare_pretrained smollm2-135m-instruct`` (rows with ``model`` set to
its name; ``--real_tokens`` tokens, beam ``--beam``). Nothing is downloaded or converted: when
the model is not prepared the rows are skipped and ``real_model_skipped`` says why.

Outputs: ``bench/results/llm_decoding_rtf.json`` and ``.md`` (seconds per utterance, tokens/s,
real-time factor for a nominal ``--frame_ms`` per adapter frame, speedup of ``ours_cached``,
``ours_cached_over_hf_generate`` per model).
Targets: ``ours_cached`` >= 5x faster than ``espnet_beam``; ``ours_cached`` wall time <= 1.2x
``hf_generate``'s at beam 10, for the random and the real model.

Sizes: ``--quick`` tiny; default ``--preset cpu`` (~20M parameters); ``--preset 1b`` a ~1B Llama
in bfloat16 (CUDA only).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from espnet_llm_plugin.core.device import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

logger = logging.getLogger("llm_decoding_rtf")

NAME = "llm_decoding_rtf"
METHODS = ("ours_cached", "ours_uncached", "espnet_beam", "espnet_generate", "hf_generate")
PAIRED = ("ours_cached", "hf_generate")  # timed --repeats times, interleaved
TARGET_SPEEDUP = 5.0
TARGET_VS_HF_GENERATE = 1.2  # ours_cached wall time / hf_generate's, at most
RANDOM_MODEL = "random"  # the ``model`` of rows decoded with the random Llama
REAL_MODEL = "smollm2-135m-instruct"  # prepared by espnet_llm_plugin.bin.prepare_pretrained

# model and workload sizes; frames are adapter outputs (the LLM's speech positions)
PRESETS: Dict[str, Dict[str, Any]] = {
    "quick": dict(
        vocab=300,
        hidden=64,
        layers=2,
        heads=4,
        kv_heads=None,
        intermediate=None,
        frames=16,
        tokens=12,
        beam=10,
        utts=1,
        dtype="float32",
    ),
    "cpu": dict(
        vocab=8000,
        hidden=384,
        layers=8,
        heads=6,
        kv_heads=None,
        intermediate=None,
        frames=60,
        tokens=100,
        beam=10,
        utts=1,
        dtype="float32",
    ),
    "1b": dict(
        vocab=32000,
        hidden=2048,
        layers=16,
        heads=32,
        kv_heads=8,
        intermediate=8192,
        frames=125,
        tokens=100,
        beam=10,
        utts=3,
        dtype="bfloat16",
    ),
}
PROMPT, SUFFIX = "w1 w2 w3", "w4"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument(
        "--preset",
        default="cpu",
        choices=["cpu", "1b"],
        help="model/workload size (--quick overrides it with tiny sizes)",
    )
    p.add_argument("--methods", default=",".join(METHODS), help=f"comma list from {METHODS}")
    p.add_argument("--beam", type=int, help="beam size (preset: 10)")
    p.add_argument("--tokens", type=int, help="output tokens per utterance (preset: 100)")
    p.add_argument("--frames", type=int, help="speech frames T per utterance (after the adapter)")
    p.add_argument("--utts", type=int, help="timed utterances per method (median reported)")
    p.add_argument(
        "--frame_ms",
        type=float,
        default=80.0,
        help="audio per adapter frame, for the real-time factor (40 ms encoder x stride 2)",
    )
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    p.add_argument(
        "--llm_dir",
        type=Path,
        help="use this HF model dir instead of building a random Llama (its tokenizer "
        "must contain the prompt words w1..w4 or the prompt is mapped to <unk>)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        help=f"timings of each of {', '.join(PAIRED)} per utterance, interleaved (default 3; 1 with --quick)",
    )
    p.add_argument(
        "--real_model",
        default="auto",
        choices=["auto", "on", "off"],
        help=f"also time {' vs '.join(PAIRED)} with the prepared {REAL_MODEL} "
        "(auto: on except with --quick; skipped with the reason when not prepared)",
    )
    p.add_argument("--real_tokens", type=int, default=50, help="output tokens per utterance for the real model")
    return p


# ------------------------------------------------------------------------------ scorers
def scorer_classes() -> Dict[str, type]:
    """The benchmark's ESPnet scorers, defined on first use (``--help`` imports no ESPnet/torch).

    ``no_eos``: adds ``-inf`` to the eos log-prob so no hypothesis ends before ``maxlen``.
    ``uncached``: our ``LlmDecoder`` scored without its KV cache (``_score_uncached`` each step).
    ``espnet_forward``: ESPnet's ``HuggingFaceTransformersDecoder`` scored through its ``forward``
    on the full prefix (its own ``batch_score`` does not work for a causal LM).
    """
    if _SCORERS:
        return _SCORERS
    import torch
    from espnet.nets.scorer_interface import BatchScorerInterface

    class _Stateless(BatchScorerInterface):
        def init_state(self, x):
            return None

        def score(self, ys, state, x):
            return self.batch_score(ys.unsqueeze(0), [state], x.unsqueeze(0))[0][0], None

    class NoEosScorer(_Stateless):
        def __init__(self, vocab_size: int, eos: int):
            self.vocab_size, self.eos = vocab_size, eos

        def batch_score(self, ys, states, xs):
            out = torch.zeros(ys.size(0), self.vocab_size, device=xs.device)
            out[:, self.eos] = float("-inf")
            return out, None

    class UncachedLlmScorer(_Stateless):
        def __init__(self, decoder):
            self.decoder = decoder

        def batch_score(self, ys, states, xs):
            with torch.no_grad():
                logp, _ = self.decoder._score_uncached(ys, xs)  # the cache it returns is dropped
            return logp, None

    class EspnetForwardScorer(_Stateless):
        def __init__(self, decoder):
            self.decoder = decoder

        def batch_score(self, ys, states, xs):
            n = ys.size(0)
            with torch.no_grad():
                logits, _ = self.decoder(
                    xs,
                    torch.full((n,), xs.size(1), dtype=torch.long, device=xs.device),
                    ys,
                    torch.full((n,), ys.size(1), dtype=torch.long, device=ys.device),
                )
            return torch.log_softmax(logits[:, -1].float(), dim=-1), None

    _SCORERS.update(no_eos=NoEosScorer, uncached=UncachedLlmScorer, espnet_forward=EspnetForwardScorer)
    return _SCORERS


_SCORERS: Dict[str, type] = {}


# ------------------------------------------------------------------------------ decoders
def make_beam_search(scorer: Any, vocab_size: int, eos: int, beam: int, device: Any):
    """ESPnet's ``BatchBeamSearch`` with ``scorer`` as the decoder plus the eos mask."""
    from espnet.nets.batch_beam_search import BatchBeamSearch

    search = BatchBeamSearch(
        scorers={"decoder": scorer, "no_eos": scorer_classes()["no_eos"](vocab_size, eos)},
        weights={"decoder": 1.0, "no_eos": 1.0},
        beam_size=beam,
        vocab_size=vocab_size,
        sos=eos,
        eos=eos,
        token_list=None,
        pre_beam_score_key="full",
    )
    return search.to(device).eval()


def run_beam(search: Any, x: Any, tokens: int) -> List[int]:
    """Best hypothesis' tokens (sos/eos removed) after exactly ``tokens`` scoring steps."""
    import torch

    with torch.no_grad():
        hyps = search(x=x, maxlenratio=-float(tokens), minlenratio=0.0)
    return [int(t) for t in hyps[0].yseq[1:-1]]


class EspnetGenerate:
    """ESPnet ``asr_inference``'s causal-LM path: HF ``generate`` on ``add_prefix_postfix``."""

    def __init__(self, espnet_decoder: Any, llm_dir: Path, dtype: Any, device: Any, beam: int, eos: int):
        from transformers import AutoModelForCausalLM

        self.decoder = espnet_decoder
        model = AutoModelForCausalLM.from_pretrained(str(llm_dir), local_files_only=True)
        model.resize_token_embeddings(espnet_decoder.lm_head.out_features)
        model.model.load_state_dict(espnet_decoder.decoder.state_dict())  # as asr_inference does
        model.lm_head.load_state_dict(espnet_decoder.lm_head.state_dict())
        self.model = model.to(device=device, dtype=dtype).eval()
        self.beam, self.eos = beam, eos

    def __call__(self, x: Any, tokens: int) -> List[int]:
        import torch

        enc = self.decoder.linear_in(x).unsqueeze(0)  # (1, T, D)
        dev = enc.device
        with torch.no_grad():
            args, _ = self.decoder.add_prefix_postfix(
                enc,
                torch.tensor([enc.size(1)], device=dev),
                torch.ones([1, 1], dtype=torch.long, device=dev),
                torch.ones([1], dtype=torch.long, device=dev),
            )
            input_ids = torch.ones([1, args["inputs_embeds"].size(1)], dtype=torch.long, device=dev)
            out = self.model.generate(
                input_ids.repeat(self.beam, 1),
                inputs_embeds=args["inputs_embeds"].repeat(self.beam, 1, 1),
                attention_mask=input_ids.repeat(self.beam, 1),
                num_beams=self.beam,
                max_new_tokens=tokens,
                min_new_tokens=tokens,
                pad_token_id=self.eos,
                eos_token_id=self.eos,
                do_sample=False,
            )
        return [int(t) for t in out[0, input_ids.size(1) :] if int(t) != self.eos]


def probe_espnet_batch_score(espnet_decoder: Any, x: Any, sos: int) -> str:
    """What ESPnet's own ``batch_score`` does for a causal LM (as ``asr_inference`` leaves it)."""
    import torch

    try:
        espnet_decoder.batch_score(torch.tensor([[sos]], device=x.device), [None], x.unsqueeze(0))
    except Exception as e:  # report whatever it raises
        return f"{type(e).__name__}: {e}"
    return "ran (but a causal LM ignores encoder_outputs: the speech is not used)"


# ------------------------------------------------------------------------------ main
def resolve_config(args: argparse.Namespace, device: Any) -> Dict[str, Any]:
    cfg = dict(PRESETS["quick" if args.quick else args.preset])
    cfg["repeats"] = 1 if args.quick else 3
    for key in ("beam", "tokens", "frames", "utts", "repeats"):
        if getattr(args, key) is not None:
            cfg[key] = getattr(args, key)
        if cfg[key] <= 0:
            raise ValueError(f"--{key} must be positive, got {cfg[key]}")
    if args.real_tokens <= 0:
        raise ValueError(f"--real_tokens must be positive, got {args.real_tokens}")
    if cfg["dtype"] != "float32" and device.type != "cuda":
        raise ValueError(f"--preset {args.preset} runs in {cfg['dtype']} and needs --device cuda")
    return cfg


def prepared_real_model() -> Tuple[Optional[Path], Optional[str]]:
    """``(directory, None)`` of the prepared real model, or ``(None, why not)``.

    Only the manifest is checked (file sizes): nothing is downloaded or converted here.
    """
    from espnet_llm_plugin.pretrained.catalog import get_spec
    from espnet_llm_plugin.pretrained.prepare import PreparedModelError, check_manifest, default_dir

    out_dir = default_dir(REAL_MODEL)
    try:
        check_manifest(out_dir, get_spec(REAL_MODEL))
    except PreparedModelError as e:
        return None, (
            f"{REAL_MODEL} is not prepared ({e}); run `python -m "
            f"espnet_llm_plugin.bin.prepare_pretrained {REAL_MODEL}` first"
        )
    return out_dir, None


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    args = build_parser().parse_args(argv)
    common.setup_logging()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"--methods: unknown {bad}; choose from {METHODS}")

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    cfg = resolve_config(args, device)
    with tempfile.TemporaryDirectory(prefix="bench_llm_") as tmp:
        llm_dir = args.llm_dir or common.random_llama_dir(
            Path(tmp) / "llm",
            cfg["vocab"],
            cfg["hidden"],
            cfg["layers"],
            cfg["heads"],
            cfg["kv_heads"],
            cfg["intermediate"],
            seed=args.seed,
        )
        result = run(args, cfg, methods, Path(llm_dir), device)
    return result


def run(args, cfg, methods, llm_dir: Path, device) -> Dict[str, Any]:
    audio_s = cfg["frames"] * args.frame_ms / 1000.0
    logging.getLogger("espnet.nets.beam_search").setLevel(logging.WARNING)  # per-step logs
    logging.getLogger("espnet.nets.batch_beam_search").setLevel(logging.WARNING)
    main_model = decode_model(RANDOM_MODEL if args.llm_dir is None else "llm_dir", llm_dir, cfg, methods, args, device)
    rows, outputs = main_model["rows"], main_model["outputs"]
    pair_ratios = {main_model["name"]: main_model["vs_hf_generate"]}

    real_skipped: Optional[str] = None
    real: Optional[Dict[str, Any]] = None
    real_methods = [m for m in methods if m in PAIRED]
    if args.real_model == "off" or (args.real_model == "auto" and args.quick):
        real_skipped = f"--real_model {args.real_model}" + (" with --quick" if args.quick else "")
    elif not real_methods:
        real_skipped = f"--methods has none of {PAIRED}"
    else:
        real_dir, real_skipped = prepared_real_model()
        if real_dir is not None:
            real_cfg = dict(cfg, tokens=args.real_tokens)
            real = decode_model(REAL_MODEL, real_dir, real_cfg, real_methods, args, device)
            rows += real["rows"]
            pair_ratios[REAL_MODEL] = real["vs_hf_generate"]
    if real_skipped:
        logger.info("real model rows skipped: %s", real_skipped)

    by = {r["method"]: r for r in main_model["rows"]}
    both = {"ours_cached", "espnet_beam"} <= by.keys()
    speedup = by["espnet_beam"]["ours_cached_speedup"] if both else None
    speedup_cpu = by["espnet_beam"]["ours_cached_speedup_cpu"] if both else None
    measured = {k: v for k, v in pair_ratios.items() if v is not None}
    hf_met = all(v["wall"] <= TARGET_VS_HF_GENERATE for v in measured.values()) if measured else None

    payload: Dict[str, Any] = {
        "benchmark": NAME,
        "config": {
            **cfg,
            "preset": "quick" if args.quick else args.preset,
            "seed": args.seed,
            "params": main_model["params"],
            "vocab": main_model["vocab"],
            "hidden": main_model["hidden"],
            "frame_ms": args.frame_ms,
            "audio_seconds_per_utt": audio_s,
            "prompt": PROMPT,
            "suffix": SUFFIX,
            "threads": args.threads or None,
            "attn_implementation": main_model["attn_implementation"],
        },
        "machine": common.machine_info(device),
        "speedup_ours_cached_vs_espnet_beam": speedup,
        "speedup_ours_cached_vs_espnet_beam_cpu_time": speedup_cpu,
        "target_speedup": TARGET_SPEEDUP,
        "target_met": None if speedup is None else speedup >= TARGET_SPEEDUP,
        "ours_cached_over_hf_generate": pair_ratios,
        "target_vs_hf_generate": TARGET_VS_HF_GENERATE,
        "target_vs_hf_generate_met": hf_met,
        "real_model": None
        if real is None
        else {
            "name": REAL_MODEL,
            "params": real["params"],
            "vocab": real["vocab"],
            "hidden": real["hidden"],
            "tokens": args.real_tokens,
            "attn_implementation": real["attn_implementation"],
        },
        "real_model_skipped": real_skipped,
        "best_hyp_equal_cached_vs_uncached": (
            outputs["ours_cached"] == outputs["ours_uncached"]
            if {"ours_cached", "ours_uncached"} <= outputs.keys()
            else None
        ),
    }
    if main_model["espnet_batch_score"] is not None:
        payload["espnet_batch_score"] = main_model["espnet_batch_score"]
    notes = [
        f"{main_model['name']} LLM {main_model['params'] / 1e6:.1f}M params ({cfg['dtype']}), beam "
        f"{cfg['beam']}, {cfg['tokens']} output tokens (eos masked), {cfg['frames']} speech frames "
        f"(= {audio_s:.1f} s at {args.frame_ms:g} ms/frame for the RTF), {cfg['utts']} utterance(s), "
        f"device {device}, torch threads {payload['machine'].get('torch_threads')}",
        "ours_cached: LlmDecoder in ESPnet BatchBeamSearch (KV cache); ours_uncached: same, "
        "_score_uncached every step; espnet_beam: ESPnet hugging_face_transformers decoder "
        "(causal_lm) in BatchBeamSearch via its forward (no cache); espnet_generate: ESPnet "
        "asr_inference's HF generate path (beam x beam rows); hf_generate: LlmDecoder.generate",
        f"{' and '.join(PAIRED)} timed {cfg['repeats']}x per utterance, interleaved; the other methods once",
    ]
    if real is not None:
        notes.append(
            f"{REAL_MODEL}: {real['params'] / 1e6:.1f}M params, {args.real_tokens} output "
            f"tokens, same beam, frames and utterances"
        )
    else:
        notes.append(f"{REAL_MODEL} rows skipped: {real_skipped}")
    for model, ratio in pair_ratios.items():
        if ratio is not None:
            notes.append(
                f"{model}: ours_cached / hf_generate = {ratio['wall']:.2f}x wall, {ratio['cpu']:.2f}x "
                f"CPU time (median of {ratio['pairs']} pairs; target <= {TARGET_VS_HF_GENERATE:g}x "
                f"wall: {'met' if ratio['wall'] <= TARGET_VS_HF_GENERATE else 'NOT met'})"
            )
    if speedup is not None:
        notes.append(
            f"ours_cached vs espnet_beam: {speedup:.1f}x wall, {speedup_cpu:.1f}x CPU time "
            f"(target >= {TARGET_SPEEDUP:g}x: {'met' if speedup >= TARGET_SPEEDUP else 'NOT met'})"
        )
    if "espnet_batch_score" in payload:
        notes.append(f"ESPnet's own batch_score for causal_lm: {payload['espnet_batch_score']}")
    columns = [
        "model",
        "method",
        "sec_per_utt",
        "tokens_per_s",
        "rtf",
        "ours_cached_speedup",
        "cpu_s_per_utt",
        "ours_cached_speedup_cpu",
        "min_s",
        "max_s",
        "timings",
    ]
    md = common.write_results(
        NAME, payload, rows, columns, args.out_dir, title="LLM-ASR decoding speed (beam search)", notes=notes
    )
    print(md)
    payload["rows"] = rows
    return payload


def decode_model(
    name: str, llm_dir: Path, cfg: Dict[str, Any], methods: Sequence[str], args: argparse.Namespace, device: Any
) -> Dict[str, Any]:
    """Time ``methods`` decoding with the LLM at ``llm_dir``; rows carry ``model: name``.

    Returns ``rows``, the first utterance's ``outputs`` per method, ``vs_hf_generate`` (the
    paired ratio, or None), the model's size and ``espnet_batch_score`` (or None).
    """
    import torch
    from espnet2.asr.decoder.hugging_face_transformers_decoder import HuggingFaceTransformersDecoder
    from transformers import AutoConfig, AutoTokenizer

    from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
    from espnet_llm_plugin.lm.causal_lm_pretraining import num_parameters

    torch_dtype = getattr(torch, cfg["dtype"])
    tokenizer = AutoTokenizer.from_pretrained(str(llm_dir), local_files_only=True)
    V = len(tokenizer)
    hidden = AutoConfig.from_pretrained(str(llm_dir), local_files_only=True).hidden_size
    ours = (
        LlmDecoder(
            V, hidden, llm_path=str(llm_dir), prompt=PROMPT, prompt_suffix=SUFFIX, finetune="frozen", dtype=cfg["dtype"]
        )
        .to(device)
        .eval()
    )
    D, eos = ours.hidden_size, ours.end_id  # the text ends with end_id (ESPnet's sos/eos)
    n_params = num_parameters(ours._causal_lm())
    attn = ours._causal_lm().config._attn_implementation
    logger.info("%s LLM: %.1fM parameters, vocab %d, hidden %d, attention %s", name, n_params / 1e6, V, D, attn)

    gen = torch.Generator().manual_seed(args.seed)
    xs = [torch.randn(cfg["frames"], D, generator=gen).to(device=device, dtype=torch_dtype) for _ in range(cfg["utts"])]

    espnet_dec = None
    if any(m.startswith("espnet") for m in methods):
        espnet_dec = (
            HuggingFaceTransformersDecoder(V, D, str(llm_dir), causal_lm=True, prefix=PROMPT, postfix=SUFFIX)
            .to(device=device, dtype=torch_dtype)
            .eval()
        )
        # prefix/postfix embeddings are plain float32 tensors (not buffers): .to() skips them and
        # torch.cat would promote a bf16 input back to float32
        espnet_dec.prefix = espnet_dec.prefix.to(device=device, dtype=torch_dtype)
        espnet_dec.postfix = espnet_dec.postfix.to(device=device, dtype=torch_dtype)

    decoders: Dict[str, Any] = {}
    for m in methods:
        if m == "ours_cached":
            search = make_beam_search(ours, V, eos, cfg["beam"], device)
            decoders[m] = lambda x, n, s=search: run_beam(s, x, n)
        elif m == "ours_uncached":
            search = make_beam_search(scorer_classes()["uncached"](ours), V, eos, cfg["beam"], device)
            decoders[m] = lambda x, n, s=search: run_beam(s, x, n)
        elif m == "espnet_beam":
            search = make_beam_search(scorer_classes()["espnet_forward"](espnet_dec), V, eos, cfg["beam"], device)
            decoders[m] = lambda x, n, s=search: run_beam(s, x, n)
        elif m == "espnet_generate":
            decoders[m] = EspnetGenerate(espnet_dec, llm_dir, torch_dtype, device, cfg["beam"], eos)
        elif m == "hf_generate":
            # min_new_tokens in the model's generation config masks eos as the others do
            ours._causal_lm().generation_config.min_new_tokens = None
            decoders[m] = lambda x, n: _hf_generate(ours, x, n, cfg["beam"])

    timings, outputs = time_decoders(decoders, xs, cfg["tokens"], cfg["repeats"])
    audio_s = cfg["frames"] * args.frame_ms / 1000.0
    rows: List[Dict[str, Any]] = []
    for m, (times, cpu_times) in timings.items():
        s = common.summarize(times)
        rows.append(
            {
                "model": name,
                "method": m,
                "sec_per_utt": s["median"],
                "tokens_per_s": cfg["tokens"] / s["median"],
                "cpu_s_per_utt": common.summarize(cpu_times)["median"],
                "rtf": s["median"] / audio_s,
                "min_s": s["min"],
                "max_s": s["max"],
                "timings": s["repeats"],
            }
        )
        logger.info("%s %s: %.3f s/utt (%.1f tokens/s)", name, m, s["median"], cfg["tokens"] / s["median"])
    by = {r["method"]: r for r in rows}
    if "ours_cached" in by:
        for r in rows:
            r["ours_cached_speedup"] = r["sec_per_utt"] / by["ours_cached"]["sec_per_utt"]
            r["ours_cached_speedup_cpu"] = r["cpu_s_per_utt"] / by["ours_cached"]["cpu_s_per_utt"]
    return {
        "name": name,
        "rows": rows,
        "outputs": outputs,
        "params": n_params,
        "vocab": V,
        "hidden": D,
        "attn_implementation": attn,
        "vs_hf_generate": paired_ratio(timings),
        "espnet_batch_score": None if espnet_dec is None else probe_espnet_batch_score(espnet_dec, xs[0], eos),
    }


def time_decoders(
    decoders: Dict[str, Any], xs: Sequence[Any], tokens: int, repeats: int
) -> Tuple[Dict[str, Tuple[List[float], List[float]]], Dict[str, List[int]]]:
    """``({method: (wall seconds, CPU seconds)}, {method: first utterance's tokens})``.

    Every method decodes every utterance once; the :data:`PAIRED` methods ``repeats`` times,
    alternating their order per round (A B, B A, ...) so drifting machine load hits both alike.
    Entry ``k`` of the paired methods' lists is the same (utterance, round).
    """
    for decode in decoders.values():
        decode(xs[0], min(3, tokens))  # warm-up (allocator, kernels, lazy imports)
    timings: Dict[str, Tuple[List[float], List[float]]] = {m: ([], []) for m in decoders}
    outputs: Dict[str, List[int]] = {}
    paired = [m for m in decoders if m in PAIRED]
    for i, x in enumerate(xs):
        for r in range(repeats):
            order = [m for m in decoders if r == 0 or m in paired]
            if r % 2:
                order.reverse()
            for m in order:
                with common.timer(x.device) as t:
                    out = decoders[m](x, tokens)
                timings[m][0].append(t["seconds"])
                timings[m][1].append(t["cpu_seconds"])
                if i == 0 and r == 0:
                    outputs[m] = out
                if len(out) != tokens:
                    raise RuntimeError(f"{m}: produced {len(out)} tokens, expected {tokens}")
    return timings, outputs


def paired_ratio(timings: Dict[str, Tuple[List[float], List[float]]]) -> Optional[Dict[str, Any]]:
    """Median over pairs of ``ours_cached`` / ``hf_generate`` wall and CPU time (None: not both)."""
    if not set(PAIRED) <= timings.keys():
        return None
    (a_wall, a_cpu), (b_wall, b_cpu) = timings[PAIRED[0]], timings[PAIRED[1]]
    wall = [a / b for a, b in zip(a_wall, b_wall)]
    cpu = [a / b for a, b in zip(a_cpu, b_cpu)]
    return {
        "wall": common.summarize(wall)["median"],
        "cpu": common.summarize(cpu)["median"],
        "pairs": len(wall),
        "wall_min": min(wall),
        "wall_max": max(wall),
    }


def _hf_generate(decoder: Any, x: Any, tokens: int, beam: int) -> List[int]:
    decoder._causal_lm().generation_config.min_new_tokens = tokens
    return decoder.generate(x, max_new_tokens=tokens, num_beams=beam)


if __name__ == "__main__":
    main()
