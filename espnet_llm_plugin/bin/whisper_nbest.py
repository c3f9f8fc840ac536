"""Whisper first pass: n-best lists of a Kaldi data directory in ESPnet's decode layout.

    python -m espnet_llm_plugin.bin.whisper_nbest \\
        --whisper_dir ~/.cache/espnet_llm_plugin/pretrained/whisper-tiny.en \\
        --data_dir dump/raw/test --out_dir exp/whisper_tiny.en/decode_beam8/test --beam_size 8 --nbest 8

Writes ``OUT_DIR/{n}best_recog/{text,text_raw,score,score_num_tokens}``, ``OUT_DIR/text`` (the
1-best), ``score_info.json`` (the scores are Whisper's log-probability per token; rescore_nbest
turns them into totals) and ``timing.json``. ``text`` is in the recipe's form (``--case``,
``--punctuation``); ``text_raw`` is Whisper's own. The Whisper directory comes from
``python -m espnet_llm_plugin.bin.prepare_pretrained whisper-tiny.en`` (or whisper-base).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, run_cli


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_llm_plugin.bin.whisper_nbest",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--whisper_dir", type=Path, required=True, help="prepared Hugging Face Whisper directory")
    p.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir (wav.scp, optional segments)")
    p.add_argument("--out_dir", type=Path, required=True, help="decode dir to write (replaced atomically)")
    p.add_argument("--beam_size", type=int, default=8)
    p.add_argument("--nbest", type=int, default=8, help="hypotheses written per utterance (<= beam_size)")
    p.add_argument("--max_length", type=int, default=None, help="decoder tokens incl. prompt (default: the model's)")
    p.add_argument("--case", default="upper", choices=("as_is", "lower", "upper"), help="case of the written text")
    p.add_argument("--punctuation", default="strip", choices=("strip", "keep"), help="punctuation of the written text")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    add_debug_arg(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)

    def run() -> None:
        import torch

        from espnet_llm_plugin.decoding.whisper_first_pass import WhisperFirstPassOptions, whisper_first_pass

        device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        opts = WhisperFirstPassOptions(
            beam_size=args.beam_size,
            nbest=args.nbest,
            max_length=args.max_length,
            case=args.case,
            punctuation=args.punctuation,
            device=device,
        )
        summary = whisper_first_pass(args.whisper_dir, args.data_dir, args.out_dir, opts)
        print(json.dumps(summary))

    run_cli("whisper_nbest", run, debug=args.debug)


if __name__ == "__main__":
    main()
