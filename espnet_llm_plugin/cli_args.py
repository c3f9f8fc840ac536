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


def json_object(value: str) -> dict:
    """A JSON object on the command line, e.g. ``--text_form '{"case": "sentence"}'``."""
    import json

    try:
        obj = json.loads(value)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r} ({e})") from None
    if not isinstance(obj, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {value!r}")
    return obj


def float_list(value: str) -> list:
    """Comma-separated numbers, e.g. ``0,0.25,0.5``."""
    try:
        out = [float(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {value!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one number, got {value!r}")
    return out


def int_list(value: str) -> list:
    """Comma-separated integers, e.g. ``4,16,64``."""
    try:
        out = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"expected at least one integer, got {value!r}")
    return out
