"""Perplexity of text sets under an LM alone and under the kNN-LM (Khandelwal et al. 2020).

The memory is a datastore from ``build_datastore`` (``--datastore``) or built here from a
memory corpus (``--memory_text`` lines / passages ``.jsonl``, or ``--memory_text_file`` Kaldi
text) with ``--window``/``--stride``. Each ``--eval_text NAME=PATH`` (lines or ``.jsonl``) or
``--eval_text_file NAME=PATH`` (Kaldi text) set is scored with the LM alone and with the
kNN-LM for every ``k`` x ``lambda`` x ``temperature`` of the grid, the way decoding scores
hypotheses: texts framed and cased as the key encoder reads memory (its ``llm_usage.json``,
or the datastore's build info), queries over each text from its start, and the
interpolation of :class:`~espnet_llm_plugin.retrieval.knnlm_scorer.KnnLmScorer`
(``espnet_llm_plugin.retrieval.knnlm_perplexity``). Perplexity per LLM token and per
recipe-form word (the end of each text counts as one of each). Temperatures are in units of
the datastore's distance scale unless ``--temperature_unit absolute``.

Prints a table per set and ``k`` and the best grid point, and writes everything to ``--out``
(JSON, atomically). Deterministic (exact ``Flat`` search by default, seeded).

Example (in-memory and held-out sentences of the memory's domain, and another domain)::

    python -m espnet_llm_plugin.bin.knnlm_perplexity --lm_path exp/llm \\
        --memory_text data/local/target_text.txt \\
        --eval_text in_memory=data/local/target_text.txt \\
        --eval_text_file test_target=dump/raw/test_target/text \\
        --eval_text_file test_general=dump/raw/test_general/text \\
        --lambdas 0,0.25,0.5,0.75 --temperatures 0.01,0.03,0.1,0.3 --k 16 \\
        --out exp/knnlm_perplexity/target_text.json
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from espnet_llm_plugin.cli_args import add_debug_arg, add_text_form_args, cli_parser, float_list, int_list, run_cli

log = logging.getLogger("knnlm_perplexity")


def _named_path(value: str) -> Tuple[str, str]:
    name, sep, path = value.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {value!r}")
    return name, path


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("knnlm_perplexity", __doc__)
    p.add_argument("--lm_path", required=True, help="local Hugging Face causal LM dir (with tokenizer)")
    p.add_argument(
        "--key_encoder",
        default=None,
        help="HF LM dir computing queries/keys (default: the datastore's key encoder, else --lm_path)",
    )
    p.add_argument(
        "--layer", type=int, default=None, help="hidden-state index of keys/queries (default: the datastore's, else -1)"
    )
    mem = p.add_argument_group("memory (one of)")
    mem.add_argument("--datastore", default=None, help="datastore dir from build_datastore")
    mem.add_argument("--memory_text", default=None, help="memory: text file (one text per line) or passages .jsonl")
    mem.add_argument("--memory_text_file", default=None, help="memory: Kaldi text (its transcripts)")
    p.add_argument(
        "--window",
        type=int_list,
        default=None,
        help="memory window(s), e.g. 8,64 (default: llm_usage.json 'knnlm', else the library's)",
    )
    p.add_argument("--stride", type=int_list, default=None, help="one per --window (default: half of each)")
    p.add_argument("--index", default="Flat", help="faiss index of a memory built here")
    p.add_argument("--metric", choices=["l2", "ip"], default="l2", help="metric of a memory built here")
    ev = p.add_argument_group("eval sets (one or more)")
    ev.add_argument(
        "--eval_text",
        type=_named_path,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="text file (one text per line) or .jsonl passages",
    )
    ev.add_argument(
        "--eval_text_file",
        type=_named_path,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="Kaldi text (utterance ids dropped)",
    )
    p.add_argument(
        "--eval_window",
        type=int,
        default=1024,
        help="context window over eval texts (texts up to this many tokens are seen whole)",
    )
    grid = p.add_argument_group("grid")
    grid.add_argument("--lambdas", type=float_list, default=float_list("0,0.1,0.25,0.4,0.55,0.7"))
    grid.add_argument(
        "--temperatures",
        type=float_list,
        default=None,
        help="comma-separated (default: the library/llm_usage.json temperature x 1/4,1/2,1,2,4)",
    )
    grid.add_argument(
        "--k", type=int_list, default=None, help="comma-separated neighbour counts (default: the setting's)"
    )
    grid.add_argument(
        "--temperature_unit",
        choices=["distance_scale", "absolute"],
        default=None,
        help="temperatures in units of the datastore's distance scale or raw (default: the setting's)",
    )
    add_text_form_args(p, "the text", "the datastore's build info, else the key encoder's llm_usage.json")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:N]")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--batch_size", type=int, default=16, help="windows per forward pass")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output JSON")
    add_debug_arg(p)
    return p


def _read_eval_sets(args: argparse.Namespace) -> Dict[str, List[Tuple[str, str]]]:
    from espnet_llm_plugin.retrieval.document_store import MemoryCorpusError, read_kaldi_text, read_memory_texts

    sets: Dict[str, List[Tuple[str, str]]] = {}
    named = [(n, p, False) for n, p in args.eval_text] + [(n, p, True) for n, p in args.eval_text_file]
    if not named:
        raise ValueError("give at least one --eval_text NAME=PATH or --eval_text_file NAME=PATH")
    for name, path, kaldi in named:
        if name in sets:
            raise ValueError(f"eval set name '{name}' is given twice")
        rows = read_kaldi_text(path) if kaldi else read_memory_texts(path)
        if not rows:
            raise MemoryCorpusError(f"eval set '{name}': {path} has no text")
        sets[name] = rows
    return sets


def _table(result: Dict[str, Any], k: int, key: str) -> str:
    rows = [g for g in result["grid"] if g["k"] == k]
    temps = sorted({g["temperature"] for g in rows})
    lams = sorted({g["lambda"] for g in rows})
    fmt = lambda v: "inf" if v is None else f"{v:.2f}"  # noqa: E731
    lines = ["  lambda \\ T " + " ".join(f"{t:>9g}" for t in temps)]
    for lam in lams:
        cells = {g["temperature"]: g[key] for g in rows if g["lambda"] == lam}
        lines.append(f"  {lam:>10g} " + " ".join(f"{fmt(cells[t]):>9}" for t in temps))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import numpy as np
    import torch

    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.retrieval.datastore import FaissDatastore, read_manifest
    from espnet_llm_plugin.retrieval.document_store import check_memory_args, iter_scaled_windows, memory_documents
    from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder
    from espnet_llm_plugin.retrieval.knnlm_perplexity import collect_events, evaluate_grid
    from espnet_llm_plugin.retrieval.knnlm_settings import resolve_knnlm_settings

    if bool(args.datastore) == bool(args.memory_text or args.memory_text_file):
        raise ValueError("give either --datastore or a memory corpus (--memory_text / --memory_text_file)")
    if not args.datastore:
        check_memory_args(args.memory_text, args.memory_text_file, None)
    eval_sets = _read_eval_sets(args)  # all inputs checked before the (slow) model loads
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)

    manifest: Dict[str, Any] = {}
    build: Dict[str, Any] = {}
    key_path, layer = args.key_encoder, args.layer
    if args.datastore:
        manifest = read_manifest(args.datastore)
        build = (manifest.get("info") or {}).get("build") or {}
        if build.get("memory_units"):
            raise ValueError(
                f"datastore {args.datastore} is multi-modal (speech-span keys): its queries need "
                "each text's units; this tool evaluates text-only memories"
            )
        key_path = key_path or manifest["key_encoder"].get("model_path")
        layer = int(manifest["key_encoder"].get("layer", -1)) if layer is None else layer
    key_path = key_path or args.lm_path
    layer = -1 if layer is None else layer
    settings = resolve_knnlm_settings(
        {"window": args.window, "stride": args.stride, "temperature_unit": args.temperature_unit},
        key_path,
        "knnlm_perplexity options",
    )
    # the datastore's own text form/framing, so eval texts look like its memory did
    text_form = args.text_form if args.text_form is not None else build.get("text_form")
    framing = args.framing if args.framing is not None else build.get("framing")
    common = dict(
        device=args.device, dtype=args.dtype, batch_size=args.batch_size, text_form=text_form, framing=framing
    )
    key_enc = KeyEncoder(key_path, layer=layer, **common)
    same_model = Path(key_path).resolve() == Path(args.lm_path).resolve()
    lm = key_enc if same_model else KeyEncoder(args.lm_path, layer=-1, **common)
    if lm is not key_enc and lm.identity()["tokenizer_hash"] != key_enc.identity()["tokenizer_hash"]:
        raise ValueError(f"--lm_path {args.lm_path} and the key encoder {key_path} have different tokenizers")
    log.info(
        "LM %s, key encoder %s (layer %d) on %s; text form %s, framing %s",
        args.lm_path,
        key_path,
        layer,
        key_enc.device,
        key_enc.text_form.to_dict(),
        key_enc.framing.to_dict(),
    )

    expect = {k: v for k, v in key_enc.identity().items() if k != "model_path"}
    if args.datastore:
        ds = FaissDatastore.load(args.datastore, expect=expect)
        memory = {"datastore": str(args.datastore), "window": build.get("window"), "stride": build.get("stride")}
    else:
        docs = memory_documents(
            key_enc.tokenizer, args.memory_text, args.memory_text_file, None, None, key_enc.framing, key_enc.text_form
        )
        windows = list(iter_scaled_windows(docs, settings.window, settings.stride))
        log.info(
            "memory: %d texts, %d windows of <= %s tokens every %s",
            len(docs),
            len(windows),
            list(settings.window),
            list(settings.stride),
        )
        keys, values = key_enc.encode(windows, progress=True)
        ds = FaissDatastore.build(keys, values, key_enc.identity(), index=args.index, metric=args.metric)
        memory = {
            "memory_text": args.memory_text,
            "memory_text_file": args.memory_text_file,
            "texts": len(docs),
            "window": list(settings.window),
            "stride": list(settings.stride),
        }
    scale = ds.distance_scale if settings.temperature_unit == "distance_scale" else 1.0
    ks = args.k or [settings.k]
    temps = args.temperatures or [settings.temperature * f for f in (0.25, 0.5, 1.0, 2.0, 4.0)]
    if min(ks) < 1 or min(temps) <= 0 or not all(0.0 <= lam <= 1.0 for lam in args.lambdas):
        raise ValueError("need --k >= 1, --temperatures > 0 and --lambdas in [0, 1]")
    memory.update(count=ds.count, metric=ds.metric, distance_scale=ds.distance_scale)
    log.info(
        "datastore: %d keys, distance scale %.4g; temperatures in units of %s",
        ds.count,
        ds.distance_scale,
        settings.temperature_unit,
    )

    results: Dict[str, Any] = {}
    for name, texts in eval_sets.items():
        events = collect_events(name, texts, lm, key_enc, eval_window=args.eval_window, progress=True)
        res = evaluate_grid(events, ds, ks, args.lambdas, temps, temperature_scale=scale)
        results[name] = res
        base = res["base"]
        print(
            f"\n== {name}: {res['texts']} texts, {res['tokens']} tokens, {res['words']} words; "
            f"base ppl {base['ppl_token']:.2f}/token {base['ppl_word']:.2f}/word"
        )
        for k in ks:
            print(f" kNN-LM ppl per token, k={k}:\n{_table(res, k, 'ppl_token')}")
        best = res["best"]
        if best is not None:
            print(
                f" best: k={best['k']} lambda={best['lambda']:g} T={best['temperature']:g}: "
                f"{best['ppl_token']:.2f}/token {best['ppl_word']:.2f}/word"
            )
    summary = {
        "lm_path": str(args.lm_path),
        "key_encoder": str(key_path),
        "layer": layer,
        "text_form": key_enc.text_form.to_dict(),
        "framing": key_enc.framing.to_dict(),
        "memory": memory,
        "temperature_unit": settings.temperature_unit,
        "eval_window": args.eval_window,
        "sets": results,
    }
    atomic_write_text(args.out, json.dumps(summary, indent=1) + "\n")
    log.info("wrote %s", args.out)
    return summary


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    run_cli(
        "knnlm_perplexity", lambda: run(args), errors=(ValueError,), debug=args.debug
    )  # our errors name the file/option


if __name__ == "__main__":
    main()
