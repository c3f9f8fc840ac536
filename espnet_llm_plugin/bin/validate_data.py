"""Check a Kaldi data directory before a recipe uses it.

Checks that ``wav.scp``, ``text`` and ``utt2spk`` exist and agree on utterance ids (an id
is shown with ``repr``, so a byte-order mark shows), that the files are UTF-8 and transcripts
parse (empty ones are valid: non-speech segments), that segments start at or after 0 s, and
with ``--check_audio true`` that every recording is readable and complete (a truncated WAV is
named), at ``--fs`` if given, at least ``--min_duration`` seconds long (shorter audio leaves
the encoder no frame and crashes decoding) and at most ``--max_duration`` (a warning, or an
error with ``--too_long error``). Errors name the file and the utterance.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging, str2bool
from espnet_llm_plugin.fileio.audio import AudioError, check_duration, check_sample_rate, read_audio
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, load_data_dir

MIN_DURATION = 0.1  # s: a 25 ms-window, 10 ms-shift frontend with 4x (or 6x) subsampling needs ~70 ms
MAX_DURATION = 60.0  # s: longer utterances exhaust memory in training and attention decoding


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("validate_data", __doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--require_text", type=str2bool, default=True)
    p.add_argument("--check_audio", type=str2bool, default=True, help="read every recording")
    p.add_argument("--fs", type=int, default=None, help="required sample rate (Hz)")
    p.add_argument(
        "--min_duration",
        type=float,
        default=MIN_DURATION,
        help="shortest utterance allowed, in seconds (0: no minimum) [%(default)s]",
    )
    p.add_argument(
        "--max_duration",
        type=float,
        default=MAX_DURATION,
        help="longest utterance, in seconds (0: no maximum) [%(default)s]",
    )
    p.add_argument(
        "--too_long",
        choices=["warn", "error"],
        default="warn",
        help="what an utterance over --max_duration gets [%(default)s]",
    )
    add_debug_arg(p)
    return p


def validate(
    data_dir: Path,
    require_text: bool = True,
    check_audio: bool = True,
    fs: Optional[int] = None,
    min_duration: float = MIN_DURATION,
    max_duration: float = MAX_DURATION,
    too_long: str = "warn",
) -> int:
    """Returns the number of utterances; raises DataDirError / AudioError."""
    if min_duration < 0 or max_duration < 0 or (0 < max_duration < min_duration):
        raise ValueError(
            f"need 0 <= min_duration <= max_duration (0: no maximum), got {min_duration} and {max_duration}"
        )
    data = load_data_dir(data_dir, require_text=require_text)
    if check_audio:
        for utt in data.utt_ids:
            spec, b, e = data.audio_source(utt)
            wav, sr = read_audio(spec, utt, b, e)
            where = f"{data_dir / 'wav.scp'}: utterance {utt!r} ({spec})"
            check_sample_rate(sr, fs, where)
            check_duration(len(wav) / sr, where, min_duration, max_duration, too_long)
    return len(data.utt_ids)


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.debug)
    with cli_errors("validate_data", args.debug, (DataDirError, AudioError, ValueError)):
        n = validate(
            args.data_dir,
            args.require_text,
            args.check_audio,
            args.fs,
            args.min_duration,
            args.max_duration,
            args.too_long,
        )
    print(f"{args.data_dir}: {n} utterances OK")


if __name__ == "__main__":
    main()
