"""Embedding throughput of the speech<->text retrieval model (speech side and text side).

What ``retrieval_eval`` (and a retrieval index build) spends its time on: pooled LM embeddings
of ``<s><speech> units </speech></s>`` sequences and of ``<s> text </s>`` sequences
(:func:`espnet_llm_plugin.mmlm.contrastive.embed_sequences`, batched, length-sorted, no grad;
bf16 autocast on CUDA). The LM is a random Llama written with ``save_pretrained``, extended with
unit tokens (:func:`~espnet_llm_plugin.mmlm.unit_vocab.extend_model_dir`) and loaded through
``from_pretrained``. Inputs are random: speech sequences of ``--speech_units`` units (about 3 s of
de-duplicated 50 Hz HuBERT units by default), text of ``--text_words`` words, both +-25%.

Reports sequences/s and tokens/s (real tokens, padding excluded) per side, median of
``--repeats`` timed runs after one warm-up run. Sizes: ``--quick`` tiny; default ``--preset
cpu``; ``--preset 1b`` (a ~1B Llama, CUDA only).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List

from espnet_llm_plugin.core.device import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "retrieval_embedding"
logger = logging.getLogger(NAME)

PRESETS: Dict[str, Dict[str, Any]] = {
    "quick": dict(
        vocab=300,
        hidden=64,
        layers=2,
        heads=4,
        kv_heads=None,
        num_units=100,
        sequences=64,
        batch=16,
        speech_units=60,
        text_words=10,
        repeats=2,
    ),
    "cpu": dict(
        vocab=8000,
        hidden=384,
        layers=8,
        heads=6,
        kv_heads=None,
        num_units=500,
        sequences=128,
        batch=32,
        speech_units=150,
        text_words=20,
        repeats=3,
    ),
    "1b": dict(
        vocab=32000,
        hidden=2048,
        layers=16,
        heads=32,
        kv_heads=8,
        num_units=2000,
        sequences=1024,
        batch=64,
        speech_units=150,
        text_words=20,
        repeats=3,
    ),
}


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    p.add_argument("--sequences", type=int, default=None, help="per side (default: preset)")
    p.add_argument("--batch_size", type=int, default=None, help="default: preset")
    p.add_argument("--speech_units", type=int, default=None, help="mean units per utterance")
    p.add_argument("--text_words", type=int, default=None, help="mean words per text")
    p.add_argument("--pooling", choices=["mean", "last"], default="mean")
    p.add_argument("--num_threads", type=int, default=0, help="CPU threads (0: torch default)")
    return p


def lengths(n: int, mean: int, rng: random.Random) -> List[int]:
    return [max(1, int(mean * rng.uniform(0.75, 1.25))) for _ in range(n)]


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    common.setup_logging()
    import torch

    from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
    from espnet_llm_plugin.mmlm.contrastive import (
        PoolingConfig,
        embed_sequences,
        speech_token_ids,
        text_token_ids,
    )
    from espnet_llm_plugin.mmlm.unit_vocab import extend_model_dir

    preset = dict(PRESETS["quick" if args.quick else args.preset])
    for key, opt in (
        ("sequences", args.sequences),
        ("batch", args.batch_size),
        ("speech_units", args.speech_units),
        ("text_words", args.text_words),
    ):
        if opt is not None:
            preset[key] = opt
    device = resolve_device(args.device)
    if args.preset == "1b" and not args.quick and device.type != "cuda":
        sys.exit("--preset 1b needs a CUDA device")
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    rng = random.Random(args.seed)
    pooling = PoolingConfig(layer=-1, pooling=args.pooling)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base = common.random_llama_dir(
            Path(tmp) / "base",
            preset["vocab"],
            preset["hidden"],
            preset["layers"],
            preset["heads"],
            preset["kv_heads"],
            seed=args.seed,
        )
        info = extend_model_dir(base, Path(tmp) / "ext", preset["num_units"], seed=args.seed)
        model, tok = load_causal_lm(Path(tmp) / "ext", device=device)
        n_params = sum(p.numel() for p in model.parameters())
        n = preset["sequences"]
        speech = [
            speech_token_ids(tok, info, [rng.randrange(info.num_units) for _ in range(k)])
            for k in lengths(n, preset["speech_units"], rng)
        ]
        words = len(tok) - info.num_units - 2 - 4  # w0 .. w{V-5}
        text = text_token_ids(
            tok, [" ".join(f"w{rng.randrange(words)}" for _ in range(k)) for k in lengths(n, preset["text_words"], rng)]
        )
        for side, seqs in (("speech", speech), ("text", text)):
            tokens = sum(len(s) for s in seqs)
            embed_sequences(model, tok, seqs, pooling, preset["batch"], device)  # warm-up
            times = []
            for _ in range(preset["repeats"]):
                with common.timer(device) as t:
                    emb = embed_sequences(model, tok, seqs, pooling, preset["batch"], device)
                times.append(t["seconds"])
            s = common.summarize(times)
            rows.append(
                {
                    "side": side,
                    "sequences": n,
                    "mean_tokens": round(tokens / n, 1),
                    "batch": preset["batch"],
                    "seconds": round(s["median"], 4),
                    "sequences_per_s": round(n / s["median"], 1),
                    "tokens_per_s": round(tokens / s["median"], 1),
                    "dim": int(emb.shape[1]),
                }
            )
            logger.info(
                "%s: %d sequences (%.1f tokens) in %.3f s: %.1f seq/s, %.0f tokens/s",
                side,
                n,
                tokens / n,
                s["median"],
                n / s["median"],
                tokens / s["median"],
            )
    payload = {
        "preset": "quick" if args.quick else args.preset,
        "settings": preset,
        "pooling": args.pooling,
        "parameters": n_params,
        "machine": common.machine_info(device),
    }
    md = common.write_results(
        NAME,
        payload,
        rows,
        ["side", "sequences", "mean_tokens", "batch", "seconds", "sequences_per_s", "tokens_per_s", "dim"],
        out_dir=args.out_dir,
        title=f"Retrieval embedding throughput ({payload['preset']}, {n_params / 1e6:.1f}M parameters, {device})",
        notes=[
            "median of timed runs after a warm-up; tokens exclude padding",
            "speech: <s><speech> units </speech></s>; text: <s> words </s>",
        ],
    )
    print(md)


if __name__ == "__main__":
    main()
