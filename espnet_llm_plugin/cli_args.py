"""Argument types shared by our CLIs (ESPnet-style booleans: true/false)."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Callable, Sequence, Type


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


def add_text_form_args(p: argparse.ArgumentParser, what: str, default: str) -> None:
    """``--text_form`` and ``--framing`` (JSON objects, see ``core/text_form.py`` and
    ``core/framing.py``): how ``what`` is shown to the LLM; ``default`` says where they come
    from when not given."""
    p.add_argument("--text_form", type=json_object, default=None,
                   help=f'how {what} is shown to the LLM, e.g. \'{{"case": "sentence", "punctuation": '
                   f'"final_period"}}\' (default: {default})')
    p.add_argument("--framing", type=json_object, default=None,
                   help=f'start/end tokens around each of {what}, e.g. \'{{"start": ["<|endoftext|>"], '
                   f'"end": ["<|im_end|>"]}}\' (default: {default})')


def run_cli(prog: str, fn: Callable[[], Any],
            errors: Sequence[Type[BaseException]] = (ValueError, OSError)) -> Any:
    """Set up logging and run ``fn``; an input error (``errors``) exits with
    '<prog>: error: ...' and no traceback."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        return fn()
    except tuple(errors) as e:
        sys.exit(f"{prog}: error: {e}")
