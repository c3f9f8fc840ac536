"""Train a unit-extended causal LM on mixed speech-unit / text sequences (recipe stage 7).

LLM_DIR comes from ``extend_vocab`` (it has ``unit_vocab.json``). UNITS is a units file
(``utt_id u1 u2 ...``) and TEXT the Kaldi ``text`` of the same utterances (ids must match).
Each utterance gives one sequence, its kind drawn (seeded) by ``--mix``: ``text`` (transcript),
``unit_to_text`` (``<speech>units</speech> transcript``) or ``text_to_unit``; ``--extra_text``
adds plain sentences as text-only sequences, ``--extra_units`` units files without transcripts
as speech-only sequences (``<speech>units</speech>``; alone, this is speech-only adaptation of
a trained speech+text LM to a new domain). Training: LoRA (merged before saving) or full.
OUT_DIR is a plain Hugging Face directory (``from_pretrained``) + ``unit_vocab.json`` +
``train_log.json`` + ``train_args.json``; written atomically, with a resumable safetensors
checkpoint in CKPT_DIR meanwhile.

``--eval_only true``: no training; write the text perplexity of LLM_DIR (any causal LM, unit
tokens or not) on ``--eval_text`` to ``--eval_json``, e.g. to compare a text-only LM with its
unit-augmented version on held-out transcripts.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_parser, str2bool
from espnet_llm_plugin.fileio.checksum import sha256_file
from espnet_llm_plugin.mmlm.cli_common import add_device_args, add_finetune_args, jsonable_args, run_cli

PROG = "python -m espnet_llm_plugin.bin.mmlm_train"
ARGS_FILE = "train_args.json"
logger = logging.getLogger("mmlm_train")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("mmlm_train", __doc__)
    g = p.add_argument_group("data")
    g.add_argument(
        "--llm_dir",
        type=Path,
        required=True,
        help="unit-extended HF LM (extend_vocab output); any HF LM with --eval_only",
    )
    g.add_argument("--units", type=Path, help="training units file")
    g.add_argument("--text", type=Path, help="Kaldi text of the same utterances")
    g.add_argument("--dev_units", type=Path, help="dev units file (for dev perplexity)")
    g.add_argument("--dev_text", type=Path, help="dev Kaldi text")
    g.add_argument(
        "--extra_text",
        type=Path,
        action="append",
        default=[],
        help="plain sentences (one a line) added as text-only sequences; repeatable",
    )
    g.add_argument(
        "--extra_units",
        type=Path,
        action="append",
        default=[],
        help="units files without transcripts, added as speech-only sequences "
        "(speech-only adaptation; alone, without --units/--text, too); repeatable",
    )
    g.add_argument(
        "--mix", default="text=1,unit_to_text=1,text_to_unit=1", help="relative weights of the sequence kinds"
    )
    g.add_argument("--out_dir", type=Path, help="output HF model directory")
    g.add_argument(
        "--ckpt_dir", type=Path, default=None, help="resumable checkpoint (default: OUT_DIR.ckpt, removed when done)"
    )
    g.add_argument("--keep_checkpoint", type=str2bool, default=False)

    g = p.add_argument_group("text perplexity")
    g.add_argument(
        "--eval_text",
        type=Path,
        default=None,
        help="held-out sentences: perplexity of the result (or of LLM_DIR with "
        "--eval_only) is logged and written to --eval_json",
    )
    g.add_argument(
        "--eval_has_ids", type=str2bool, default=False, help="--eval_text lines start with an utterance id (Kaldi text)"
    )
    g.add_argument("--eval_only", type=str2bool, default=False, help="no training")
    g.add_argument("--eval_json", type=Path, default=None, help="where to write the perplexity")

    add_finetune_args(p)
    g = p.add_argument_group("training")
    g.add_argument("--max_steps", type=int, default=500)
    g.add_argument("--batch_size", type=int, default=16)
    g.add_argument("--seq_len", type=int, default=256, help="tokens per row")
    g.add_argument("--packing", type=str2bool, default=True)
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--min_lr_ratio", type=float, default=0.1)
    g.add_argument("--warmup_steps", type=int, default=50)
    g.add_argument("--weight_decay", type=float, default=0.0)
    g.add_argument("--grad_clip", type=float, default=1.0)
    g.add_argument("--eval_every", type=int, default=100)
    g.add_argument("--eval_batch_size", type=int, default=32)
    g.add_argument("--save_every", type=int, default=100)
    g.add_argument("--log_every", type=int, default=10)
    g.add_argument("--keep_best", type=str2bool, default=True)
    g.add_argument("--seed", type=int, default=0)
    add_device_args(p)
    add_debug_arg(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    run_cli(
        "mmlm_train",
        lambda: evaluate_only(args) if args.eval_only else train(args),
        (ValueError, OSError, FloatingPointError),
        debug=args.debug,
    )


def read_eval_text(path: Path, has_ids: bool) -> List[str]:
    from espnet_llm_plugin.fileio.text_corpus import read_text_lines

    return read_text_lines(path, has_ids, "--eval_text")


def evaluate_only(args: argparse.Namespace) -> None:
    from espnet_llm_plugin.core.device import setup_torch
    from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.mmlm.perplexity import text_perplexity

    if args.eval_text is None or args.eval_json is None:
        raise ValueError("--eval_only needs --eval_text and --eval_json")
    device = setup_torch(args.device, args.num_threads)
    texts = read_eval_text(args.eval_text, args.eval_has_ids)
    model, tokenizer = load_causal_lm(args.llm_dir, device=device)
    result = text_perplexity(model, tokenizer, texts, args.eval_batch_size, device)
    result.update(model=str(args.llm_dir), eval_text=str(args.eval_text), vocab_size=len(tokenizer))
    atomic_write_text(args.eval_json, json.dumps(result, indent=1) + "\n")
    logger.info(
        "%s on %s: perplexity %.3f per token, %.3f per word (%d sentences)",
        args.llm_dir,
        args.eval_text,
        result["ppl"],
        result["word_ppl"],
        result["sentences"],
    )


def train(args: argparse.Namespace) -> None:
    import torch

    from espnet_llm_plugin.core.device import setup_torch
    from espnet_llm_plugin.core.finetune import LoraOptions
    from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.lm.causal_lm_pretraining import TrainConfig, remove_checkpoint
    from espnet_llm_plugin.mmlm.mixed_lm_training import train_mixed_lm
    from espnet_llm_plugin.mmlm.mixed_sequences import MixRatios, build_mixed_sequences, load_pairs
    from espnet_llm_plugin.mmlm.perplexity import text_perplexity
    from espnet_llm_plugin.mmlm.unit_vocab import check_unit_tokens, read_unit_vocab, save_model_dir

    if args.out_dir is None:
        raise ValueError("--out_dir is required for training")
    if (args.units is None) != (args.text is None):
        raise ValueError("give both --units and --text, or neither (with --extra_units)")
    if args.units is None and not args.extra_units:
        raise ValueError("training needs --units and --text, or --extra_units (speech only)")
    if (args.dev_units is None) != (args.dev_text is None):
        raise ValueError("give both --dev_units and --dev_text, or neither")
    cfg = TrainConfig(
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
    cfg.validate()
    ratios = MixRatios.parse(args.mix)
    info = read_unit_vocab(args.llm_dir)
    pairs = load_pairs(args.units, args.text, info.num_units) if args.units is not None else []
    extra = []
    for path in args.extra_text:
        from espnet_llm_plugin.fileio.text_corpus import read_text_lines

        extra += read_text_lines(path, False, "--extra_text")
    extra_units = []
    for path in args.extra_units:
        from espnet_llm_plugin.fileio.unit_file import read_units

        extra_units += list(read_units(path, info.num_units).values())
    train_seqs = build_mixed_sequences(pairs, ratios, args.seed, info.num_units, extra, extra_units)
    if not train_seqs:
        raise ValueError(f"{args.units}, {args.text}: no utterance with both units and text")
    dev_seqs = None
    if args.dev_units is not None:
        dev_pairs = load_pairs(args.dev_units, args.dev_text, info.num_units)
        dev_seqs = [s for _, s in build_mixed_sequences(dev_pairs, ratios, args.seed + 1, info.num_units)]
    counts = {
        k: sum(1 for kind, _ in train_seqs if kind == k) for k in ("text", "unit_to_text", "text_to_unit", "units")
    }
    logger.info("training sequences: %s", counts)
    eval_texts = read_eval_text(args.eval_text, args.eval_has_ids) if args.eval_text else None

    device = setup_torch(args.device, args.num_threads)
    model, tokenizer = load_causal_lm(args.llm_dir, device="cpu")
    check_unit_tokens(tokenizer, info, str(args.llm_dir))
    record = {
        "args": {
            k: v
            for k, v in jsonable_args(args).items()
            if k not in ("out_dir", "ckpt_dir", "keep_checkpoint", "device", "num_threads", "log_every", "save_every")
        },
        "sha256": {
            str(p): sha256_file(p)
            for p in [args.units, args.text, *args.extra_text, *args.extra_units]
            if p is not None
        },
    }
    ckpt_dir = args.ckpt_dir or args.out_dir.with_name(args.out_dir.name + ".ckpt")
    t0 = time.time()
    model, log = train_mixed_lm(
        model,
        tokenizer,
        info,
        [s for _, s in train_seqs],
        dev_seqs,
        cfg,
        finetune=args.finetune,
        lora=LoraOptions(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout),
        train_unit_embeddings=args.train_unit_embeddings,
        ckpt_dir=ckpt_dir,
        fingerprint=record,
        device=device,
    )
    log.update(sequences=counts, elapsed_s=round(time.time() - t0, 1), torch=torch.__version__)
    if eval_texts:
        result = text_perplexity(model, tokenizer, eval_texts, args.eval_batch_size, device)
        log["eval_text"] = {"path": str(args.eval_text), **result}
        logger.info(
            "text perplexity on %s: %.3f per token, %.3f per word", args.eval_text, result["ppl"], result["word_ppl"]
        )
        if args.eval_json:
            atomic_write_text(args.eval_json, json.dumps(log["eval_text"], indent=1) + "\n")
    save_model_dir(args.out_dir, model.to("cpu"), tokenizer, info, {"train_log.json": log, ARGS_FILE: record})
    if not args.keep_checkpoint:
        remove_checkpoint(ckpt_dir)
    logger.info("wrote %s in %.1f s", args.out_dir, time.time() - t0)


if __name__ == "__main__":
    main()
