"""Shared start-up of the CLIs that hand over to ESPnet's own task or inference code.

``--help`` is answered here without importing espnet (which takes ~14 s cold); every other
argument goes to ESPnet unchanged, so all of ESPnet's options keep working.
"""

from __future__ import annotations

import sys
from typing import List, Optional, Tuple


def wants_help(cmd: List[str]) -> bool:
    return any(a in ("-h", "--help") for a in cmd)


def print_help(prog: str, description: str, espnet_module: str) -> None:
    print(f"usage: python -m {prog} [ESPnet options ...]\n")
    print(description.strip() + "\n")
    print(
        "All options of ESPnet's own tool are accepted and passed through unchanged.\n"
        f"List them with:  python -m {prog} --espnet_help\n"
        f"(that imports ESPnet, {espnet_module}, and takes a few seconds)."
    )


def split_espnet_help(cmd: List[str]) -> tuple[List[str], bool]:
    """Turn our ``--espnet_help`` into ESPnet's ``--help``."""
    if "--espnet_help" in cmd:
        return [a if a != "--espnet_help" else "--help" for a in cmd], True
    return cmd, False


def pop_debug(cmd: List[str]) -> Tuple[List[str], bool]:
    """Take our ``--debug`` (``--debug``, ``--debug true|false``, ``--debug=...``) out of ``cmd``,
    which ESPnet's parser does not know: ``(cmd without it, its value)``."""
    from espnet_llm_plugin.cli_args import str2bool

    out: List[str] = []
    debug, i = False, 0
    while i < len(cmd):
        a = cmd[i]
        if a == "--debug":
            nxt = cmd[i + 1].strip().lower() if i + 1 < len(cmd) else ""
            if nxt in ("true", "false", "yes", "no", "1", "0", "y", "n"):
                debug, i = str2bool(nxt), i + 2
            else:
                debug, i = True, i + 1
            continue
        if a.startswith("--debug="):
            debug = str2bool(a.split("=", 1)[1])
        else:
            out.append(a)
        i += 1
    return out, debug


def argv(cmd: Optional[List[str]]) -> List[str]:
    return list(sys.argv[1:] if cmd is None else cmd)


def option_values(cmd: List[str], name: str) -> List[str]:
    """All values of ``--name X`` / ``--name=X`` in an argument list, in order."""
    values = []
    for i, a in enumerate(cmd):
        if a == name and i + 1 < len(cmd):
            values.append(cmd[i + 1])
        elif a.startswith(name + "="):
            values.append(a.split("=", 1)[1])
    return values


def config_path(cmd: List[str]) -> Optional[str]:
    """The value of ``--config`` (the last one, as argparse takes it)."""
    values = option_values(cmd, "--config")
    return values[-1] if values else None
