"""Rescore n-best lists with a text-only or speech+text causal LM (arXiv 2409.16654).

Reads an ESPnet decode dir (``{n}best_recog/{text,score}``) or an n-best JSONL, adds the LM
log-probability of every hypothesis (``log p(text)``, or ``log p(text | units)`` with
``--units``), and picks the best by

    first_pass_weight * first_pass + lm_weight * lm + length_bonus * words.

Like is combined with like: the LM's scores are total log-probabilities (per token with
``--length_norm true``), and the first-pass scores are read in the same kind
(``--first_pass_score``; a list's ``score_info.json`` says what it holds, e.g. Whisper's
per-token scores become totals, score x num_tokens).

With ``--tune true`` the weights are grid-searched on these lists against ``--ref_text``
(minimum WER) and saved to ``--weights_config``; with ``--tune false`` they are read from it.
``OUT_DIR`` is written as an ESPnet decode dir (``text``, ``{n}best_recog/{text,score,
score_first_pass,score_lm}``, ranked by the combined score) plus ``nbest.jsonl`` and, when
references are given, ``wer.json`` (first-pass, oracle and rescored WER).

With ``--knnlm_datastore`` (a text-only datastore of in-domain text, ``build_datastore``) the
LM score is the kNN-LM's: the datastore's key encoder (``--lm_path`` must be it) interpolated
with the memory's nearest neighbours token by token, as the ``knnlm`` decode scorer does in
beam search, so names a general LM has never seen can win from the memory. ``--knnlm_lambda``,
``--knnlm_k`` and ``--knnlm_temperature`` default to the key encoder's ``llm_usage.json``
(``knnlm``), else the library's.

Tune on dev, apply to test::

    python -m espnet_llm_plugin.bin.rescore_nbest --nbest_dir exp/asr/decode/dev \\
        --lm_path exp/text_lm --ref_text dump/raw/dev/text --tune true \\
        --weights_config exp/rescore/weights.yaml --out_dir exp/rescore/dev
    python -m espnet_llm_plugin.bin.rescore_nbest --nbest_dir exp/asr/decode/test \\
        --lm_path exp/text_lm --weights_config exp/rescore/weights.yaml --out_dir exp/rescore/test
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_parser, run_cli, str2bool
from espnet_llm_plugin.rescoring.cli_options import add_allow_missing, add_lm_options, add_nbest_source


def _floats(value: str) -> List[float]:
    try:
        return [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("rescore_nbest", __doc__)
    add_nbest_source(p)
    add_lm_options(p, "local Hugging Face causal LM dir")
    p.add_argument(
        "--units",
        type=Path,
        default=None,
        help="units file (utt_id u1 u2 ...): score log p(text | units) with a speech+text LM",
    )
    p.add_argument("--ref_text", type=Path, default=None, help="reference Kaldi text (for --tune and wer.json)")
    add_allow_missing(p)
    p.add_argument("--tune", type=str2bool, default=False, help="grid-search the weights on these lists")
    p.add_argument(
        "--weights_config", type=Path, default=None, help="weights YAML: written with --tune true, read otherwise"
    )
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument(
        "--lm_weights",
        type=_floats,
        default=_floats("0,0.05,0.1,0.2,0.3,0.4,0.5,0.7,1.0,1.5,2.0"),
        help="grid of LM weights for --tune (comma-separated)",
    )
    p.add_argument(
        "--length_bonuses",
        type=_floats,
        default=_floats("0,0.5,1.0,2.0"),
        help="grid of per-word length bonuses for --tune (comma-separated)",
    )
    p.add_argument("--first_pass_weight", type=float, default=1.0, help="weight of the first-pass score when tuning")
    knn = p.add_argument_group("kNN-LM (text-only memory)")
    knn.add_argument(
        "--knnlm_datastore", type=Path, default=None, help="datastore dir: score with the kNN-LM of its memory"
    )
    knn.add_argument(
        "--knnlm_lambda",
        type=float,
        default=None,
        help="weight of the kNN distribution (0..1); applying tuned weights: the lambda they were tuned with",
    )
    knn.add_argument(
        "--knnlm_lambdas",
        type=_floats,
        default=None,
        help="with --tune true: grid of lambdas tuned with the weights (comma-separated; one scoring pass)",
    )
    knn.add_argument("--knnlm_k", type=int, default=None, help="neighbours per token")
    knn.add_argument("--knnlm_temperature", type=float, default=None, help="softmax temperature over distances")
    knn.add_argument(
        "--knnlm_temperature_unit",
        choices=["distance_scale", "absolute"],
        default=None,
        help="the temperature's unit: the datastore's distance scale, or raw squared distance",
    )
    p.add_argument("--batch_size", type=int, default=16, help="hypotheses per LM forward pass")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    add_debug_arg(p)
    return p


def run(args: argparse.Namespace) -> dict:
    from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_write_text
    from espnet_llm_plugin.rescoring.knnlm_nbest import KnnLmNbestScorer, knnlm_identity, tuned_lambda
    from espnet_llm_plugin.rescoring.lm_scorer import score_nbest
    from espnet_llm_plugin.rescoring.nbest import score_kind_of, write_espnet_files, write_nbest_jsonl
    from espnet_llm_plugin.rescoring.run_inputs import lm_usage_of, load_lm_scorer, load_nbest_inputs
    from espnet_llm_plugin.rescoring.weight_search import (
        CombinationWeights,
        grid_search,
        grid_search_scorings,
        lm_identity,
        oracle_counts,
        rerank_all,
        weights_counts,
    )

    if args.tune and args.ref_text is None:
        raise ValueError("--tune true needs --ref_text")
    if args.weights_config is None:
        raise ValueError("--weights_config is needed (written with --tune true, read otherwise)")
    source = args.nbest_dir if args.nbest_dir is not None else args.nbest_jsonl
    knn_overrides = {
        "lambda": args.knnlm_lambda,
        "k": args.knnlm_k,
        "temperature": args.knnlm_temperature,
        "temperature_unit": args.knnlm_temperature_unit,
    }
    if args.knnlm_datastore is None and any(v is not None for v in knn_overrides.values()):
        raise ValueError("--knnlm_lambda/_k/_temperature/_temperature_unit need --knnlm_datastore")
    if args.knnlm_datastore is not None and (args.units is not None or args.length_norm):
        raise ValueError("--knnlm_datastore scores text only, as totals: drop --units and --length_norm")
    if args.knnlm_lambdas and (args.knnlm_datastore is None or args.knnlm_lambda is not None):
        raise ValueError("--knnlm_lambdas is a grid for --knnlm_datastore instead of one --knnlm_lambda")
    lams = args.knnlm_lambdas if args.tune and args.knnlm_lambdas else None
    if args.knnlm_datastore is not None and not args.tune and args.knnlm_lambda is None:
        knn_overrides["lambda"] = tuned_lambda(args.weights_config)  # the lambda tuned with the weights
    # all inputs are checked against each other before the (possibly slow) LM load
    nbest, refs, units = load_nbest_inputs(
        args.nbest_dir,
        args.nbest_jsonl,
        args.ref_text,
        args.units,
        "n-best",
        allow_missing=args.allow_missing_nbest,
        first_pass_score=args.first_pass_score,
        length_norm=args.length_norm,
    )
    # weights are tuned for one LM, one way of scoring and one kind of first-pass score:
    # checked before the LM load too
    kind = score_kind_of(nbest, str(source))
    lm = lm_identity(args.lm_path, args.length_norm, args.units is not None, first_pass_kind=kind)
    if args.knnlm_datastore is not None:
        lm["knnlm"] = knnlm_identity(args.knnlm_datastore, knn_overrides, lm_path=args.lm_path)
    weights = None if args.tune else CombinationWeights.load(args.weights_config, lm=lm)

    if args.knnlm_datastore is not None:
        knn = KnnLmNbestScorer.from_datastore(
            args.knnlm_datastore, knn_overrides, device=args.device, dtype=args.dtype, batch_size=args.batch_size
        )
        lams = lams or [knn.settings.lam]
        scorings = knn.score_nbest_lambdas(nbest, lams, progress=True)
        usage = lm_usage_of(knn.key_encoder)
    else:
        scorer = load_lm_scorer(args, dtype=args.dtype, batch_size=args.batch_size)
        logging.info("LM %s on %s (%s)", args.lm_path, scorer.device, "speech+text" if units else "text only")
        scorings = [score_nbest(scorer, nbest, units, progress=True, units_source=str(args.units))]
        usage = lm_usage_of(scorer)

    table, scored = None, scorings[0]
    grid = (args.lm_weights, args.length_bonuses, args.first_pass_weight)
    if args.tune and "knnlm" in lm:  # the weights and lambda together
        best, weights, table = grid_search_scorings(scorings, lams, "knnlm_lambda", refs, *grid)
        scored = scorings[best]
        lm["knnlm"]["lambda"] = float(lams[best])
    elif args.tune:
        weights, table = grid_search(scored, refs, *grid)
    reranked = rerank_all(scored, weights)
    summary = {
        "nbest": str(source),
        "lm_path": str(args.lm_path),
        "units": str(args.units) if args.units else None,
        "weights": vars(weights),
        "first_pass_kind": kind,
        "knnlm": lm.get("knnlm"),
        **usage,
    }
    if refs is not None:
        first = weights_counts(scored, refs, CombinationWeights())
        summary["first_pass"] = first.as_dict()
        summary["oracle"] = oracle_counts(scored, refs).as_dict()
        summary["rescored"] = weights_counts(scored, refs, weights).as_dict()
        logging.info(
            "WER first pass %.2f%%, oracle %.2f%%, rescored %.2f%%",
            first.error_rate,
            summary["oracle"]["error_rate"],
            summary["rescored"]["error_rate"],
        )
    if table is not None:
        summary["grid"] = table

    with atomic_dir(args.out_dir) as tmp:  # OUT_DIR is replaced only when complete
        # score = the combined score, on the scale of the first pass and LM (their kind)
        write_espnet_files(reranked, tmp, info={"rescored_with": str(args.lm_path)})
        write_nbest_jsonl(reranked, tmp / "nbest.jsonl")
        atomic_write_text(tmp / "wer.json", json.dumps(summary, indent=1) + "\n")
    if args.tune:
        weights.save(args.weights_config, extra={"tuned_on": str(source), **lm})
        logging.info("weights %s written to %s", vars(weights), args.weights_config)
    return summary


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    run_cli(
        "rescore_nbest", lambda: run(args), errors=(ValueError,), debug=args.debug
    )  # our input errors are ValueErrors


if __name__ == "__main__":
    main()
