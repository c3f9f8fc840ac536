"""Check a Kaldi data directory before a recipe uses it.

Checks that ``wav.scp``, ``text`` and ``utt2spk`` exist and agree on utterance ids, that
transcripts parse (empty ones are valid: non-speech segments), and with
``--check_audio true`` that every recording is readable (and at ``--fs`` if given).
Errors name the file and the utterance.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import str2bool
from espnet_llm_plugin.fileio.audio import AudioError, check_sample_rate, read_audio
from espnet_llm_plugin.fileio.kaldi_data import DataDirError, load_data_dir


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m espnet_llm_plugin.bin.validate_data", description=__doc__)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--require_text", type=str2bool, default=True)
    p.add_argument("--check_audio", type=str2bool, default=True, help="read every recording")
    p.add_argument("--fs", type=int, default=None, help="required sample rate (Hz)")
    return p


def validate(data_dir: Path, require_text: bool = True, check_audio: bool = True, fs: Optional[int] = None) -> int:
    """Returns the number of utterances; raises DataDirError / AudioError."""
    data = load_data_dir(data_dir, require_text=require_text)
    if check_audio:
        for utt in data.utt_ids:
            spec, b, e = data.audio_source(utt)
            _, sr = read_audio(spec, utt, b, e)
            check_sample_rate(sr, fs, f"{data_dir / 'wav.scp'}: utterance '{utt}' ({spec})")
    return len(data.utt_ids)


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    try:
        n = validate(args.data_dir, args.require_text, args.check_audio, args.fs)
    except (DataDirError, AudioError) as e:
        sys.exit(f"validate_data: error: {e}")
    print(f"{args.data_dir}: {n} utterances OK")


if __name__ == "__main__":
    main()
