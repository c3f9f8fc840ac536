"""Grid-search decoding options on a dev set and write the best decode config.

For every combination of ``--grid KEY=V1,V2,...`` values, the base decode YAML (``--config``)
is copied with those keys set and the dev set is decoded with ``asr_inference`` (1-best, one
job); the WER of each combination is computed against ``--ref``. The combination with the
lowest WER (ties: the first in grid order) is written to ``--out_config`` (the base YAML plus
the chosen values), next to ``<out_config stem>.tuning.json`` (and ``.md``) with every row.
All writes are atomic; decodes already done in ``--work_dir`` are reused, so a stopped sweep
resumes.

Typical use (kNN-LM lambda and k, arXiv 2406.09618)::

    python -m espnet_llm_plugin.bin.tune_decode --config conf/tuning/llm_beam5_knnlm.yaml \\
        --grid knnlm_lambda=0.1,0.25,0.5 --grid knnlm_k=8,16 \\
        --asr_train_config exp/asr_x/config.yaml --asr_model_file exp/asr_x/valid.acc.ave.pth \\
        --wav_scp dump/raw/dev/wav.scp --ref dump/raw/dev/text \\
        --work_dir exp/asr_x/tune_knnlm --out_config exp/asr_x/tune_knnlm/best.yaml
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import yaml

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging

logger = logging.getLogger("tune_decode")


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("tune_decode", __doc__)
    p.add_argument("--config", type=Path, required=True, help="base decode YAML")
    p.add_argument(
        "--grid",
        action="append",
        default=[],
        required=True,
        help="KEY=V1,V2,... (repeatable); values are parsed as YAML scalars",
    )
    p.add_argument("--asr_train_config", type=Path, required=True)
    p.add_argument("--asr_model_file", type=Path, required=True)
    p.add_argument("--wav_scp", type=Path, required=True, help="dev set audio (Kaldi wav.scp)")
    p.add_argument("--ref", type=Path, required=True, help="dev set references (Kaldi text)")
    p.add_argument(
        "--extra_data",
        action="append",
        default=[],
        help="more --data_path_and_name_and_type entries (e.g. units,units,text_int)",
    )
    p.add_argument("--work_dir", type=Path, required=True, help="one decode dir per combination")
    p.add_argument("--out_config", type=Path, required=True, help="the best decode YAML")
    p.add_argument("--ngpu", type=int, default=0)
    add_debug_arg(p)
    return p


def parse_grid(specs: List[str]) -> List[Tuple[str, List[Any]]]:
    """``["a=1,2", "b=x"]`` -> ``[("a", [1, 2]), ("b", ["x"])]``.

    Raises:
        ValueError: a spec without ``=`` or values, or a key given twice.
    """
    grid: List[Tuple[str, List[Any]]] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key or not values.strip():
            raise ValueError(f"--grid {spec!r}: expected KEY=V1,V2,...")
        if key in dict(grid):
            raise ValueError(f"--grid: key '{key}' given twice")
        grid.append((key, [yaml.safe_load(v.strip()) for v in values.split(",")]))
    return grid


def combinations(grid: List[Tuple[str, List[Any]]]) -> List[Dict[str, Any]]:
    keys = [k for k, _ in grid]
    return [dict(zip(keys, values)) for values in itertools.product(*(v for _, v in grid))]


def combination_name(combo: Dict[str, Any]) -> str:
    return "_".join(f"{k}{v}" for k, v in combo.items()).replace("/", "-")


def pick_best(rows: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Lowest WER; ties keep grid order (the first row wins)."""
    return min(enumerate(rows), key=lambda iv: (iv[1]["wer"], iv[0]))[1]


class DecodeFailed(RuntimeError):
    """A dev-set decode that exited non-zero or wrote no text (its log is named)."""


def _decode(args: argparse.Namespace, config: Path, out_dir: Path) -> Path:
    """Decode the dev set with ``config`` into ``out_dir`` (skipped when already complete)."""
    text = out_dir / "1best_recog" / "text"
    if text.is_file():
        return text
    cmd = [
        sys.executable,
        "-m",
        "espnet_llm_plugin.bin.asr_inference",
        "--ngpu",
        str(args.ngpu),
        "--nbest",
        "1",
        "--config",
        str(config),
        "--data_path_and_name_and_type",
        f"{args.wav_scp},speech,sound",
        "--asr_train_config",
        str(args.asr_train_config),
        "--asr_model_file",
        str(args.asr_model_file),
        "--output_dir",
        str(out_dir),
    ]
    for spec in args.extra_data:
        cmd += ["--data_path_and_name_and_type", spec]
    log = out_dir.parent / f"{out_dir.name}.log"
    with open(log, "w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0 or not text.is_file():
        raise DecodeFailed(f"decoding with {config} failed (exit {proc.returncode}); see {log}")
    return text


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.debug)
    from espnet_llm_plugin.bin.score_wer import score_files
    from espnet_llm_plugin.config_check import load_yaml_mapping
    from espnet_llm_plugin.fileio.atomic import atomic_write_text
    from espnet_llm_plugin.fileio.kaldi_data import DataDirError

    with cli_errors("tune_decode", args.debug, (ValueError,)):
        grid = parse_grid(args.grid)
        base = load_yaml_mapping(args.config)  # ConfigError naming the file: missing, bad YAML
        if not base:
            raise ValueError(f"--config {args.config}: an empty decode config")
        for f in (args.wav_scp, args.ref, args.asr_train_config, args.asr_model_file):
            if not f.is_file():
                raise ValueError(f"{f}: file not found")

    combos = combinations(grid)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, Any]] = []
    for i, combo in enumerate(combos, 1):
        name = combination_name(combo)
        config = args.work_dir / f"{name}.yaml"
        atomic_write_text(config, yaml.safe_dump({**base, **combo}, sort_keys=False))
        with cli_errors("tune_decode", args.debug, (DecodeFailed, DataDirError)):
            hyp = _decode(args, config, args.work_dir / name)
            result = score_files(args.ref, hyp)
        wer = result["wer"]
        rows.append(
            {
                **combo,
                "wer": wer["error_rate"],
                "substitutions": wer["substitutions"],
                "deletions": wer["deletions"],
                "insertions": wer["insertions"],
            }
        )
        logger.info("[%d/%d] %s: WER %.2f%%", i, len(combos), name, wer["error_rate"])

    best = pick_best(rows)
    chosen = {k: best[k] for k, _ in grid}
    header = (
        f"# tuned by tune_decode on {args.ref} (WER {best['wer']:.2f}%): "
        + ", ".join(f"{k}={v}" for k, v in chosen.items())
        + "\n"
    )
    atomic_write_text(args.out_config, header + yaml.safe_dump({**base, **chosen}, sort_keys=False))
    stem = args.out_config.with_suffix("")
    atomic_write_text(
        f"{stem}.tuning.json",
        json.dumps(
            {"base_config": str(args.config), "ref": str(args.ref), "grid": dict(grid), "rows": rows, "chosen": chosen},
            indent=2,
        )
        + "\n",
    )
    keys = [k for k, _ in grid]
    md = ["| " + " | ".join(keys + ["WER %", "sub", "del", "ins"]) + " |", "|" + "---|" * (len(keys) + 4)]
    for r in rows:
        mark = " (chosen)" if r is best else ""
        md.append(
            "| "
            + " | ".join(str(r[k]) for k in keys)
            + f" | {r['wer']:.2f}{mark} | {r['substitutions']} | {r['deletions']} | {r['insertions']} |"
        )
    atomic_write_text(f"{stem}.tuning.md", "\n".join(md) + "\n")
    logger.info("best: %s (WER %.2f%%) -> %s", chosen, best["wer"], args.out_config)


if __name__ == "__main__":
    main()
