"""Whisper first pass: n-best lists of a Kaldi data directory in ESPnet's decode layout.

    python -m espnet_llm_plugin.bin.whisper_nbest \\
        --whisper_dir exp/whisper-tiny.en \\
        --data_dir dump/raw/test --output_dir exp/whisper_tiny.en/decode_beam8/test --beam_size 8 --nbest 8

Writes ``OUTPUT_DIR/{n}best_recog/{text,text_raw,score,num_tokens,score_whisper_logprob}``,
``OUTPUT_DIR/text`` (the 1-best), ``score_info.json`` (the scores are Whisper's beam scores,
log-probability per token: ``score_kind: per_token``; rescore_nbest turns them into totals,
score x num_tokens) and ``timing.json``; the directory appears only when complete. ``text`` is
in the recipe's form (``--text_form``; default: no punctuation, in the case of the data dir's
own transcripts, upper without any); ``text_raw`` is
Whisper's own. The Whisper directory comes from ``python -m
espnet_llm_plugin.bin.prepare_pretrained whisper-tiny.en --out_dir exp/whisper-tiny.en`` (or
whisper-base).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_parser, json_object, run_cli, str2bool


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("whisper_nbest", __doc__)
    p.add_argument("--whisper_dir", type=Path, required=True, help="prepared Hugging Face Whisper directory")
    p.add_argument("--data_dir", type=Path, required=True, help="Kaldi data dir (wav.scp, optional segments)")
    p.add_argument(
        "--output_dir", "--out_dir", dest="out_dir", type=Path, required=True, help="decode dir to write (atomically)"
    )
    p.add_argument("--key_file", type=Path, default=None, help="decode only these utterances (one job's share)")
    p.add_argument("--beam_size", type=int, default=8)
    p.add_argument("--nbest", type=int, default=8, help="hypotheses written per utterance (<= beam_size)")
    p.add_argument("--max_new_tokens", type=int, default=None, help="text tokens per beam (default: the model's limit)")
    p.add_argument(
        "--text_form",
        type=json_object,
        default=None,
        help='Whisper\'s text -> the written text (core/text_form.py), default \'{"punctuation": "strip", '
        '"recipe_case": "auto"}\' (auto: the case of the data dir\'s transcripts, upper without any); '
        '\'{"punctuation": "keep"}\' keeps Whisper\'s own',
    )
    p.add_argument("--distinct_text", type=str2bool, default=True, help="one beam per written text (the best)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i]")
    add_debug_arg(p)
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)

    def run() -> None:
        from espnet_llm_plugin.core.device import resolve_device
        from espnet_llm_plugin.decoding.whisper_first_pass import WhisperFirstPassOptions, whisper_first_pass

        device = str(resolve_device(args.device))
        opts = WhisperFirstPassOptions(
            beam_size=args.beam_size,
            nbest=args.nbest,
            max_new_tokens=args.max_new_tokens,
            distinct_text=args.distinct_text,
            device=device,
            **({} if args.text_form is None else {"text_form": args.text_form}),
        )
        summary = whisper_first_pass(args.whisper_dir, args.data_dir, args.out_dir, opts, key_file=args.key_file)
        print(json.dumps(summary))

    run_cli("whisper_nbest", run, debug=args.debug)


if __name__ == "__main__":
    main()
