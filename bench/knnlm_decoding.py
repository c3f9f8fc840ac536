"""kNN-LM decoding cost: beam search with the base LM alone vs with kNN-LM.

A tiny random Llama (``common.random_llama_dir``; or ``--lm_dir``) is the key encoder and the
base LM. The memory is random word sequences, encoded into a datastore of ``--datastore_size``
entries (default 100k; ``--quick`` 10k), with key-encoding throughput reported. Then ESPnet's
``BatchBeamSearch`` decodes ``--utts`` pseudo-utterances of ``--steps`` tokens (beam
``--beam``) with scorer ``HfLmScorer`` alone, and with ``KnnLmScorer`` (faiss Flat, faiss
IVF-PQ, torch exact), lambda 0.25, k 16. Only the LM side of an ASR decoder is run, so the
per-step overhead of kNN-LM shows undiluted; a real ASR decoder adds the same encoder/decoder
cost to both.

    .venv/bin/python bench/knnlm_decoding.py --quick
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "knnlm_decoding"
log = logging.getLogger(NAME)


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--lm_dir", default=None, help="existing HF LM dir (default: a random tiny Llama)")
    p.add_argument("--datastore_size", type=int, default=100_000)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--utts", type=int, default=5)
    p.add_argument("--steps", type=int, default=30, help="decoded tokens per utterance (maxlen)")
    p.add_argument("--beam", type=int, default=5)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--threads", type=int, default=0,
                   help="torch + faiss CPU threads (0: library default); 1 avoids oversubscription on a busy machine")
    return p


def decode(scorer, n_vocab: int, eos: int, args, device) -> Dict[str, Any]:
    import torch
    from espnet.nets.batch_beam_search import BatchBeamSearch

    bs = BatchBeamSearch(scorers={"lm": scorer}, weights={"lm": 1.0}, beam_size=args.beam, vocab_size=n_vocab,
                         sos=eos, eos=eos, token_list=None, pre_beam_score_key="full")
    bs.to(device)
    x = torch.zeros(args.steps, 4, device=device)
    logging.getLogger("espnet.nets.beam_search").setLevel(logging.ERROR)
    bs(x=x, maxlenratio=1.0, minlenratio=0.0)  # warm-up
    times, lengths = [], []
    for _ in range(args.utts):
        with common.timer(device) as t:
            hyps = bs(x=x, maxlenratio=1.0, minlenratio=0.0)
        times.append(t["seconds"])
        lengths.append(len(hyps[0].yseq) - 1)
    s = common.summarize(times)["median"]
    # hypotheses end at different lengths per scorer: compare time per decoding step
    return {"s_per_utt": s, "tokens": sum(lengths) / len(lengths), "ms_per_step": 1000 * sum(times) / sum(lengths)}


def run(args: argparse.Namespace) -> Dict[str, Any]:
    import numpy as np
    import torch

    from espnet_llm_plugin.retrieval.datastore import FaissDatastore
    from espnet_llm_plugin.retrieval.document_store import Document, iter_windows
    from espnet_llm_plugin.retrieval.hf_lm_scorer import HfLmScorer
    from espnet_llm_plugin.retrieval.key_encoder import KeyEncoder
    from espnet_llm_plugin.retrieval.knnlm_scorer import KnnLmScorer

    device = common.resolve_device(args.device)
    if args.threads > 0:
        import faiss

        torch.set_num_threads(args.threads)
        faiss.omp_set_num_threads(args.threads)
    if args.quick:
        args.datastore_size, args.utts, args.steps = min(args.datastore_size, 10_000), 2, 15
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        lm_dir = args.lm_dir or str(common.random_llama_dir(
            Path(tmp) / "lm", args.vocab, args.hidden, args.layers, num_heads=4, max_position_embeddings=256,
            seed=args.seed))
        enc = KeyEncoder(lm_dir, device=str(device), batch_size=128)
        V = len(enc.tokenizer)
        # memory: Zipf-distributed word ids, 18 words per document (20 tokens with bos/eos)
        n_docs = -(-args.datastore_size // 19)
        words = np.minimum(rng.zipf(1.3, (n_docs, 18)) + 3, V - 1)
        docs = [Document(str(i), (enc.tokenizer.bos_token_id, *map(int, row), enc.tokenizer.eos_token_id))
                for i, row in enumerate(words)]
        windows = list(iter_windows(docs, 20))
        with common.timer(device) as t:
            keys, values = enc.encode(windows)
        keys, values = keys[: args.datastore_size], values[: args.datastore_size]
        encode = {"keys": len(keys), "encode_s": t["seconds"], "keys_per_s": len(keys) / t["seconds"]}
        log.info("encoded %s", encode)
        ident = enc.identity()
        base = HfLmScorer(lm_dir, device=str(device))
        eos = int(base.tokenizer.eos_token_id)
        rows: List[Dict[str, Any]] = []
        ref = decode(base, V, eos, args, device)
        rows.append({"scorer": "base LM only", **ref, "overhead": 0.0})
        nlist = max(16, min(1024, 5000 // 39))
        for label, kw in [("kNN-LM faiss Flat", dict(index="Flat")),
                          (f"kNN-LM faiss IVF{nlist},PQ{ident['hidden_size'] // 16}x4 (nprobe 8)",
                           dict(index=f"IVF{nlist},PQ{ident['hidden_size'] // 16}x4", max_train=5000)),
                          (f"kNN-LM torch exact ({device})", dict(backend="torch", device=str(device)))]:
            start = time.perf_counter()
            ds = FaissDatastore.build(keys, values, ident, **kw)
            build_s = time.perf_counter() - start
            if kw.get("index", "").startswith("IVF"):
                import faiss

                faiss.extract_index_ivf(ds.backend.index).nprobe = 8
            knn = KnnLmScorer(base, ds, lam=0.25, k=args.k, temperature=1.0)
            r = decode(knn, V, eos, args, device)
            rows.append({"scorer": label, **r, "overhead": r["ms_per_step"] / ref["ms_per_step"] - 1,
                         "build_s": build_s})
            log.info("%s", rows[-1])
    return {"machine": common.machine_info(device), "encode": encode, "args": vars(args),
            "datastore_entries": int(len(keys)), "rows": rows}


def main(argv=None) -> None:
    args = get_parser().parse_args(argv)
    common.setup_logging()
    payload = run(args)
    rows = payload.pop("rows")
    e = payload["encode"]
    md = common.write_results(
        NAME, payload, rows, ["scorer", "s_per_utt", "ms_per_step", "tokens", "overhead", "build_s"],
        out_dir=args.out_dir, title="kNN-LM decoding overhead (LM-only beam search)",
        notes=[f"datastore {payload['datastore_entries']} entries, key width {args.hidden}; key encoding "
               f"{e['keys_per_s']:.0f} keys/s ({e['encode_s']:.1f} s)",
               f"beam {args.beam}, {args.steps} steps/utterance, k {args.k}, lambda 0.25; median of {args.utts} utterances",
               "overhead = ms per decoding step with kNN-LM / without - 1 (hypotheses end at different "
               "lengths per scorer, so per-step time is the fair measure)",
               f"load average {payload['machine'].get('load_average_1min')}: the machine is shared, numbers are noisy"],
    )
    print(md)


if __name__ == "__main__":
    main()
