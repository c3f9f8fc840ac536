"""Build a kNN-LM datastore (arXiv 2406.09618) from a memory corpus with an HF causal LM.

Memory: text-only (``--memory_text``: one sentence/passage per line, or ``passages.jsonl``;
or ``--memory_text_file`` alone: the transcripts of a Kaldi text, utterance ids dropped)
or multi-modal (``--memory_units`` units file + ``--memory_text_file`` Kaldi text: each
transcript is preceded by ``<speech><unit_..>...</speech>``; needs a speech+text LM).
The memory is cut into windows of ``--window`` tokens (every ``--stride`` tokens; defaults:
the key encoder's ``llm_usage.json`` ``knnlm`` section, else the library's, measured on
SmolLM2: see ``espnet_llm_plugin.retrieval.knnlm_settings``); the key of each position is the
key encoder's hidden state (``--layer``), its value the next token. Memory text is in the
recipe's form; it is shown to the key encoder in the model's text form and framing
(``--text_form`` / ``--framing``, default from its ``llm_usage.json``), which the manifest
records. The manifest also records the keys' distance scale (kNN-LM temperatures are in its
units).

Sharded build (e.g. one job per GPU/CPU with run.pl/slurm, ``JOB`` = 1..N)::

    build_datastore ... --nj N --shard JOB --out_dir DIR     # DIR_shards/shard.JOB (resumable)
    build_datastore ... --nj N --merge --out_dir DIR         # DIR: one index over all shards

Without ``--shard``, ``--nj N`` builds the N shards in turn and merges them. A shard already
built with the same settings is skipped (``--overwrite`` rebuilds). Shards hold ``Flat``
indexes; ``--index`` applies to the merged datastore. Outputs are written atomically.

Example::

    python -m espnet_llm_plugin.bin.build_datastore --memory_text data/local/target_text.txt \\
        --key_encoder exp/text_lm --index Flat --out_dir exp/datastore_text
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet_llm_plugin.cli_args import add_text_form_args, cli_parser, int_list


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("build_datastore", __doc__)
    mem = p.add_argument_group("memory corpus")
    mem.add_argument("--memory_text", help="text file (one sentence/passage per line) or passages .jsonl")
    mem.add_argument("--memory_units", help="units file 'utt_id u1 u2 ...' (multi-modal memory)")
    mem.add_argument(
        "--memory_text_file",
        help="Kaldi text 'utt_id transcript': with --memory_units the multi-modal memory's "
        "transcripts, alone a text-only memory of them",
    )
    mem.add_argument("--num_units", type=int, default=None, help="check unit ids are below this")
    p.add_argument("--key_encoder", required=True, help="local HF causal LM dir (with tokenizer)")
    p.add_argument("--layer", type=int, default=-1, help="hidden-state index (0: embeddings, -1: last)")
    p.add_argument(
        "--window",
        type=int_list,
        default=None,
        help="tokens per window; several (e.g. 8,64) give each event one key per window scale "
        "(default: llm_usage.json 'knnlm', else the library's)",
    )
    p.add_argument(
        "--stride",
        type=int_list,
        default=None,
        help="step between windows, one per --window (default: half of each window)",
    )
    add_text_form_args(p, "the memory text", "the key encoder's llm_usage.json, else as it is in [bos] text [eos]")
    p.add_argument("--index", default="Flat", help="faiss index_factory string: Flat, IVF1024,PQ16, HNSW32, ...")
    p.add_argument("--metric", choices=["l2", "ip"], default="l2")
    p.add_argument("--fp16", action="store_true", help="store keys as float16")
    p.add_argument("--max_train", type=int, default=200_000, help="keys sampled to train IVF/PQ indexes")
    p.add_argument("--nj", type=int, default=1, help="number of shards")
    p.add_argument("--shard", type=int, default=None, help="build only shard 1..nj")
    p.add_argument("--merge", action="store_true", help="merge OUT_DIR_shards/shard.{1..nj} into OUT_DIR")
    p.add_argument("--overwrite", action="store_true", help="rebuild shards that exist already")
    p.add_argument("--out_dir", required=True)
    p.add_argument("--device", default="auto", help="auto|cpu|cuda[:N]")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    p.add_argument("--batch_size", type=int, default=64, help="windows per forward pass")
    p.add_argument("--seed", type=int, default=0)
    return p


def shard_dir(out_dir: Path, shard: int) -> Path:
    """``OUT_DIR_shards/shard.i``: beside OUT_DIR, which the merge replaces as a whole."""
    return out_dir.parent / f"{out_dir.name}_shards" / f"shard.{shard}"


def build_info(args: argparse.Namespace, shard: Optional[int], enc: Any = None) -> Dict[str, Any]:
    """Settings a shard depends on (a rebuilt shard must match them to be reused); ``enc``
    (the key encoder) adds the text form and framing its keys were made with."""
    files = [args.memory_text, args.memory_units, args.memory_text_file]
    stats = {f: Path(f).stat().st_size for f in files if f}
    info = {
        "memory_text": args.memory_text,
        "memory_units": args.memory_units,
        "memory_text_file": args.memory_text_file,
        "memory_sizes": stats,
        "window": args.window,
        "stride": args.stride,
        "fp16": args.fp16,
        "metric": args.metric,
        "nj": args.nj,
        "shard": shard,
    }
    if enc is not None:
        info["text_form"] = enc.text_form.to_dict()
        info["framing"] = enc.framing.to_dict()
    return info


def resolve_windows(args: argparse.Namespace) -> None:
    """Fill ``args.window``/``args.stride`` from the key encoder's usage file or the defaults."""
    from espnet_llm_plugin.retrieval.knnlm_settings import resolve_knnlm_settings

    s = resolve_knnlm_settings(
        {"window": args.window, "stride": args.stride}, args.key_encoder, "build_datastore --window/--stride"
    )
    args.window, args.stride = list(s.window), list(s.stride)


def is_done(path: Path, info: Dict[str, Any], identity: Dict[str, Any]) -> bool:
    from espnet_llm_plugin.retrieval.datastore import DatastoreError, read_manifest

    try:
        m = read_manifest(path)
    except DatastoreError:
        return False
    return m.get("info", {}).get("build") == info and m["key_encoder"] == identity


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        run(args)
    except ValueError as e:  # our errors name the file/option
        sys.exit(f"build_datastore: error: {e}")


def run(args: argparse.Namespace) -> None:
    import numpy as np
    import torch

    from espnet_llm_plugin.retrieval.datastore import FaissDatastore, merge_datastores, read_manifest
    from espnet_llm_plugin.retrieval.document_store import check_memory_args, iter_scaled_windows, memory_documents
    from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder

    log = logging.getLogger("build_datastore")
    out_dir = Path(args.out_dir)
    resolve_windows(args)
    if args.nj < 1 or (args.shard is not None and not 1 <= args.shard <= args.nj):
        raise ValueError(f"need --nj >= 1 and 1 <= --shard <= --nj, got --nj {args.nj} --shard {args.shard}")
    if args.merge:
        shards = [shard_dir(out_dir, i) for i in range(1, args.nj + 1)]
        missing = [str(s) for s in shards if not (s / "manifest.json").is_file()]
        if missing:
            raise ValueError(f"--merge: shards not built yet: {', '.join(missing)}")
        prev = read_manifest(shards[0]).get("info", {}).get("build", {})  # text form/framing of the shards
        info = dict(build_info(args, None), **{k: prev[k] for k in ("text_form", "framing") if k in prev})
        ds = merge_datastores(shards, out_dir, index=args.index, extra={"build": info}, max_train=args.max_train)
        log.info("merged %d shards into %s: %d entries, index %s", args.nj, out_dir, ds.count, ds.index_string)
        return
    if args.memory_text and (Path(args.memory_text).parent / "wav.scp").is_file():
        log.warning(
            "--memory_text %s sits in a data directory: if it is a Kaldi text, its utterance ids "
            "become memory text; give it as --memory_text_file instead",
            args.memory_text,
        )

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    check_memory_args(args.memory_text, args.memory_text_file, args.memory_units)  # before the model load
    enc = KeyEncoder(
        args.key_encoder,
        layer=args.layer,
        device=args.device,
        dtype=args.dtype,
        batch_size=args.batch_size,
        framing=args.framing,
        text_form=args.text_form,
    )
    docs = memory_documents(
        enc.tokenizer,
        args.memory_text,
        args.memory_text_file,
        args.memory_units,
        args.num_units,
        enc.framing,
        enc.text_form,
    )
    windows = list(iter_scaled_windows(docs, args.window, args.stride))
    log.info(
        "memory: %d documents, %d windows of <= %s tokens every %s (key encoder %s, layer %d, %s; "
        "text form %s, framing %s)",
        len(docs),
        len(windows),
        args.window,
        args.stride,
        args.key_encoder,
        args.layer,
        enc.device,
        enc.text_form.to_dict(),
        enc.framing.to_dict(),
    )
    if len(windows) < args.nj:
        raise ValueError(f"--nj {args.nj} is more than the {len(windows)} windows of the memory corpus")
    identity = enc.identity()

    def build(shard: Optional[int], dest: Path, index: str) -> None:
        info = build_info(args, shard, enc)
        if shard is not None and not args.overwrite and is_done(dest, info, identity):
            log.info("shard %d already built in %s: skipped", shard, dest)
            return
        part = windows
        if shard is not None:  # contiguous ranges keep the corpus order across shards
            lo, hi = (shard - 1) * len(windows) // args.nj, shard * len(windows) // args.nj
            part = windows[lo:hi]
        keys, values = enc.encode(part, progress=True)
        ds = FaissDatastore.build(
            keys, values, identity, index=index, metric=args.metric, fp16=args.fp16, max_train=args.max_train
        )
        ds.save(dest, extra={"build": info, "documents": len(docs), "windows": len(part)})
        log.info("wrote %s: %d keys of width %d", dest, ds.count, ds.dim)

    if args.shard is not None:
        build(args.shard, shard_dir(out_dir, args.shard), "Flat")
    elif args.nj > 1:
        for i in range(1, args.nj + 1):
            build(i, shard_dir(out_dir, i), "Flat")
        ds = merge_datastores(
            [shard_dir(out_dir, i) for i in range(1, args.nj + 1)],
            out_dir,
            index=args.index,
            extra={"build": build_info(args, None, enc)},
            max_train=args.max_train,
        )
        log.info("merged into %s: %d entries, index %s", out_dir, ds.count, ds.index_string)
    else:
        build(None, out_dir, args.index)


if __name__ == "__main__":
    main()
