"""MWER fine-tuning of a rescoring LM on n-best lists (arXiv 2409.16654).

The LM (text-only, or speech+text with ``--units``) is trained so that the n-best posterior
``softmax(first_pass_weight * first_pass + lm_weight * lm)`` puts its mass on hypotheses with
few word errors (expected errors minus the list's mean error), plus ``--ce_weight`` times the
reference's per-token NLL. LoRA adapters are merged before saving, so ``OUT_DIR`` is a plain
Hugging Face dir (model + tokenizer) that ``rescore_nbest --lm_path`` loads. Combination
weights come from ``--weights_config`` (the YAML rescore_nbest --tune wrote) or the options.

    python -m espnet_llm_plugin.bin.train_mwer --nbest_dir exp/asr/decode/train_nbest \\
        --ref_text dump/raw/train/text --lm_path exp/text_lm --finetune lora \\
        --dev_nbest_dir exp/asr/decode/dev --dev_ref_text dump/raw/dev/text \\
        --weights_config exp/rescore/weights.yaml --out_dir exp/text_lm_mwer
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging
from espnet_llm_plugin.rescoring.cli_options import add_lm_options, add_nbest_source


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("train_mwer", __doc__)
    add_nbest_source(p, what="training n-best: ")
    p.add_argument("--ref_text", type=Path, required=True, help="references of the training lists")
    p.add_argument("--units", type=Path, default=None, help="units of the training utterances (speech+text LM)")
    add_nbest_source(p, prefix="dev_", required=False, what="dev n-best (optional): ")
    p.add_argument("--dev_ref_text", type=Path, default=None)
    p.add_argument("--dev_units", type=Path, default=None)
    add_lm_options(p, "local Hugging Face causal LM dir to start from")
    p.add_argument("--out_dir", type=Path, required=True, help="output HF dir (model + tokenizer + mwer_log.json)")
    p.add_argument("--finetune", choices=["lora", "full"], default="lora")
    p.add_argument("--lora_r", type=int, default=8)
    p.add_argument("--lora_alpha", type=int, default=16)
    p.add_argument("--lora_dropout", type=float, default=0.0)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--ce_weight", type=float, default=0.1, help="weight of the reference NLL regulariser")
    p.add_argument("--utts_per_step", type=int, default=4, help="utterances (n-best lists) per optimiser step")
    p.add_argument("--weights_config", type=Path, default=None, help="weights YAML from rescore_nbest --tune")
    p.add_argument("--first_pass_weight", type=float, default=1.0, help="used without --weights_config")
    p.add_argument("--lm_weight", type=float, default=0.5, help="used without --weights_config")
    p.add_argument("--length_bonus", type=float, default=0.0, help="used without --weights_config")
    p.add_argument("--seed", type=int, default=0)
    add_debug_arg(p)
    return p


def run(args: argparse.Namespace) -> list:
    import json

    import torch

    from espnet_llm_plugin.core.finetune import LoraOptions, apply_finetune
    from espnet_llm_plugin.core.llm_usage import USAGE_FILE, read_llm_usage
    from espnet_llm_plugin.lm.causal_lm_pretraining import save_pretrained_dir
    from espnet_llm_plugin.rescoring.mwer import MwerConfig, train_mwer
    from espnet_llm_plugin.rescoring.nbest import score_kind_of
    from espnet_llm_plugin.rescoring.run_inputs import lm_usage_of, load_lm_scorer, load_nbest_inputs
    from espnet_llm_plugin.rescoring.weight_search import CombinationWeights, lm_identity

    has_dev = args.dev_nbest_dir is not None or args.dev_nbest_jsonl is not None
    if has_dev and args.dev_ref_text is None:
        raise ValueError("--dev_nbest_dir/--dev_nbest_jsonl need --dev_ref_text")
    if (args.units is None) != (args.dev_units is None) and has_dev:
        raise ValueError("give --units and --dev_units together (speech+text LM) or neither")
    kinds = dict(first_pass_score=args.first_pass_score, length_norm=args.length_norm)
    train = load_nbest_inputs(args.nbest_dir, args.nbest_jsonl, args.ref_text, args.units, "train", **kinds)
    dev = (
        load_nbest_inputs(args.dev_nbest_dir, args.dev_nbest_jsonl, args.dev_ref_text, args.dev_units, "dev", **kinds)
        if has_dev
        else None
    )
    kind = score_kind_of(train[0], "train n-best")
    if dev is not None and score_kind_of(dev[0], "dev n-best") != kind:
        raise ValueError(f"the train lists' scores are {kind}, the dev lists' are not (--first_pass_score as_is)")
    if args.weights_config is not None:
        # the weights must have been tuned for this LM, scored the same way, on scores of this kind
        lm = lm_identity(args.lm_path, args.length_norm, args.units is not None, first_pass_kind=kind)
        weights = CombinationWeights.load(args.weights_config, lm=lm)
    else:
        weights = CombinationWeights(args.first_pass_weight, args.lm_weight, args.length_bonus)
    cfg = MwerConfig(
        epochs=args.epochs,
        lr=args.lr,
        ce_weight=args.ce_weight,
        utts_per_step=args.utts_per_step,
        seed=args.seed,
        weights=weights,
    )
    cfg.validate()

    torch.manual_seed(args.seed)
    scorer = load_lm_scorer(args)
    lora = LoraOptions(r=args.lora_r, alpha=args.lora_alpha, dropout=args.lora_dropout)
    scorer.model = apply_finetune(scorer.model, args.finetune, lora, name="rescoring LM")
    log = train_mwer(scorer, train[0], train[1], cfg, units=train[2], dev=dev)

    model = scorer.model
    if args.finetune == "lora":
        model = model.merge_and_unload()  # a plain HF model again
    # the trained LM is read as it was trained: its usage file has the text form and framing used
    usage = dict(read_llm_usage(args.lm_path), **lm_usage_of(scorer))
    save_pretrained_dir(
        args.out_dir,
        model,
        scorer.tokenizer,
        json_files={
            USAGE_FILE: usage,
            "mwer_log.json": log,
            "mwer_args.json": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        },
    )
    logging.info("MWER-trained LM written to %s", args.out_dir)
    print(json.dumps(log, indent=1))
    return log


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.debug)
    with cli_errors("train_mwer", args.debug, (ValueError,)):
        run(args)


if __name__ == "__main__":
    main()
