"""Discrete-unit extraction speed and k-means training time.

Part 1, extraction: seconds of audio turned into unit ids per second of wall time (features
+ nearest-centroid search, one utterance at a time as ``dump_units`` does), for
  * ``fbank``: 80 log-mel bands, 20 ms hop;
  * ``hf``: a randomly initialised small HuBERT (wav2vec2 CNN, 4 x 256 Transformer, saved and
    loaded with ``from_pretrained``; a real HuBERT-base is 12 x 768, roughly 10x the work), or
    ``--hf_path`` for a real model directory;
  * ``espnet_asr``: an ESPnet ASR encoder (``--asr_config``/``--asr_model_file``; default the
    demo recipe's ``exp/asr_transformer_tiny`` when it exists, else skipped).
Audio: ``--num_utts`` random 3-8 s utterances (noise + tones; speed does not depend on content).

Part 2, k-means: ``faiss.Kmeans`` training seconds vs number of frames (Gaussian blobs,
``--kmeans_dim`` wide, ``--kmeans_units`` centroids, 20 iterations, every frame used).

    .venv/bin/python bench/unit_extraction.py --quick
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet_llm_plugin.core.device import resolve_device

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

NAME = "unit_extraction"
log = logging.getLogger(NAME)
DEMO_ASR = common.REPO_ROOT / "egs2" / "synthetic" / "llm_asr1" / "exp" / "asr_transformer_tiny"


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    common.add_common_args(p)
    p.add_argument("--num_utts", type=int, default=None, help="utterances per extractor")
    p.add_argument("--num_units", type=int, default=500, help="K of the codebook used for ids")
    p.add_argument("--hf_path", type=str, default=None, help="real HF model dir (else random small)")
    p.add_argument("--hf_layer", type=int, default=-1)
    p.add_argument("--asr_config", type=str, default=None)
    p.add_argument("--asr_model_file", type=str, default=None)
    p.add_argument("--kmeans_frames", type=int, nargs="*", default=None, help="frame counts for the k-means timing")
    p.add_argument("--kmeans_units", type=int, default=None)
    p.add_argument("--kmeans_dim", type=int, default=256)
    return p


def random_hubert_dir(path: Path, seed: int) -> Path:
    import torch
    import transformers

    torch.manual_seed(seed)
    cfg = transformers.HubertConfig(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        intermediate_size=1024,
        conv_dim=(128,) * 7,
    )
    transformers.AutoModel.from_config(cfg).save_pretrained(path)
    return path


def make_audio(n: int, seed: int) -> List[Any]:
    import numpy as np

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = np.arange(int(rng.uniform(3, 8) * 16000)) / 16000
        x = 0.05 * rng.standard_normal(t.size) + 0.3 * np.sin(2 * np.pi * rng.uniform(100, 800) * t)
        out.append(x.astype(np.float32))
    return out


def bench_extractor(spec: Dict[str, Any], audio: List[Any], num_units: int, device: str, seed: int) -> Dict[str, Any]:
    import numpy as np

    from espnet_llm_plugin.frontend.kmeans import KMeansModel
    from espnet_llm_plugin.frontend.unit_features import build_feature_extractor

    ex = build_feature_extractor(spec, device=device)
    warm = [ex.extract(a) for a in audio[:2]]  # warm-up + frames for a codebook
    frames = np.concatenate(warm)
    k = min(num_units, frames.shape[0])
    km = KMeansModel.fit(frames, k, n_iter=5, seed=seed)
    dev = resolve_device(device)
    feat_s = 0.0
    with common.timer(dev) as t_all:
        for a in audio:
            with common.timer(dev) as t:
                f = ex.extract(a)
            feat_s += t["seconds"]
            km.predict(f)
    audio_s = sum(len(a) for a in audio) / 16000
    return {
        "features": spec["type"],
        "dim": ex.dim,
        "num_units": k,
        "utterances": len(audio),
        "audio_s": round(audio_s, 1),
        "wall_s": round(t_all["seconds"], 3),
        "audio_s_per_s": audio_s / t_all["seconds"],
        "features_share": feat_s / t_all["seconds"],
    }


def bench_kmeans(frame_counts: List[int], k: int, dim: int, seed: int) -> List[Dict[str, Any]]:
    import numpy as np

    from espnet_llm_plugin.frontend.kmeans import KMeansModel

    rng = np.random.default_rng(seed)
    rows = []
    for n in frame_counts:
        centers = rng.standard_normal((k, dim)).astype(np.float32) * 3
        x = centers[rng.integers(0, k, n)] + rng.standard_normal((n, dim)).astype(np.float32)
        start = time.perf_counter()
        km = KMeansModel.fit(x, k, n_iter=20, seed=seed, max_points_per_centroid=max(1, n // k))
        secs = time.perf_counter() - start
        rows.append(
            {
                "frames": n,
                "num_units": k,
                "dim": dim,
                "frames_used": km.meta["frames_used"],
                "train_s": round(secs, 3),
                "frames_per_s": n / secs,
            }
        )
        log.info("k-means K=%d D=%d N=%d: %.2f s", k, dim, n, secs)
    return rows


def main(argv: Optional[List[str]] = None) -> None:
    common.setup_logging()
    args = get_parser().parse_args(argv)
    import torch

    device = str(resolve_device(args.device))
    torch.manual_seed(args.seed)
    num_utts = args.num_utts or (3 if args.quick else 20)
    audio = make_audio(num_utts, args.seed)
    rows: List[Dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        specs: List[Dict[str, Any]] = [{"type": "fbank", "n_mels": 80, "hop_ms": 20.0}]
        hf_path = args.hf_path or str(random_hubert_dir(Path(tmp) / "hubert", args.seed))
        specs.append({"type": "hf", "path": hf_path, "layer": args.hf_layer})
        asr_config = args.asr_config or (
            str(DEMO_ASR / "config.yaml") if (DEMO_ASR / "valid.acc.ave.pth").exists() else None
        )
        asr_model = args.asr_model_file or (str(DEMO_ASR / "valid.acc.ave.pth") if asr_config else None)
        if asr_config and asr_model:
            specs.append({"type": "espnet_asr", "config": asr_config, "model_file": asr_model, "layer": -1})
        else:
            log.warning("no ESPnet ASR model (--asr_config/--asr_model_file): espnet_asr skipped")
        for spec in specs:
            row = bench_extractor(spec, audio, 100 if args.quick else args.num_units, device, args.seed)
            row["model"] = (
                "random small HuBERT"
                if spec["type"] == "hf" and not args.hf_path
                else Path(spec.get("path") or spec.get("model_file") or "").name or "-"
            )
            log.info("%s: %.1f s of audio per second", spec["type"], row["audio_s_per_s"])
            rows.append(row)
    frame_counts = args.kmeans_frames or ([5_000, 20_000] if args.quick else [20_000, 100_000, 400_000])
    k = args.kmeans_units or (100 if args.quick else 500)
    km_rows = bench_kmeans(frame_counts, k, args.kmeans_dim, args.seed)

    dev = resolve_device(device)
    payload = {"machine": common.machine_info(dev), "quick": args.quick, "kmeans": km_rows}
    md = common.write_results(
        NAME,
        payload,
        rows,
        ["features", "model", "dim", "num_units", "utterances", "audio_s", "wall_s", "audio_s_per_s", "features_share"],
        out_dir=args.out_dir,
        title="Unit extraction: seconds of audio per second",
        notes=[
            "audio_s_per_s: audio seconds turned into unit ids per wall second (one "
            "utterance at a time); features_share: fraction of time in feature extraction"
        ],
    )
    km_md = "\n## k-means training time (faiss, 20 iterations)\n\n" + common.markdown_table(
        km_rows, ["frames", "num_units", "dim", "frames_used", "train_s", "frames_per_s"]
    )
    from espnet_llm_plugin.fileio.atomic import atomic_write_text

    atomic_write_text(Path(args.out_dir) / f"{NAME}.md", md + km_md)
    print(md + km_md)


if __name__ == "__main__":
    main()
