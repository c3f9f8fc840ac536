"""List the components espnet-llm-plugin adds to ESPnet, with the YAML names to use.

Without ``--check`` this reads our registry table only (fast, no espnet import). With
``--check`` it registers them and confirms ESPnet's ClassChoices now offer each name.
Then the decode-time scorers (``core/decode_scorers.py``) a decode config can name.
"""

from __future__ import annotations

import argparse
from typing import List, Optional

from espnet_llm_plugin.cli_args import cli_parser
from espnet_llm_plugin.core.decode_scorers import DECODE_SCORERS
from espnet_llm_plugin.registry import components


def get_parser() -> argparse.ArgumentParser:
    parser = cli_parser("list_components", __doc__)
    parser.add_argument("--check", action="store_true", help="register and verify against the installed espnet")
    parser.add_argument("--task", default=None, help="only this ESPnet task module")
    return parser


def main(cmd: Optional[List[str]] = None) -> None:
    args = get_parser().parse_args(cmd)
    rows = components(args.task)
    status = {}
    if args.check:
        import importlib

        from espnet_llm_plugin.registry import register

        register()
        for module, comp in rows:
            choices = getattr(importlib.import_module(module), f"{comp.choice}_choices")
            ok = choices.classes.get(comp.name) is comp.load()
            status[(module, comp.name)] = "registered" if ok else "MISSING"
    header = ("task", "choice", "name (YAML)", "class", "what it is")
    table = [
        (module, comp.choice, comp.name, comp.target, comp.summary)
        + ((status[(module, comp.name)],) if args.check else ())
        for module, comp in rows
    ]
    if args.check:
        header += ("status",)
    widths = [max(len(str(r[i])) for r in [header] + table) for i in range(len(header))]
    for row in [header] + table:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
    print("\ndecode-time scorers (decode config: scorers: {NAME: {weight: W, conf: {...}}})")
    for scorer in DECODE_SCORERS.values():
        print(f"  {scorer.name:<16} {scorer.summary}")
    if args.check and "MISSING" in status.values():
        raise SystemExit(1)


if __name__ == "__main__":
    main()
