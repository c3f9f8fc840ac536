"""Collect every scored decoding under an experiment directory into ``RESULTS.md``.

Reads every ``EXP_DIR/<model>/<decode>/<test_set>/score/result.json`` written by
``score_wer`` (and ``score_english/result.json``, the Whisper-style normalised scoring of
``llm_asr.sh --score_normalised true``, marked as such) and writes a summary table (WER and
CER with substitutions, deletions, insertions, and the real-time factor when it was measured)
and ESPnet's per-unit tables
(``|dataset|Snt|Wrd|Corr|Sub|Del|Ins|Err|S.Err|``, one for WER, one for CER). Prints it too.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin import __version__
from espnet_llm_plugin.cli_args import cli_parser
from espnet_llm_plugin.fileio.atomic import atomic_write_text
from espnet_llm_plugin.scoring.results_table import espnet_tables


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("collect_results", __doc__)
    p.add_argument("exp_dir", type=Path)
    p.add_argument("--out", type=Path, default=None, help="default: EXP_DIR/RESULTS.md")
    p.add_argument("--title", default="Results")
    return p


def _fmt_rate(r: dict) -> str:
    return "inf" if r["error_rate"] == float("inf") else f"{r['error_rate']:.1f}"


def _score_files(exp_dir: Path) -> List[Path]:
    """Every ``<...>/score/result.json`` and ``<...>/score_english/result.json``, sorted."""
    return sorted([*exp_dir.glob("**/score/result.json"), *exp_dir.glob("**/score_english/result.json")])


def _normalised_mark(result: dict) -> str:
    """What a row's label gains when ``score_wer --normaliser english`` scored it."""
    return " (english-normalised)" if result.get("normaliser", {}).get("english") else ""


def results_table(exp_dir: Path) -> str:
    rows = []
    for path in _score_files(exp_dir):
        res = json.loads(path.read_text())
        parts = path.relative_to(exp_dir).parts[:-2]  # (model, decode, test set) or fewer
        test_set = parts[-1] if parts else "-"
        decode = parts[-2] if len(parts) > 1 else "-"
        model = "/".join(parts[:-2]) or "-"
        decode += _normalised_mark(res)
        w, c = res["wer"], res["cer"]
        rtf = f"{res['rtf']:.3f}" if res.get("rtf") is not None else "-"
        rows.append(
            f"| {model} | {decode} | {test_set} | {w['utterances']} | {w['ref_tokens']} | "
            f"{_fmt_rate(w)} | {w['substitutions']} | {w['deletions']} | {w['insertions']} | "
            f"{_fmt_rate(c)} | {rtf} |"
        )
    if not rows:
        return ""
    header = (
        "| model | decoding | test set | utts | words | WER % | sub | del | ins | CER % | RTF |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    return header + "\n".join(rows) + "\n"


def espnet_format_tables(exp_dir: Path) -> str:
    """ESPnet's WER and CER tables; dataset = ``<model>/<decode>/<test set>``."""
    results = []
    for path in _score_files(exp_dir):
        res = json.loads(path.read_text())
        name = ("/".join(path.relative_to(exp_dir).parts[:-2]) or "-") + _normalised_mark(res)
        results.append((name, res))
    return espnet_tables(results)


def perplexity_table(exp_dir: Path) -> str:
    """Text perplexities written by ``mmlm_train --eval_only`` under ``EXP_DIR/*/perplexity/``
    (one JSON per ``<model>_<set>``): the text-only LM next to its speech+text version."""
    rows = []
    for path in sorted(exp_dir.glob("*/perplexity/*.json")):
        res = json.loads(path.read_text())
        rows.append(
            f"| {path.parent.parent.name} | {path.stem} | {res['sentences']} | {res['tokens']} | "
            f"{res['ppl']:.3f} | {res['word_ppl']:.3f} |"
        )
    if not rows:
        return ""
    return (
        "| experiment | model_set | sentences | tokens | perplexity / token | perplexity / word |\n"
        "|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n"
    )


def sub_results(exp_dir: Path) -> str:
    """Tables that stages write into their own ``EXP_DIR/<name>/RESULTS.md`` (retrieval
    Recall@k, rescoring), each under a heading with the directory's name."""
    parts = []
    for path in sorted(exp_dir.glob("*/RESULTS.md")):
        body = path.read_text().strip()
        if body:
            parts.append(f"### {path.parent.name}\n\n{body}\n")
    return "\n".join(parts)


def environment_lines() -> str:
    versions = {"espnet-llm-plugin": __version__, "python": platform.python_version()}
    for mod in ("espnet", "torch"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # report what is importable
            pass
    return (
        f"- date: {datetime.date.today().isoformat()}\n"
        + "".join(f"- {k}: {v}\n" for k, v in versions.items())
        + f"- machine: {platform.machine()}, {platform.processor() or 'cpu'}\n"
    )


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    table = results_table(args.exp_dir) or "(no scored decodings yet)\n"
    notes = (
        "WER/CER in percent; sub/del/ins are word counts. Empty-reference sets (noise-only "
        "segments) have no words: read their insertions column. RTF = decoding time / audio "
        "duration, model loading included.\n"
    )
    text = f"# {args.title}\n\n## Environment\n{environment_lines()}\n## Error rates\n{notes}\n{table}"
    espnet = espnet_format_tables(args.exp_dir)
    if espnet:
        text += (
            "\n## ESPnet format\n\nCorr/Sub/Del/Ins/Err in % of reference words (characters "
            "for CER), S.Err in % of sentences; per-utterance alignments are in each "
            "`score/result.txt`.\n\n" + espnet
        )
    ppl = perplexity_table(args.exp_dir)
    if ppl:
        text += f"\n## Text perplexity\n\n{ppl}"
    extra = sub_results(args.exp_dir)
    if extra:
        text += f"\n## Other stages\n\n{extra}"
    out = args.out or args.exp_dir / "RESULTS.md"
    atomic_write_text(out, text)
    print(text)


if __name__ == "__main__":
    main()
