"""N-best rescoring throughput: hypotheses per second of LM scoring, batched vs one by one.

Scores synthetic 10-best lists (random words, 5-25 per hypothesis) with ``LmScorer`` (the
code ``rescore_nbest`` runs): ``log p(text)`` with a text-only LM and ``log p(text | units)``
with 50 speech units in front. The LM is a random Llama written with ``save_pretrained`` and
loaded with ``from_pretrained`` (or ``--lm_path``, a real local HF dir, text-only then).
Batch size 1 is the one-by-one baseline; larger batches are right-padded (length-sorted).
Runs on the CPU, and on the GPU too when one is present (``--device auto``).
Writes bench/results/rescoring_throughput.{json,md}.
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

logger = logging.getLogger("rescoring_throughput")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--lm_path", type=Path, default=None, help="a local HF LM dir instead of the random Llama")
    p.add_argument("--num_utts", type=int, default=40, help="utterances (10 hypotheses each)")
    p.add_argument("--batch_sizes", default="1,8,32", help="comma-separated; 1 = one by one")
    p.add_argument("--repeats", type=int, default=3)
    return p


def synthetic_lists(vocab: List[str], num_utts: int, seed: int) -> List[List[str]]:
    rng = random.Random(seed)
    return [
        [" ".join(rng.choice(vocab) for _ in range(rng.randint(5, 25))) for _ in range(10)] for _ in range(num_utts)
    ]


def bench_device(
    device: Any, lm_dir: Path, texts: List[str], units: List[List[int]] | None, batch_sizes: List[int], repeats: int
) -> List[Dict[str, Any]]:
    from espnet_llm_plugin.rescoring.lm_scorer import LmScorer

    scorer = LmScorer.from_pretrained(str(lm_dir), device=str(device))
    rows = []
    ref = None
    for bs in batch_sizes:
        scorer.batch_size = bs
        scorer.score(texts[: min(len(texts), 2 * bs)], None if units is None else units[: min(len(texts), 2 * bs)])
        times = []
        for _ in range(repeats):
            with common.timer(device) as t:
                scores = scorer.score(texts, units)
            times.append(t["seconds"])
        if ref is None:
            ref = scores
        max_diff = max(abs(a - b) for a, b in zip(scores, ref))
        s = common.summarize(times)
        rows.append(
            {
                "device": device.type,
                "mode": "speech+text" if units else "text",
                "batch_size": bs,
                "hyps": len(texts),
                "seconds": s["median"],
                "hyps_per_s": len(texts) / s["median"],
                "max_abs_diff_vs_bs1": max_diff,
            }
        )
        logger.info("%s", rows[-1])
    base = rows[0]["hyps_per_s"]
    for r in rows:
        r["speedup_vs_one_by_one"] = r["hyps_per_s"] / base
    return rows


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    common.setup_logging()
    import torch
    from transformers import AutoTokenizer

    from espnet_llm_plugin.core.unit_tokens import unit_token_list

    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    num_utts = 8 if args.quick else args.num_utts
    repeats = 1 if args.quick else args.repeats
    devices = [torch.device("cpu")]
    main_dev = resolve_device(args.device)
    if main_dev.type == "cuda":
        devices.append(main_dev)
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        dirs = {}
        if args.lm_path is not None:
            dirs["text"] = args.lm_path
            tok = AutoTokenizer.from_pretrained(str(args.lm_path), local_files_only=True)
            vocab = [w.lstrip("Ġ▁") for w in tok.get_vocab() if w.isascii() and w.lstrip("Ġ▁").isalpha()][:2000]
        else:
            hidden, layers = (64, 2) if args.quick else (256, 4)
            d = common.random_llama_dir(
                Path(tmp) / "lm", vocab_size=1000, hidden_size=hidden, num_layers=layers, num_heads=4, seed=args.seed
            )
            from transformers import AutoModelForCausalLM

            tok = AutoTokenizer.from_pretrained(str(d), local_files_only=True)
            vocab = [w for w in tok.get_vocab() if w.startswith("w")]
            dirs["text"] = d
            # the speech+text variant: the same LM with unit tokens added (as the vocab extension does)
            model = AutoModelForCausalLM.from_pretrained(str(d), local_files_only=True)
            tok.add_special_tokens({"additional_special_tokens": unit_token_list(100)})
            model.resize_token_embeddings(len(tok))
            st = Path(tmp) / "st_lm"
            model.save_pretrained(st)
            tok.save_pretrained(st)
            dirs["speech_text"] = st
        lists = synthetic_lists(vocab, num_utts, args.seed)
        texts = [h for hyps in lists for h in hyps]
        rng = random.Random(args.seed + 1)
        units = [[rng.randrange(100) for _ in range(50)] for _ in lists for _ in range(10)]
        for dev in devices:
            for kind, d in dirs.items():
                rows += bench_device(dev, d, texts, units if kind == "speech_text" else None, batch_sizes, repeats)
    payload = {
        "name": "rescoring_throughput",
        "quick": args.quick,
        "machine": common.machine_info(main_dev),
        "lm": str(args.lm_path) if args.lm_path else "random Llama (see README of bench)",
        "num_utts": num_utts,
        "nbest": 10,
    }
    md = common.write_results(
        "rescoring_throughput",
        payload,
        rows,
        [
            "device",
            "mode",
            "batch_size",
            "hyps",
            "seconds",
            "hyps_per_s",
            "speedup_vs_one_by_one",
            "max_abs_diff_vs_bs1",
        ],
        out_dir=args.out_dir,
        title="N-best rescoring throughput (LM scoring)",
        notes=[
            "batch_size 1 is one-by-one scoring; hyps_per_s is the median over repeats",
            "max_abs_diff_vs_bs1: largest |score difference| against one-by-one (float rounding only)",
        ],
    )
    print(md)


if __name__ == "__main__":
    main()
