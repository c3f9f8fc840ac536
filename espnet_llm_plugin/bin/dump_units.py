"""Dump discrete speech units of a Kaldi data dir with a trained k-means codebook.

Writes OUT as ``utt_id u1 u2 ...`` lines (espnet_llm_plugin.fileio.unit_file format, sorted by
utterance id), computing the features recorded in KMEANS_DIR/kmeans.json.

Parallel work, three ways:
  --nj N               N worker processes in this call; parts go to OUT.work/units.<j> and are
                       merged into OUT (a re-run after a crash redoes only missing parts)
  --job i/N            only the i-th of N contiguous parts of the sorted utterance ids (for a
                       job runner: --job JOB/N --out dir/units.JOB, then --merge)
  --key_file KEYS      only the utterances listed in KEYS (split_scp's keys.JOB.scp)
  --merge PART...      merge part files into OUT (checks that they cover the data dir)

Resumable: an OUT that exists and holds exactly the expected utterances is kept (--overwrite
true recomputes). Errors name the utterance.

Example:
  python -m espnet_llm_plugin.bin.dump_units --data_dir data/train --kmeans_dir exp/kmeans \\
      --out exp/units/train/units --dedup true --nj 4
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging, str2bool


def parse_job(value: str) -> Tuple[int, int]:
    try:
        i, n = (int(v) for v in value.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--job must look like 3/8, got {value!r}")
    if not 1 <= i <= n:
        raise argparse.ArgumentTypeError(f"--job {value}: need 1 <= i <= N")
    return i, n


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("dump_units", __doc__)
    p.add_argument("--data_dir", type=Path, help="Kaldi data dir (wav.scp [+ segments])")
    p.add_argument("--kmeans_dir", type=Path, help="directory written by train_kmeans")
    p.add_argument("--out", type=Path, required=True, help="units file to write")
    p.add_argument("--dedup", type=str2bool, default=False, help="run-length de-duplicate units (3 3 5 -> 3 5)")
    p.add_argument("--nj", type=int, default=1, help="worker processes")
    p.add_argument("--job", type=parse_job, default=None, help="i/N: only part i of N")
    p.add_argument("--key_file", type=Path, default=None, help="only these utterances")
    p.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="merge these part files into --out (needs --data_dir to check coverage)",
    )
    p.add_argument(
        "--short_audio",
        choices=["error", "empty"],
        default="error",
        help="utterance shorter than one frame: fail naming it, or write no units",
    )
    p.add_argument("--overwrite", type=str2bool, default=False, help="recompute even when --out is already complete")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    add_debug_arg(p)
    return p


def job_slice(utts: Sequence[str], i: int, n: int) -> List[str]:
    """Part ``i`` (1-based) of ``n`` contiguous parts, the arithmetic of split_scp."""
    lo, hi = (i - 1) * len(utts) // n, i * len(utts) // n
    return list(utts[lo:hi])


def is_complete(path: Path, utts: Sequence[str], num_units: Optional[int] = None) -> bool:
    """``path`` exists, parses, and holds exactly ``utts``."""
    from espnet_llm_plugin.fileio.kaldi_data import DataDirError
    from espnet_llm_plugin.fileio.unit_file import read_units

    if not path.is_file():
        return False
    try:
        return set(read_units(path, num_units)) == set(utts)
    except DataDirError:
        return False


def dump_part(
    data_dir: Path,
    kmeans_dir: Path,
    utts: List[str],
    out: Path,
    dedup: bool,
    short_audio: str,
    device: str,
    threads: Optional[int] = None,
    position: int = 0,
) -> Dict[str, float]:
    """Compute and write the units of ``utts`` to ``out`` (one process)."""
    import torch
    from tqdm import tqdm

    from espnet_llm_plugin.fileio.unit_file import write_units
    from espnet_llm_plugin.frontend.discrete_units import UnitExtractor
    from espnet_llm_plugin.frontend.unit_features import ShortAudioError, UtteranceAudio

    if threads is not None:
        torch.set_num_threads(threads)
    audio = UtteranceAudio([data_dir])
    extractor = UnitExtractor(kmeans_dir, device=device)
    rows: List[Tuple[str, List[int]]] = []
    seconds_audio, start, empty = 0.0, time.perf_counter(), 0
    for utt in tqdm(utts, desc=f"units {out.name}", unit="utt", mininterval=5, position=position):
        wav = audio.read(utt)
        seconds_audio += len(wav) / 16000
        try:
            units = extractor.units(wav, utt, dedup=dedup)
        except ShortAudioError:
            if short_audio == "error":
                raise
            units, empty = [], empty + 1
        rows.append((utt, units))
    write_units(out, rows)
    return {"utterances": len(rows), "audio_s": seconds_audio, "empty": empty, "compute_s": time.perf_counter() - start}


def _dump_part_star(kwargs: dict) -> Dict[str, float]:
    return dump_part(**kwargs)


def merge_parts(parts: Sequence[Path], out: Path, expected: Optional[Sequence[str]]) -> int:
    """Merge unit files (no duplicate ids; exactly ``expected`` when given) into ``out``."""
    from espnet_llm_plugin.fileio.kaldi_data import DataDirError
    from espnet_llm_plugin.fileio.unit_file import read_units, write_units

    merged: Dict[str, List[int]] = {}
    for part in parts:
        for utt, units in read_units(part).items():
            if utt in merged:
                raise DataDirError(f"{part}: utterance '{utt}' is also in another part")
            merged[utt] = units
    if expected is not None:
        missing = sorted(set(expected) - set(merged))
        extra = sorted(set(merged) - set(expected))
        if missing or extra:
            raise DataDirError(
                f"merged parts do not match the data dir: {len(missing)} missing "
                f"(e.g. {missing[:1]}), {len(extra)} unknown (e.g. {extra[:1]})"
            )
    write_units(out, merged.items())
    return len(merged)


def dump_units(args: argparse.Namespace) -> Path:
    from espnet_llm_plugin.core.device import resolve_device
    from espnet_llm_plugin.fileio.kaldi_data import DataDirError, read_scp
    from espnet_llm_plugin.frontend.kmeans import KMeansModel
    from espnet_llm_plugin.frontend.unit_features import UtteranceAudio

    if args.data_dir is None:
        raise ValueError("--data_dir is required")
    utts = UtteranceAudio([args.data_dir]).utt_ids
    if args.merge is not None:
        n = merge_parts(args.merge, args.out, utts)
        logging.info("merged %d parts (%d utterances) into %s", len(args.merge), n, args.out)
        return args.out
    if args.kmeans_dir is None:
        raise ValueError("--kmeans_dir is required")
    num_units = KMeansModel.load(args.kmeans_dir).num_units  # fail early on a bad codebook
    if args.key_file is not None:
        keys = list(read_scp(args.key_file, allow_empty_value=True))
        unknown = sorted(set(keys) - set(utts))
        if unknown:
            raise DataDirError(f"{args.key_file}: utterance '{unknown[0]}' is not in {args.data_dir}")
        utts = sorted(keys)
    if args.job is not None:
        utts = job_slice(utts, *args.job)
    if not args.overwrite and is_complete(args.out, utts, num_units):
        logging.info("%s is complete (%d utterances): skipped", args.out, len(utts))
        return args.out
    device = str(resolve_device(args.device))
    common = dict(
        data_dir=args.data_dir,
        kmeans_dir=args.kmeans_dir,
        dedup=args.dedup,
        short_audio=args.short_audio,
        device=device,
    )
    nj = max(1, min(args.nj, len(utts)))
    start = time.perf_counter()
    if nj == 1:
        stats = [dump_part(utts=utts, out=args.out, **common)]
    else:
        work = args.out.parent / (args.out.name + ".work")
        jobs = []
        for j in range(1, nj + 1):
            part_utts, part = job_slice(utts, j, nj), work / f"units.{j}"
            if not args.overwrite and is_complete(part, part_utts, num_units):
                logging.info("%s is complete: skipped", part)
                continue
            jobs.append(
                dict(utts=part_utts, out=part, threads=max(1, (os.cpu_count() or 1) // nj), position=j - 1, **common)
            )
        stats = []
        if jobs:
            import multiprocessing as mp

            # spawn: forked children of a process that already used torch's thread pools can hang
            with mp.get_context("spawn").Pool(min(nj, len(jobs))) as pool:
                stats = pool.map(_dump_part_star, jobs)
        merge_parts([work / f"units.{j}" for j in range(1, nj + 1)], args.out, utts)
        shutil.rmtree(work, ignore_errors=True)
    audio_s = sum(s["audio_s"] for s in stats)
    wall = time.perf_counter() - start
    logging.info(
        "wrote %s: %d utterances, %.1f s of audio in %.1f s (%.1f x real time)%s",
        args.out,
        len(utts),
        audio_s,
        wall,
        audio_s / max(wall, 1e-9),
        f", {sum(s['empty'] for s in stats)} empty (short audio)" if any(s["empty"] for s in stats) else "",
    )
    return args.out


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    setup_logging(args.debug)
    with cli_errors("dump_units", args.debug, (ValueError, FileNotFoundError)):
        dump_units(args)


if __name__ == "__main__":
    main()
