"""Pack a trained ASR model to use it on another machine (a directory, .zip, .tar or .tar.gz).

The pack holds the trained weights only (safetensors; a frozen base LLM or SSL encoder is
referenced by name and content hash, not copied), config.yaml with paths relative to the pack,
the token list and tokenizer files, the decode options that produced the results, a kNN-LM
datastore's manifest (the datastore too with --include_datastore), the results and a model card
(README.md). No absolute paths of this machine end up in it. Relative paths in the configs are
read from the current directory (run it in the recipe directory, where training ran).

Example::

    python -m espnet_llm_plugin.bin.pack_model --asr_train_config exp/asr_llm/config.yaml \\
        --asr_model_file exp/asr_llm/valid.acc.ave.pth --decode_config conf/decode/llm_beam5.yaml \\
        --results exp/RESULTS.md --results exp/asr_llm/decode_llm_beam5/test/score \\
        --out exp/asr_llm/asr_llm_pack.zip

Then: ``python -m espnet_llm_plugin.bin.unpack_model exp/asr_llm/asr_llm_pack.zip model_dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import add_debug_arg, cli_errors, cli_parser, setup_logging, str2bool


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("pack_model", __doc__)
    p.add_argument("--asr_train_config", type=Path, required=True, help="the experiment's config.yaml")
    p.add_argument(
        "--asr_model_file",
        type=Path,
        required=True,
        help="checkpoint to pack (an epoch or averaged file, e.g. valid.acc.ave.pth)",
    )
    p.add_argument("--out", type=Path, required=True, help="pack to write: a directory, or .zip/.tar/.tar.gz")
    p.add_argument("--decode_config", type=Path, default=None, help="decode YAML that produced the results")
    p.add_argument(
        "--decode_args",
        default="",
        help='decode options given besides it, as on the command line ("--nbest 10 --beam_size 5")',
    )
    p.add_argument(
        "--results",
        type=Path,
        action="append",
        default=[],
        help="RESULTS.md or a score directory/file to include (repeatable)",
    )
    p.add_argument(
        "--include_datastore", type=str2bool, default=False, help="copy a kNN-LM datastore whole, not only its manifest"
    )
    p.add_argument("--title", default="", help="model card title")
    p.add_argument("--data_description", default="", help="model card: what the model was trained on")
    add_debug_arg(p)
    return p


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    setup_logging(args.debug)
    from espnet_llm_plugin.packing.layout import PackError
    from espnet_llm_plugin.packing.pack import pack_model, parse_decode_args

    with cli_errors("pack_model", args.debug, (PackError, ValueError)):
        out = pack_model(
            args.asr_train_config,
            args.asr_model_file,
            args.out,
            decode_config=args.decode_config,
            decode_options=parse_decode_args(args.decode_args),
            results=args.results,
            include_datastore=args.include_datastore,
            title=args.title,
            data_description=args.data_description,
        )
    print(out)


if __name__ == "__main__":
    main()
