"""Rank passages per utterance and write the ``context`` file of the cross-attention ASR model.

Domain adaptation: ``--passages`` (JSONL with ``id`` + ``text``, or a text file with one
passage per line) is one memory; each utterance gets its top ``--num_passages`` passages ranked
against its query. Dynamic context: ``--documents`` (JSONL ``{"utt_id", "documents"}``) gives
every utterance its own documents, ranked the same way.

Queries (``--queries``, Kaldi ``text``: ``utt_id words...``): first-pass hypotheses for
decoding (e.g. ``exp/asr_llm/decode_test/1best_recog/text``); for training either first-pass
hypotheses of the training set or the references. References leak: the gold passage is ranked
first far more often than at test time, so the model may learn to over-trust its context (the
paper trains with retrieved context). A warning is logged when the queries look like a data
directory's ``text``.

Outputs (each written atomically):
  OUT_DIR/context          utt_id passage ||| passage ...   (ESPnet data type ``text``)
  OUT_DIR/context_ids      utt_id LLM token ids, passages joined by eos  (``text_int``; only
                           with --llm_path; use this one at decoding time)
  OUT_DIR/passage_ids      utt_id ranked passage ids
  OUT_DIR/retrieval.json   settings and, with --gold, Recall@k

Example::

    python -m espnet_llm_plugin.bin.retrieve_passages --passages data/local/passages.jsonl \\
        --queries exp/asr_llm/decode_test/1best_recog/text --num_passages 4 \\
        --llm_path exp/text_lm --out_dir dump/context/test
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging

SCORERS = ("bm25", "tfidf", "lm_embedding")


def get_parser() -> argparse.ArgumentParser:
    parser = cli_parser("retrieve_passages", __doc__.split("\n\n")[0], epilog=__doc__)
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--passages", help="domain memory: passages JSONL (id, text) or text file")
    src.add_argument("--documents", help="dynamic context: JSONL of {utt_id, documents}")
    parser.add_argument("--queries", required=True, help="Kaldi text of queries (hypotheses or references)")
    parser.add_argument("--out_dir", required=True, help="output directory")
    parser.add_argument("--num_passages", type=int, default=4, help="top-k passages per utterance")
    parser.add_argument("--scorer", choices=SCORERS, default="bm25", help="ranking method")
    parser.add_argument("--embed_model", default=None, help="local HF LM dir for --scorer lm_embedding")
    parser.add_argument("--llm_path", default=None, help="local HF tokenizer dir: also write context_ids")
    parser.add_argument(
        "--exclude_query",
        type=lambda v: {"true": True, "false": False}[v.lower()],
        default=False,
        metavar="true|false",
        help="drop passages containing the query verbatim (training contexts from references: "
        "no gold passage, as at test time; default: false)",
    )
    parser.add_argument("--gold", default=None, help="utt_id gold_passage_id... file: report Recall@k")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="for lm_embedding")
    add_debug_arg(parser)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.debug)
    from espnet_llm_plugin.core.device import resolve_device
    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.fileio.kaldi_data import DataDirError, read_scp, write_scp
    from espnet_llm_plugin.retrieval import passage_retrieval as pr

    with cli_errors("retrieve_passages", args.debug, (pr.PassageError, DataDirError, ValueError)):
        if args.num_passages < 1:
            raise pr.PassageError(f"--num_passages must be >= 1, got {args.num_passages}")
        queries = read_scp(args.queries, allow_empty_value=True)
        if not queries:
            raise pr.PassageError(f"{args.queries}: no queries")
        if Path(args.queries).name == "text" and (Path(args.queries).parent / "wav.scp").is_file():
            logging.warning(
                "queries %s look like reference transcripts: fine for training contexts, but the "
                "gold passage is then retrieved more often than at test time (leakage)",
                args.queries,
            )
        memory = pr.read_passages(args.passages) if args.passages else pr.read_utterance_documents(args.documents)
        lm = None
        if args.scorer == "lm_embedding":
            if not args.embed_model:
                raise pr.PassageError("--scorer lm_embedding needs --embed_model")
            from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm

            lm = load_causal_lm(args.embed_model, device=resolve_device(args.device))
        tokenizer = None
        if args.llm_path:
            from transformers import AutoTokenizer

            from espnet_llm_plugin.core.hf_causal_lm import check_llm_dir

            tokenizer = AutoTokenizer.from_pretrained(str(check_llm_dir(args.llm_path)), local_files_only=True)
        gold = pr.read_gold(args.gold) if args.gold else None

        ranked = pr.rank_passages(
            queries,
            memory,
            args.num_passages,
            args.scorer,
            lm,
            progress=True,
            exclude_query=args.exclude_query,
        )
        contexts = {u: pr.join_passages([p.text for p in ps]) for u, ps in ranked.items()}
        report = {
            "mode": "domain" if args.passages else "dynamic",
            "source": args.passages or args.documents,
            "queries": args.queries,
            "scorer": args.scorer,
            "num_passages": args.num_passages,
            "exclude_query": args.exclude_query,
            "num_utterances": len(ranked),
        }
        if gold is not None:
            ks = sorted({1, args.num_passages})
            report.update(pr.recall_at_k(ranked, gold, ks))
        ids_rows = None
        if tokenizer is not None:
            ids_rows = [(u, " ".join(map(str, pr.context_token_ids(c, tokenizer)))) for u, c in contexts.items()]

    out = Path(args.out_dir)
    write_scp(out / "context", contexts.items())
    write_scp(out / "passage_ids", [(u, " ".join(p.id for p in ps)) for u, ps in ranked.items()])
    if ids_rows is not None:
        write_scp(out / "context_ids", ids_rows)
    atomic_write_text(out / "retrieval.json", json.dumps(report, indent=2) + "\n")
    logging.info("wrote %s: %s", out, json.dumps({k: v for k, v in report.items() if k.startswith("recall")}))


if __name__ == "__main__":
    main()
