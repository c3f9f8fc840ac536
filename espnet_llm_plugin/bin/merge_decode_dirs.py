"""Merge the per-job output directories of ``asr_inference`` into one decode directory.

``WORK_DIR/output.{1..N}/{k}best_recog/{text,token,token_int,score}`` become
``OUT_DIR/{k}best_recog/...`` (sorted by utterance id), ``OUT_DIR/text`` is the 1-best,
and ``OUT_DIR/timing.json`` sums the jobs' decoding time and audio duration. A
``score_info.json`` (what the scores are) is carried over; jobs that disagree on it are refused.
The output appears only when every job's output is present.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import cli_parser
from espnet_llm_plugin.fileio.atomic import atomic_dir
from espnet_llm_plugin.rescoring.nbest import SCORE_INFO, read_score_info, write_score_info


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("merge_decode_dirs", __doc__)
    p.add_argument("work_dir", type=Path, help="directory holding output.1 ... output.N")
    p.add_argument("out_dir", type=Path)
    p.add_argument("--nj", type=int, required=True)
    return p


def _lines(path: Path) -> List[str]:
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def merge_decode_dirs(work_dir: Path, out_dir: Path, nj: int) -> None:
    jobs = [work_dir / f"output.{j}" for j in range(1, nj + 1)]
    for job in jobs:
        if not (job / "1best_recog" / "text").is_file():
            raise FileNotFoundError(f"{job}/1best_recog/text missing: decoding job failed or was cut short")
    # what the scores are (rescoring/nbest.py): every job must say the same, or none
    infos = [read_score_info(job) if (job / SCORE_INFO).is_file() else None for job in jobs]
    for job, info in zip(jobs[1:], infos[1:]):
        if info != infos[0]:
            raise ValueError(
                f"{work_dir}: the jobs' {SCORE_INFO} differ ({jobs[0].name}: {infos[0]}, {job.name}: {info}); "
                f"scores of different kinds or sources cannot be merged"
            )
    # every job's ranks: a job whose utterances all have fewer distinct hypotheses has fewer
    nbest_dirs = sorted(
        {p.name for job in jobs for p in job.glob("*best_recog")}, key=lambda n: int(n.split("best")[0])
    )
    with atomic_dir(out_dir) as tmp:
        for nb in nbest_dirs:
            files = sorted({p.name for job in jobs if (job / nb).is_dir() for p in (job / nb).iterdir() if p.is_file()})
            (tmp / nb).mkdir()
            for name in files:
                rows = []
                for job in jobs:
                    if (job / nb / name).is_file():
                        rows += _lines(job / nb / name)
                rows.sort(key=lambda line: line.split(maxsplit=1)[0])
                (tmp / nb / name).write_text("".join(r + "\n" for r in rows), encoding="utf-8")
        if infos[0] is not None:
            write_score_info(tmp, infos[0])
        (tmp / "text").write_text((tmp / "1best_recog" / "text").read_text(encoding="utf-8"), encoding="utf-8")
        elapsed, audio = 0.0, 0.0
        for job in jobs:
            t = job / "timing.json"
            if t.is_file():
                d = json.loads(t.read_text())
                elapsed += d["elapsed_s"]
                audio = None if audio is None or d.get("audio_s") is None else audio + d["audio_s"]
            else:
                audio = None
        (tmp / "timing.json").write_text(json.dumps({"elapsed_s": elapsed, "audio_s": audio}) + "\n")


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        merge_decode_dirs(args.work_dir, args.out_dir, args.nj)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"merge_decode_dirs: error: {e}")


if __name__ == "__main__":
    main()
