"""Format a Kaldi data directory into a dump directory: 16-bit WAV files at one sample
rate, one per utterance (segments cut out), plus ``wav.scp``, ``text``, ``utt2spk``,
``utt2num_samples``, ``utt2dur``.

Reads any libsndfile format (WAV/FLAC/MP3/OGG) and Kaldi pipe commands. Resamples to
``--fs`` unless ``--resample false``, in which case another rate is an error naming the
utterance. The output directory appears only when complete (atomic rename), so the
stage can be re-run after any failure.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import soundfile
from tqdm import tqdm

from espnet_llm_plugin.cli_args import cli_parser, str2bool
from espnet_llm_plugin.fileio.atomic import atomic_dir
from espnet_llm_plugin.fileio.audio import AudioError, check_sample_rate, read_audio, resample
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, load_data_dir, write_scp


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("format_audio", __doc__)
    p.add_argument("data_dir", type=Path, help="Kaldi data dir (wav.scp, text, utt2spk)")
    p.add_argument("out_dir", type=Path, help="dump dir to create")
    p.add_argument("--fs", type=int, default=16000, help="output sample rate (Hz)")
    p.add_argument("--resample", type=str2bool, default=True, help="resample other rates")
    p.add_argument("--require_text", type=str2bool, default=True)
    p.add_argument("--min_duration", type=float, default=0.0, help="drop shorter utterances (s)")
    p.add_argument(
        "--speed_perturb_factors",
        type=parse_factors,
        default=(1.0,),
        help='speeds to write, e.g. "0.9 1.0 1.1" (1.0: the original)',
    )
    return p


def parse_factors(value: str) -> Tuple[float, ...]:
    try:
        factors = tuple(float(v) for v in value.replace(",", " ").split())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like '0.9 1.0 1.1', got {value!r}")
    if not factors or any(f <= 0 for f in factors):
        raise argparse.ArgumentTypeError(f"speed factors must be positive, got {value!r}")
    return factors


def speed_perturb(wav: np.ndarray, fs: int, factor: float) -> np.ndarray:
    """Play ``wav`` ``factor`` times faster: read it as sampled at ``factor * fs``."""
    return wav if factor == 1.0 else resample(wav, int(round(fs * factor)), fs)


def _prefixed(factor: float, name: str) -> str:
    return name if factor == 1.0 else f"sp{factor:g}-{name}"


def format_data_dir(
    data_dir: Path,
    out_dir: Path,
    fs: int = 16000,
    allow_resample: bool = True,
    require_text: bool = True,
    min_duration: float = 0.0,
    speed_perturb_factors: Sequence[float] = (1.0,),
) -> int:
    """Write the formatted copy of ``data_dir`` to ``out_dir``; returns utterances written."""
    data = load_data_dir(data_dir, require_text=require_text)
    out_dir = Path(out_dir).resolve()
    with atomic_dir(out_dir) as tmp:
        wav_dir = tmp / "data"
        wav_dir.mkdir()
        wav_scp, num_samples, durations, text, utt2spk = [], [], [], [], []
        speakers = data.utt2spk or {u: u for u in data.utt_ids}
        for utt in tqdm(data.utt_ids, desc=f"format {data_dir}", disable=None, mininterval=5):
            spec, begin, end = data.audio_source(utt)
            original, sr = read_audio(spec, utt, begin, end)
            if not allow_resample:
                check_sample_rate(sr, fs, f"utterance '{utt}' ({spec})")
            original = resample(original, sr, fs)
            for factor in speed_perturb_factors:
                wav = speed_perturb(original, fs, factor)
                name = _prefixed(factor, utt)
                if len(wav) < min_duration * fs:
                    logging.info("dropping %s: %.2fs < --min_duration", name, len(wav) / fs)
                    continue
                soundfile.write(wav_dir / f"{name}.wav", wav, fs, subtype="PCM_16")
                # paths inside the final dir, not the temp one
                wav_scp.append((name, str(out_dir / "data" / f"{name}.wav")))
                num_samples.append((name, str(len(wav))))
                durations.append((name, f"{len(wav) / fs:.3f}"))
                utt2spk.append((name, _prefixed(factor, speakers[utt])))
                if data.text is not None:
                    text.append((name, data.text[utt]))
        if not wav_scp:
            raise DataDirError(f"{data_dir}: no utterance left after formatting")
        write_scp(tmp / "wav.scp", wav_scp)
        write_scp(tmp / "utt2num_samples", num_samples)
        write_scp(tmp / "utt2dur", durations)
        write_scp(tmp / "utt2spk", utt2spk)
        if data.text is not None:
            write_scp(tmp / "text", text)
    return len(wav_scp)


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        n = format_data_dir(
            args.data_dir,
            args.out_dir,
            args.fs,
            args.resample,
            args.require_text,
            args.min_duration,
            args.speed_perturb_factors,
        )
    except (AudioError, DataDirError) as e:
        sys.exit(f"format_audio: error: {e}")
    logging.info("wrote %d utterances to %s", n, args.out_dir)


if __name__ == "__main__":
    main()
