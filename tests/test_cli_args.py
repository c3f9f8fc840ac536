"""cli_parser: the usage line names the command, --help names the defaults there are."""

import argparse

from espnet_llm_plugin.cli_args import cli_parser, str2bool


def test_help_names_defaults_only_where_there_is_one():
    p = cli_parser("demo", "Line one.\n\n    python -m espnet_llm_plugin.bin.demo --epochs 3")
    p.add_argument("--epochs", type=int, default=3, help="passes over the data")
    p.add_argument("--out_dir", required=True, help="where to write")
    p.add_argument("--dev", default=None, help="optional dev set")
    p.add_argument("--tag", default="", help="name suffix")
    p.add_argument("--fast", action="store_true", help="skip checks")
    p.add_argument("--resume", type=str2bool, default=True, help="continue")
    p.add_argument("--lr", type=float, default=0.1, help="step size (default: 0.1 with warm-up)")
    text = p.format_help()
    flat = " ".join(text.split())
    assert text.startswith("usage: python -m espnet_llm_plugin.bin.demo")
    assert "    python -m espnet_llm_plugin.bin.demo --epochs 3" in text  # the description keeps its layout
    assert "passes over the data (default: 3)" in flat
    assert "continue (default: True)" in flat
    for plain in ("where to write", "optional dev set", "name suffix", "skip checks"):
        assert f"{plain} (default" not in flat, plain
    assert flat.count("(default: 0.1") == 1  # said once, in the help's own words


def test_parser_is_an_argparse_parser():
    p = cli_parser("demo", None)
    assert isinstance(p, argparse.ArgumentParser) and p.prog == "python -m espnet_llm_plugin.bin.demo"
