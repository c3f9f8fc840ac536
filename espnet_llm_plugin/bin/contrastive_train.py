"""Contrastive speech<->text training of a unit-extended LM (recipe stage 7, arXiv 2404.01616).

LLM_DIR is a unit-extended HF LM (``extend_vocab`` or ``mmlm_train`` output). Each utterance of
UNITS + TEXT (ids must match) is a positive pair: its speech (``<speech>units</speech>``) and
its transcript, embedded by the same LM (``--layer`` hidden states, ``--pooling`` mean|last).
Loss: symmetric InfoNCE with in-batch negatives, fixed or learnt (clamped) temperature;
``--translation_pairs`` (``text_a<TAB>text_b`` lines) adds text-text positives.
OUT_DIR: a plain HF directory (LoRA merged) + ``unit_vocab.json`` + ``contrastive.json``
(layer, pooling, temperature: what ``retrieval_eval`` embeds with) + ``train_log.json``.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_parser, str2bool
from espnet_llm_plugin.fileio.checksum import sha256_file
from espnet_llm_plugin.mmlm.cli_common import add_device_args, add_finetune_args, jsonable_args, run_cli

PROG = "python -m espnet_llm_plugin.bin.contrastive_train"
logger = logging.getLogger("contrastive_train")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("contrastive_train", __doc__)
    g = p.add_argument_group("data")
    g.add_argument("--llm_dir", type=Path, required=True, help="unit-extended HF LM")
    g.add_argument("--units", type=Path, required=True, help="training units file")
    g.add_argument("--text", type=Path, required=True, help="Kaldi text of the same utterances")
    g.add_argument(
        "--translation_pairs", type=Path, default=None, help="optional TSV of translation pairs (text_a<TAB>text_b)"
    )
    g.add_argument("--out_dir", type=Path, required=True, help="output HF model directory")

    g = p.add_argument_group("embedding")
    g.add_argument("--layer", type=int, default=-1, help="hidden-state index to pool (0: embeddings, -1: last layer)")
    g.add_argument("--pooling", choices=["mean", "last"], default="mean")

    add_finetune_args(p)
    g = p.add_argument_group("training")
    g.add_argument("--max_steps", type=int, default=300)
    g.add_argument("--batch_size", type=int, default=32, help="pairs per step (in-batch negatives)")
    g.add_argument("--lr", type=float, default=1e-3)
    g.add_argument("--warmup_steps", type=int, default=20)
    g.add_argument("--weight_decay", type=float, default=0.0)
    g.add_argument("--grad_clip", type=float, default=1.0)
    g.add_argument("--temperature", type=float, default=0.07, help="(initial) temperature")
    g.add_argument("--learn_temperature", type=str2bool, default=True)
    g.add_argument("--min_temperature", type=float, default=0.01)
    g.add_argument("--max_temperature", type=float, default=1.0)
    g.add_argument("--translation_weight", type=float, default=1.0)
    g.add_argument("--log_every", type=int, default=10)
    g.add_argument("--seed", type=int, default=0)
    add_device_args(p)
    add_debug_arg(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    run_cli("contrastive_train", lambda: train(args), (ValueError, OSError, FloatingPointError), debug=args.debug)


def train(args: argparse.Namespace) -> None:
    import torch

    from espnet_llm_plugin.core.device import setup_torch
    from espnet_llm_plugin.core.finetune import LoraOptions
    from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
    from espnet_llm_plugin.mmlm.contrastive import (
        CONTRASTIVE_FILE,
        ContrastiveConfig,
        PoolingConfig,
        contrastive_settings,
        read_translation_pairs,
        train_contrastive,
    )
    from espnet_llm_plugin.mmlm.mixed_lm_training import finish_model, prepare_model
    from espnet_llm_plugin.mmlm.mixed_sequences import load_pairs
    from espnet_llm_plugin.mmlm.unit_vocab import check_unit_tokens, read_unit_vocab, save_model_dir

    cfg = ContrastiveConfig(
        max_steps=args.max_steps,
        batch_size=args.batch_size,
        lr=args.lr,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        temperature=args.temperature,
        learn_temperature=args.learn_temperature,
        min_temperature=args.min_temperature,
        max_temperature=args.max_temperature,
        translation_weight=args.translation_weight,
        log_every=args.log_every,
        seed=args.seed,
    )
    cfg.validate()
    pooling = PoolingConfig(args.layer, args.pooling)
    pooling.validate()
    info = read_unit_vocab(args.llm_dir)
    pairs = load_pairs(args.units, args.text, info.num_units)
    translations = None
    if args.translation_pairs is not None:
        translations = read_translation_pairs(args.translation_pairs)
    device = setup_torch(args.device, args.num_threads)
    model, tokenizer = load_causal_lm(args.llm_dir, device="cpu")
    check_unit_tokens(tokenizer, info, str(args.llm_dir))
    pooling.validate(model.config.get_text_config(decoder=True).num_hidden_layers + 1)
    model, handles, saved = prepare_model(
        model,
        args.finetune,
        info,
        LoraOptions(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout),
        args.train_unit_embeddings,
    )
    t0 = time.time()
    torch.manual_seed(args.seed)  # LoRA dropout
    temperature, log = train_contrastive(
        model,
        tokenizer,
        info,
        [(p.units, p.text) for p in pairs],
        pooling,
        cfg,
        translations,
        device,
    )
    model = finish_model(model, handles, saved).to("cpu")
    log.update(
        elapsed_s=round(time.time() - t0, 1),
        args=jsonable_args(args),
        sha256={str(p): sha256_file(p) for p in (args.units, args.text)},
    )
    settings = contrastive_settings(info, pooling, float(temperature().detach()), cfg)
    save_model_dir(args.out_dir, model, tokenizer, info, {CONTRASTIVE_FILE: settings, "train_log.json": log})
    logger.info(
        "wrote %s (loss %s -> %s, tau %.4f) in %.1f s",
        args.out_dir,
        log["train"][0]["loss"],
        log["train"][-1]["loss"],
        settings["temperature"],
        time.time() - t0,
    )


if __name__ == "__main__":
    main()
