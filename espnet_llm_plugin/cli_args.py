"""Argument types shared by our CLIs (ESPnet-style booleans: true/false)."""

from __future__ import annotations

import argparse


def str2bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("true", "yes", "1", "y"):
        return True
    if v in ("false", "no", "0", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
