"""Pre-train a small Llama-style causal LM (and its byte-level BPE tokenizer) on text.

Recipe stage 5, for recipes given no pretrained LLM. Text files are plain sentences, one a
line, or Kaldi ``text`` files (utterance id first) with ``--has_ids true``; empty lines and
empty transcripts are skipped. OUT_DIR is a Hugging Face model directory (``config.json``,
``model.safetensors``, ``tokenizer.json``, ...) that loads with
``AutoModelForCausalLM.from_pretrained(OUT_DIR)`` and ``AutoTokenizer.from_pretrained(OUT_DIR)``,
plus ``train_log.json`` (losses, dev perplexity) and ``train_args.json`` (the settings and the
inputs' checksums: a re-run with the same ones is skipped). It is written atomically; a
resumable checkpoint (safetensors + JSON, no pickle) is kept in CKPT_DIR meanwhile.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging, str2bool
from espnet_llm_plugin.fileio.checksum import sha256_file
from espnet_llm_plugin.fileio.text_corpus import read_text_lines

PROG = "python -m espnet_llm_plugin.bin.train_text_lm"
ARGS_FILE = "train_args.json"
# files that make OUT_DIR complete (it is written atomically; this guards against hand edits)
REQUIRED_FILES = (
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "train_log.json",
    ARGS_FILE,
)
# options that do not change the trained model: a re-run differing only in them is skipped
OPERATIONAL = (
    "out_dir",
    "ckpt_dir",
    "keep_checkpoint",
    "log_every",
    "save_every",
    "eval_batch_size",
    "device",
    "num_threads",
)

logger = logging.getLogger("train_text_lm")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("train_text_lm", __doc__)
    g = p.add_argument_group("data")
    g.add_argument(
        "--train_text", type=Path, action="append", required=True, help="training text; repeat for several files"
    )
    g.add_argument("--dev_text", type=Path, required=True, help="held-out text for perplexity")
    g.add_argument(
        "--has_ids", type=str2bool, default=False, help="training lines start with an utterance id (Kaldi text)"
    )
    g.add_argument(
        "--dev_has_ids", type=str2bool, default=None, help="dev lines start with an utterance id (default: --has_ids)"
    )
    g.add_argument("--out_dir", type=Path, required=True, help="Hugging Face model directory")
    g.add_argument(
        "--ckpt_dir", type=Path, default=None, help="resumable checkpoint (default: OUT_DIR.ckpt, removed when done)"
    )
    g.add_argument("--keep_checkpoint", type=str2bool, default=False)

    g = p.add_argument_group("tokenizer (byte-level BPE)")
    g.add_argument("--vocab_size", type=int, default=1000, help="incl. 256 bytes + 4 specials")
    g.add_argument("--min_frequency", type=int, default=2, help="min count of a merged pair")
    g.add_argument("--lowercase", type=str2bool, default=False, help="lower-case all input")

    g = p.add_argument_group("model (Llama)")
    g.add_argument("--hidden_size", type=int, default=128)
    g.add_argument("--num_layers", type=int, default=2)
    g.add_argument("--num_heads", type=int, default=4)
    g.add_argument("--num_kv_heads", type=int, default=None, help="default: --num_heads")
    g.add_argument("--intermediate_size", type=int, default=None, help="default: 4 x hidden")
    g.add_argument("--max_position_embeddings", type=int, default=2048)
    g.add_argument("--rope_theta", type=float, default=10000.0)

    g = p.add_argument_group("training")
    g.add_argument("--max_steps", type=int, default=500)
    g.add_argument("--batch_size", type=int, default=32, help="rows per step")
    g.add_argument("--seq_len", type=int, default=64, help="tokens per row")
    g.add_argument(
        "--packing",
        type=str2bool,
        default=True,
        help="concatenate lines into full rows (false: one padded line per row)",
    )
    g.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    g.add_argument("--min_lr_ratio", type=float, default=0.1, help="final lr / peak lr")
    g.add_argument("--warmup_steps", type=int, default=50)
    g.add_argument("--weight_decay", type=float, default=0.1)
    g.add_argument("--grad_clip", type=float, default=1.0)
    g.add_argument("--eval_every", type=int, default=100, help="dev perplexity period (steps)")
    g.add_argument("--eval_batch_size", type=int, default=64)
    g.add_argument("--save_every", type=int, default=100, help="checkpoint period (steps)")
    g.add_argument("--log_every", type=int, default=10)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument(
        "--keep_best",
        type=str2bool,
        default=True,
        help="end with the weights of the best dev perplexity, not the last step's",
    )
    g.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when available")
    g.add_argument(
        "--num_threads",
        type=int,
        default=0,
        help="CPU threads for torch (0: torch's default, one per core); on a "
        "machine busy with other jobs, 1 is often much faster",
    )
    add_debug_arg(p)
    return p


def run_record(args: argparse.Namespace) -> Dict[str, Any]:
    """What the output depends on: the settings and the inputs' contents (JSON-able)."""
    settings = {}
    for key, value in sorted(vars(args).items()):
        if key in OPERATIONAL:
            continue
        if isinstance(value, Path):
            value = str(value.resolve())
        elif isinstance(value, list):
            value = [str(v.resolve()) if isinstance(v, Path) else v for v in value]
        settings[key] = value
    return {
        "args": settings,
        "train_text_sha256": [sha256_file(p) for p in args.train_text],
        "dev_text_sha256": sha256_file(args.dev_text),
    }


def is_complete(out_dir: Path, record: Dict[str, Any]) -> bool:
    if not all((out_dir / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        return json.loads((out_dir / ARGS_FILE).read_text()) == record
    except (OSError, ValueError):
        return False


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.debug)
    if args.dev_has_ids is None:
        args.dev_has_ids = args.has_ids
    with cli_errors("train_text_lm", args.debug, (ValueError, OSError, FloatingPointError)):
        train(args)


def train(args: argparse.Namespace) -> None:
    # heavy imports here, so that --help stays fast
    import torch
    import transformers

    from espnet_llm_plugin.lm.causal_lm_pretraining import (
        LmConfig,
        TrainConfig,
        build_llama,
        remove_checkpoint,
        save_pretrained_dir,
        train_causal_lm,
    )
    from espnet_llm_plugin.lm.tokenizer_training import MIN_VOCAB_SIZE, train_tokenizer

    lm_cfg = LmConfig(
        hidden_size=args.hidden_size,
        num_layers=args.num_layers,
        num_heads=args.num_heads,
        num_kv_heads=args.num_kv_heads,
        intermediate_size=args.intermediate_size,
        max_position_embeddings=args.max_position_embeddings,
        rope_theta=args.rope_theta,
    )
    train_cfg = TrainConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        seq_len=args.seq_len,
        packing=args.packing,
        lr=args.lr,
        min_lr_ratio=args.min_lr_ratio,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        eval_every=args.eval_every,
        eval_batch_size=args.eval_batch_size,
        save_every=args.save_every,
        log_every=args.log_every,
        seed=args.seed,
        keep_best=args.keep_best,
    )
    lm_cfg.validate()  # fail on bad options before reading data or training
    train_cfg.validate()
    if args.vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"--vocab_size {args.vocab_size} is too small: a byte-level BPE "
            f"needs at least {MIN_VOCAB_SIZE} (256 bytes + 4 special tokens)"
        )
    if args.seq_len > args.max_position_embeddings:
        raise ValueError(f"--seq_len {args.seq_len} exceeds --max_position_embeddings {args.max_position_embeddings}")

    train_texts = [t for p in args.train_text for t in read_text_lines(p, args.has_ids)]
    dev_texts = read_text_lines(args.dev_text, args.dev_has_ids, "--dev_text")
    record = run_record(args)
    if is_complete(args.out_dir, record):
        logger.info(
            "%s is complete and was trained with the same settings and data; skipping (delete it to retrain)",
            args.out_dir,
        )
        return

    if args.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    device = torch.device(
        "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
    )
    if args.num_threads > 0:
        torch.set_num_threads(args.num_threads)
    ckpt_dir = args.ckpt_dir or args.out_dir.with_name(args.out_dir.name + ".ckpt")
    t0 = time.time()

    tokenizer = train_tokenizer(
        train_texts, args.vocab_size, args.min_frequency, args.lowercase, model_max_length=args.max_position_embeddings
    )
    model = build_llama(tokenizer, lm_cfg, seed=args.seed)
    logger.info(
        "model: Llama, %d layers, hidden %d, %d heads, vocabulary %d: %.2fM parameters on %s",
        args.num_layers,
        args.hidden_size,
        args.num_heads,
        len(tokenizer),
        sum(p.numel() for p in model.parameters()) / 1e6,
        device,
    )
    log = train_causal_lm(
        model, tokenizer, train_texts, dev_texts, train_cfg, ckpt_dir=ckpt_dir, fingerprint=record, device=device
    )
    log.update(
        elapsed_s=round(time.time() - t0, 1),  # this run only, when resumed
        versions={"torch": torch.__version__, "transformers": transformers.__version__},
    )
    save_pretrained_dir(args.out_dir, model, tokenizer, {"train_log.json": log, ARGS_FILE: record})
    if not args.keep_checkpoint:
        remove_checkpoint(ckpt_dir)
    logger.info(
        "wrote %s (dev perplexity %s -> %s) in %.1f s",
        args.out_dir,
        log.get("initial_dev_ppl"),
        log.get("final_dev_ppl"),
        time.time() - t0,
    )


if __name__ == "__main__":
    main()
