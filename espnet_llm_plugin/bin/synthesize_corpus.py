"""Synthesise the embedded demo corpus: Kaldi data directories of espeak-ng speech.

What the corpus holds and how it is made: :mod:`espnet_llm_plugin.corpus.synthetic_corpus`
(``--help`` prints it).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging
from espnet_llm_plugin.corpus import synthetic_corpus
from espnet_llm_plugin.corpus.espeak_synth import SynthesisError
from espnet_llm_plugin.corpus.synthetic_corpus import CorpusConfig, synthesize_corpus


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("synthesize_corpus", synthetic_corpus.__doc__)
    p.add_argument("out_dir", type=Path, help="output directory (data dirs, local/, .done)")
    defaults = CorpusConfig()
    helps = {
        "seed": "seed of every random choice (text, world, voices, noise)",
        "num_train": "general-domain training utterances",
        "num_dev": "general-domain development utterances",
        "num_test": "general-domain test utterances",
        "num_target_test": "target-domain test utterances (test_target)",
        "num_target_dev": "target-domain development utterances (dev_target; 0: no such set)",
        "num_target_memory": "target-domain memory utterances: speech of the first sentences "
        "of local/target_text.txt (target_memory; 0: no such set)",
        "num_noise_train": "noise-only segments added to train",
        "num_noise_dev": "noise-only segments added to dev",
        "num_noise_test": "noise-only segments in test_noise",
        "num_passages": "retrieval passages in local/passages.jsonl",
        "num_target_text": "sentences in local/target_text.txt",
        "num_extra_train_text": "sentences added to the train transcripts in local/train_text.txt",
        "fs": "sample rate of the written audio (Hz)",
    }
    for field in dataclasses.fields(CorpusConfig):
        p.add_argument(
            f"--{field.name}",
            type=int,
            default=getattr(defaults, field.name),
            help=f"{helps[field.name]} (default: {getattr(defaults, field.name)})",
        )
    p.add_argument(
        "--audio_dir",
        type=Path,
        default=None,
        help="where the WAV files go (default: OUT_DIR/audio)",
    )
    p.add_argument("--nj", type=int, default=2, help="parallel synthesis processes (default: 2)")
    add_debug_arg(p)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.debug)
    cfg = CorpusConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(CorpusConfig)})
    with cli_errors("synthesize_corpus", args.debug, (SynthesisError, ValueError)):
        synthesize_corpus(args.out_dir, cfg, args.audio_dir, args.nj)


if __name__ == "__main__":
    main()
