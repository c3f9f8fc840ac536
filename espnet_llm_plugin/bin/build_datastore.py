"""Build a kNN-LM datastore (arXiv 2406.09618) from a memory corpus with an HF causal LM.

Memory: text-only (``--memory_text``: one sentence/passage per line, or ``passages.jsonl``;
or ``--memory_text_file`` alone: the transcripts of a Kaldi text, utterance ids dropped)
or multi-modal (``--memory_units`` units file + ``--memory_text_file`` Kaldi text: each
transcript is preceded by ``<speech><unit_..>...</speech>``; needs a speech+text LM).
The memory is cut into windows of ``--window`` tokens (every ``--stride`` tokens); the key
of each position is the key encoder's hidden state (``--layer``), its value the next token.

Sharded build (e.g. one job per GPU/CPU with run.pl/slurm, ``JOB`` = 1..N)::

    build_datastore ... --nj N --shard JOB --out_dir DIR     # DIR_shards/shard.JOB (resumable)
    build_datastore ... --nj N --merge --out_dir DIR         # DIR: one index over all shards

Without ``--shard``, ``--nj N`` builds the N shards in turn and merges them. A shard already
built with the same settings is skipped (``--overwrite`` rebuilds). Shards hold ``Flat``
indexes; ``--index`` applies to the merged datastore. Outputs are written atomically.

Example::

    python -m espnet_llm_plugin.bin.build_datastore --memory_text data/local/target_text.txt \\
        --key_encoder exp/text_lm --window 20 --index Flat --out_dir exp/datastore_text
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_datastore", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mem = p.add_argument_group("memory corpus")
    mem.add_argument("--memory_text", help="text file (one sentence/passage per line) or passages .jsonl")
    mem.add_argument("--memory_units", help="units file 'utt_id u1 u2 ...' (multi-modal memory)")
    mem.add_argument("--memory_text_file",
                     help="Kaldi text 'utt_id transcript': with --memory_units the multi-modal memory's "
                     "transcripts, alone a text-only memory of them")
    mem.add_argument("--num_units", type=int, default=None, help="check unit ids are below this")
    p.add_argument("--key_encoder", required=True, help="local HF causal LM dir (with tokenizer)")
    p.add_argument("--layer", type=int, default=-1, help="hidden-state index (0: embeddings, -1: last)")
    p.add_argument("--window", type=int, default=20, help="tokens per window")
    p.add_argument("--stride", type=int, default=None, help="step between windows (default: --window)")
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


def build_info(args: argparse.Namespace, shard: Optional[int]) -> Dict[str, Any]:
    """Settings a shard depends on (a rebuilt shard must match them to be reused)."""
    files = [args.memory_text, args.memory_units, args.memory_text_file]
    stats = {f: Path(f).stat().st_size for f in files if f}
    return {
        "memory_text": args.memory_text, "memory_units": args.memory_units,
        "memory_text_file": args.memory_text_file, "memory_sizes": stats,
        "window": args.window, "stride": args.stride or args.window, "fp16": args.fp16,
        "metric": args.metric, "nj": args.nj, "shard": shard,
    }


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

    from espnet_llm_plugin.retrieval.datastore import FaissDatastore, merge_datastores
    from espnet_llm_plugin.retrieval.document_store import (
        iter_windows,
        multimodal_documents,
        text_documents,
        transcript_documents,
    )
    from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder

    log = logging.getLogger("build_datastore")
    out_dir = Path(args.out_dir)
    if args.nj < 1 or (args.shard is not None and not 1 <= args.shard <= args.nj):
        raise ValueError(f"need --nj >= 1 and 1 <= --shard <= --nj, got --nj {args.nj} --shard {args.shard}")
    if args.merge:
        shards = [shard_dir(out_dir, i) for i in range(1, args.nj + 1)]
        missing = [str(s) for s in shards if not (s / "manifest.json").is_file()]
        if missing:
            raise ValueError(f"--merge: shards not built yet: {', '.join(missing)}")
        ds = merge_datastores(shards, out_dir, index=args.index, extra={"build": build_info(args, None)},
                              max_train=args.max_train)
        log.info("merged %d shards into %s: %d entries, index %s", args.nj, out_dir, ds.count, ds.index_string)
        return
    if bool(args.memory_text) == bool(args.memory_units or args.memory_text_file):
        raise ValueError(
            "give either --memory_text, or --memory_text_file (a Kaldi text: text-only memory of its "
            "transcripts) with or without --memory_units (multi-modal memory)"
        )
    if args.memory_units and not args.memory_text_file:
        raise ValueError("--memory_units needs --memory_text_file (Kaldi text with the transcripts)")
    if args.memory_text and (Path(args.memory_text).parent / "wav.scp").is_file():
        log.warning(
            "--memory_text %s sits in a data directory: if it is a Kaldi text, its utterance ids "
            "become memory text; give it as --memory_text_file instead", args.memory_text
        )

    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    enc = KeyEncoder(args.key_encoder, layer=args.layer, device=args.device, dtype=args.dtype, batch_size=args.batch_size)
    if args.memory_text:
        docs = text_documents(enc.tokenizer, args.memory_text)
    elif not args.memory_units:
        docs = transcript_documents(enc.tokenizer, args.memory_text_file)
    else:
        docs = multimodal_documents(enc.tokenizer, args.memory_units, args.memory_text_file, args.num_units)
    windows = list(iter_windows(docs, args.window, args.stride))
    log.info("memory: %d documents, %d windows of <= %d tokens (key encoder %s, layer %d, %s)",
             len(docs), len(windows), args.window, args.key_encoder, args.layer, enc.device)
    if len(windows) < args.nj:
        raise ValueError(f"--nj {args.nj} is more than the {len(windows)} windows of the memory corpus")
    identity = enc.identity()

    def build(shard: Optional[int], dest: Path, index: str) -> None:
        info = build_info(args, shard)
        if shard is not None and not args.overwrite and is_done(dest, info, identity):
            log.info("shard %d already built in %s: skipped", shard, dest)
            return
        part = windows
        if shard is not None:  # contiguous ranges keep the corpus order across shards
            lo, hi = (shard - 1) * len(windows) // args.nj, shard * len(windows) // args.nj
            part = windows[lo:hi]
        keys, values = enc.encode(part, progress=True)
        ds = FaissDatastore.build(keys, values, identity, index=index, metric=args.metric, fp16=args.fp16,
                                 max_train=args.max_train)
        ds.save(dest, extra={"build": info, "documents": len(docs), "windows": len(part)})
        log.info("wrote %s: %d keys of width %d", dest, ds.count, ds.dim)

    if args.shard is not None:
        build(args.shard, shard_dir(out_dir, args.shard), "Flat")
    elif args.nj > 1:
        for i in range(1, args.nj + 1):
            build(i, shard_dir(out_dir, i), "Flat")
        ds = merge_datastores(
            [shard_dir(out_dir, i) for i in range(1, args.nj + 1)], out_dir, index=args.index,
            extra={"build": build_info(args, None)}, max_train=args.max_train,
        )
        log.info("merged into %s: %d entries, index %s", out_dir, ds.count, ds.index_string)
    else:
        build(None, out_dir, args.index)


if __name__ == "__main__":
    main()
