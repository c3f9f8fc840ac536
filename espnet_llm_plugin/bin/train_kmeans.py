"""Train the k-means codebook of discrete speech units (arXiv 2406.09618).

Computes frame features for the utterances of Kaldi data dirs (and/or wav.scp files), keeps a
seeded uniform sample of at most --max_frames frames, fits k-means with faiss and writes
OUT_DIR/kmeans.safetensors (centroids, float32 (K, D)) + OUT_DIR/kmeans.json (feature spec,
seed, frames used, objective). OUT_DIR appears only when complete.

Features (--feature_type):
  fbank       log-mel filterbanks (--n_mels, --win_ms, --hop_ms); needs nothing else
  hf          Hugging Face HuBERT/wav2vec2/WavLM in a local dir (--hf_path, --layer)
  espnet_asr  a trained ESPnet ASR encoder (--asr_config, --asr_model_file, --layer; -1 = output)

Example:
  python -m espnet_llm_plugin.bin.train_kmeans --data_dir data/train --feature_type hf \\
      --hf_path /models/hubert-base-ls960 --layer 6 --num_units 2000 --out_dir exp/kmeans
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from espnet_llm_plugin.cli_args import cli_parser, str2bool


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("train_kmeans", __doc__)
    src = p.add_argument_group("data")
    src.add_argument("--data_dir", type=Path, action="append", default=[], help="Kaldi data dir (repeatable)")
    src.add_argument("--wav_scp", type=Path, action="append", default=[], help="wav.scp file (repeatable)")
    src.add_argument("--max_utts", type=int, default=None, help="use a seeded random subset of this many utterances")
    src.add_argument(
        "--skip_short",
        type=str2bool,
        default=True,
        help="skip utterances shorter than one frame (logged); false: error",
    )
    add_feature_args(p)
    km = p.add_argument_group("k-means")
    km.add_argument("--num_units", type=int, default=2000, help="K (papers: 2000)")
    km.add_argument(
        "--max_frames", type=int, default=1_000_000, help="uniform random sample of frames kept for training"
    )
    km.add_argument("--n_iter", type=int, default=20)
    km.add_argument("--max_points_per_centroid", type=int, default=256, help="faiss subsamples to K * this many frames")
    km.add_argument(
        "--l2_normalize", type=str2bool, default=False, help="L2-normalise frames before fitting and assigning"
    )
    km.add_argument("--seed", type=int, default=0)
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    return p


def add_feature_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("features")
    g.add_argument("--feature_type", default="fbank", choices=["fbank", "hf", "espnet_asr"])
    g.add_argument("--n_mels", type=int, default=80, help="fbank: mel bands")
    g.add_argument("--win_ms", type=float, default=25.0, help="fbank: window (ms)")
    g.add_argument("--hop_ms", type=float, default=20.0, help="fbank: hop (ms), 10 or 20")
    g.add_argument("--hf_path", type=str, default=None, help="hf: local model directory")
    g.add_argument(
        "--layer",
        type=int,
        default=-1,
        help="hf: hidden_states index (0..N, -1 last); espnet_asr: block 1..N or -1 (final encoder output)",
    )
    g.add_argument("--asr_config", type=str, default=None, help="espnet_asr: config.yaml")
    g.add_argument("--asr_model_file", type=str, default=None, help="espnet_asr: model .pth")


def feature_spec_from_args(args: argparse.Namespace) -> Dict[str, Any]:
    if args.feature_type == "fbank":
        return {"type": "fbank", "n_mels": args.n_mels, "win_ms": args.win_ms, "hop_ms": args.hop_ms}
    if args.feature_type == "hf":
        if not args.hf_path:
            raise ValueError("--feature_type hf needs --hf_path (a local model directory)")
        return {"type": "hf", "path": args.hf_path, "layer": args.layer}
    if not args.asr_config or not args.asr_model_file:
        raise ValueError("--feature_type espnet_asr needs --asr_config and --asr_model_file")
    return {"type": "espnet_asr", "config": args.asr_config, "model_file": args.asr_model_file, "layer": args.layer}


def train_kmeans(args: argparse.Namespace) -> Path:
    import numpy as np
    from tqdm import tqdm

    from espnet_llm_plugin.frontend.kmeans import FrameSampler, KMeansModel
    from espnet_llm_plugin.frontend.unit_features import (
        ShortAudioError,
        UtteranceAudio,
        build_feature_extractor,
    )

    if not args.data_dir and not args.wav_scp:
        raise ValueError("give --data_dir and/or --wav_scp")
    audio = UtteranceAudio(args.data_dir, args.wav_scp)
    utts = audio.utt_ids
    if args.max_utts is not None and args.max_utts < len(utts):
        rng = np.random.default_rng(args.seed)
        utts = sorted(rng.choice(utts, size=args.max_utts, replace=False).tolist())
    extractor = build_feature_extractor(feature_spec_from_args(args), device=args.device)
    logging.info(
        "features: %s (dim %d) on %s; %d utterances", extractor.spec, extractor.dim, extractor.device, len(utts)
    )
    sampler = FrameSampler(args.max_frames, seed=args.seed)
    skipped: List[str] = []
    for utt in tqdm(utts, desc="features", unit="utt", mininterval=5):
        try:
            sampler.add(extractor.extract(audio.read(utt), utt))
        except ShortAudioError:
            if not args.skip_short:
                raise
            skipped.append(utt)
    if skipped:
        logging.warning("skipped %d utterances shorter than one frame (e.g. '%s')", len(skipped), skipped[0])
    frames = sampler.frames()
    logging.info("%d frames seen, %d kept for k-means", sampler.seen, frames.shape[0])
    model = KMeansModel.fit(
        frames,
        args.num_units,
        n_iter=args.n_iter,
        seed=args.seed,
        max_points_per_centroid=args.max_points_per_centroid,
        normalize=args.l2_normalize,
        feature_spec=extractor.spec,
    )
    model.meta.update(
        {
            "utterances": len(utts) - len(skipped),
            "utterances_skipped_short": len(skipped),
            "frames_seen": int(sampler.seen),
            "max_frames": args.max_frames,
            "sources": [str(d) for d in args.data_dir] + [str(s) for s in args.wav_scp],
        }
    )
    model.save(args.out_dir)
    logging.info(
        "wrote %s (K=%d, D=%d, objective %.4g)", args.out_dir, model.num_units, model.dim, model.meta["objective"]
    )
    return args.out_dir


def main(argv: Optional[List[str]] = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = get_parser().parse_args(argv)
    try:
        train_kmeans(args)
    except (ValueError, FileNotFoundError) as e:  # our errors subclass ValueError
        sys.exit(f"train_kmeans: error: {e}")


if __name__ == "__main__":
    main()
