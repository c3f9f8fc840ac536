"""Score a decoding: WER and CER with substitution/deletion/insertion counts.

Reads the reference ``text`` and the hypothesis ``text`` (Kaldi format, empty transcripts
allowed), writes ``OUT_DIR/result.json`` and ``OUT_DIR/result.txt``: the summary, then every
utterance's word alignment in sclite's layout (``id:``, ``Scores: (#C #S #D #I)``, ``REF:``,
``HYP:``, ``Eval:``; errors upper-cased, ``***`` where a word is missing). ``--case`` and
``--punctuation`` normalise both sides alike before scoring (default: as written);
``--normaliser english`` then maps spelled-out numbers to digits and splits hyphenated words,
as Whisper's normalised WER does (``TWENTY THIRTY SEVEN`` = ``2037``).
Hypotheses missing for a reference utterance count as deletions and are reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_parser, run_cli
from espnet_llm_plugin.core.text_form import TextForm
from espnet_llm_plugin.fileio.atomic import atomic_write_text
from espnet_llm_plugin.fileio.kaldi_data import DataDirError
from espnet_llm_plugin.scoring.english_normaliser import EnglishScoringNormaliser
from espnet_llm_plugin.scoring.file_scoring import alignment_text, format_result, score_files


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("score_wer", __doc__)
    p.add_argument("--ref", type=Path, required=True, help="reference Kaldi text file")
    p.add_argument("--hyp", type=Path, required=True, help="hypothesis Kaldi text file")
    p.add_argument("--out_dir", type=Path, required=True)
    p.add_argument("--name", default="", help="label stored in result.json (e.g. test set)")
    p.add_argument(
        "--timing",
        type=Path,
        default=None,
        help="timing.json of the decoding (elapsed_s, audio_s) for the real-time factor",
    )
    p.add_argument(
        "--case",
        choices=["as_is", "lower", "upper"],
        default="as_is",
        help="case both sides are mapped to before scoring",
    )
    p.add_argument(
        "--punctuation",
        choices=["keep", "strip"],
        default="keep",
        help="strip: drop punctuation on both sides (apostrophes/hyphens inside words stay)",
    )
    p.add_argument(
        "--normaliser",
        choices=["none", "english"],
        default="none",
        help="english: after --case/--punctuation, lower case, numbers as digits, hyphens split "
        "(compare a model that writes '2037' with references that say 'twenty thirty seven')",
    )
    add_debug_arg(p)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    run_cli("score_wer", lambda: _score(args), errors=(DataDirError, ValueError), debug=args.debug)


def _score(args: argparse.Namespace) -> None:
    normaliser = TextForm(case=args.case, punctuation=args.punctuation)
    english = EnglishScoringNormaliser() if args.normaliser == "english" else None
    result = score_files(args.ref, args.hyp, normaliser, english)
    result["name"] = args.name
    if args.timing is not None and args.timing.is_file():
        timing = json.loads(args.timing.read_text())
        if timing.get("audio_s"):
            result["rtf"] = timing["elapsed_s"] / timing["audio_s"]
    args.out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out_dir / "result.json", json.dumps(result, indent=2) + "\n")
    alignments = alignment_text(args.ref, args.hyp, normaliser, english)
    atomic_write_text(args.out_dir / "result.txt", format_result(result) + "\n" + alignments)
    sys.stdout.write(format_result(result))


if __name__ == "__main__":
    main()
