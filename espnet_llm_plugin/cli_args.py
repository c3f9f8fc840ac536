"""Argument types shared by our CLIs (ESPnet-style booleans: true/false)."""

from __future__ import annotations

import argparse
import dis
import json
import logging
import os
import sys
import traceback
from typing import Any, Callable, Sequence, Type

CLI_PREFIX = "python -m espnet_llm_plugin.bin."


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """``--help`` keeps the description's own layout (its examples) and names each option's
    default, except where there is none to name (required options, ``None``, flags)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text, default = action.help or "", action.default
        if (
            "default" in text.lower()  # the help says it already, in its own words
            or not action.option_strings
            or action.required
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or (isinstance(default, (str, list, tuple)) and not default)
            or isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        ):
            return text
        return f"{text} (default: %(default)s)".lstrip()


def cli_parser(name: str, description: str | None, **kwargs: Any) -> argparse.ArgumentParser:
    """The parser of ``python -m espnet_llm_plugin.bin.<name>``: its usage line names the
    command to type, and --help shows the defaults."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    return argparse.ArgumentParser(prog=CLI_PREFIX + name, description=description, **kwargs)


def str2bool(value: str) -> bool:
    v = str(value).strip().lower()
    if v in ("true", "yes", "1", "y"):
        return True
    if v in ("false", "no", "0", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def json_object(value: str) -> dict:
    """A JSON object on the command line, e.g. ``--text_form '{"case": "sentence"}'``."""
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
    p.add_argument(
        "--text_form",
        type=json_object,
        default=None,
        help=f'how {what} is shown to the LLM, e.g. \'{{"case": "sentence", "punctuation": '
        f'"final_period"}}\' (default: {default})',
    )
    p.add_argument(
        "--framing",
        type=json_object,
        default=None,
        help=f'start/end tokens around each of {what}, e.g. \'{{"start": ["<|endoftext|>"], '
        f'"end": ["<|im_end|>"]}}\' (default: {default})',
    )


DEBUG_ENV = "ESPNET_LLM_PLUGIN_DEBUG"  # set to 1: every CLI shows tracebacks (as --debug true)


def add_debug_arg(p: argparse.ArgumentParser) -> None:
    """``--debug`` (or ``--debug true``): show the traceback of an input error too, and log
    at DEBUG level."""
    p.add_argument(
        "--debug",
        type=str2bool,
        nargs="?",
        const=True,
        default=False,
        help=f"show tracebacks of input errors and log at DEBUG level (also: {DEBUG_ENV}=1)",
    )


def debug_wanted(flag: bool = False) -> bool:
    """``flag`` or the environment variable ``ESPNET_LLM_PLUGIN_DEBUG`` set to a true value."""
    env = os.environ.get(DEBUG_ENV, "").strip().lower()
    return bool(flag) or env in ("1", "true", "yes", "y")


def _defined_here(obj: Any) -> bool:
    return str(getattr(obj, "__module__", "") or "").split(".")[0] == "espnet_llm_plugin"


def is_expected_error(e: BaseException, errors: Sequence[Type[BaseException]]) -> bool:
    """Is ``e`` one of our input errors (shown as one line)?

    It must be an instance of ``errors`` and either of an exception class defined in this
    package (``DataDirError``, ``NBestError``, ...) or raised by our own code: the innermost
    traceback frame is in ``espnet_llm_plugin`` and is a ``raise`` statement there (or, for an
    ``OSError``, any call there: ``open`` names the file). A ``ValueError`` raised inside numpy,
    torch or ESPnet, or by a C function our code called, is a bug or an unforeseen case: it
    keeps its traceback.
    """
    if not isinstance(e, tuple(errors)):
        return False
    if _defined_here(type(e)):
        return True
    tb = e.__traceback__
    if tb is None:  # never raised through a frame (built by hand): trust the type
        return True
    while tb.tb_next is not None:
        tb = tb.tb_next
    if str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0] != "espnet_llm_plugin":
        return False
    return isinstance(e, OSError) or _is_raise_statement(tb.tb_frame.f_code, tb.tb_lasti)


def _is_raise_statement(code: Any, lasti: int) -> bool:
    """Whether the instruction at byte offset ``lasti`` of ``code`` is a ``raise``."""
    for ins in dis.get_instructions(code):
        if ins.offset == lasti:
            return ins.opname == "RAISE_VARARGS"
    return False


class cli_errors:
    """``with cli_errors(prog, debug):`` turns our input errors (``errors``, see
    :func:`is_expected_error`) into ``sys.exit('<prog>: error: ...')``: one line, or the
    traceback first with ``debug``. Any other exception propagates unchanged."""

    def __init__(
        self, prog: str, debug: bool = False, errors: Sequence[Type[BaseException]] = (ValueError, OSError)
    ) -> None:
        self.prog, self.debug, self.errors = prog, debug_wanted(debug), tuple(errors)

    def __enter__(self) -> "cli_errors":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is None or not is_expected_error(exc, self.errors):
            return False  # no error, or an unexpected one: keep its traceback
        if self.debug:
            traceback.print_exception(exc_type, exc, tb, file=sys.stderr)
        sys.exit(f"{self.prog}: error: {exc}")


def setup_logging(debug: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if debug_wanted(debug) else logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )


def run_cli(
    prog: str, fn: Callable[[], Any], errors: Sequence[Type[BaseException]] = (ValueError, OSError), debug: bool = False
) -> Any:
    """Set up logging and run ``fn``; an input error (``errors`` raised by our code, see
    :func:`is_expected_error`) exits with '<prog>: error: ...' and no traceback unless
    ``debug`` (``--debug``, :func:`add_debug_arg`); other exceptions propagate."""
    setup_logging(debug)
    with cli_errors(prog, debug, errors):
        return fn()
