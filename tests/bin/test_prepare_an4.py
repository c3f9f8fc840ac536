"""prepare_an4 CLI: help without heavy imports, argument errors, a missing corpus (the checks in
prepare_cli_cases.py). The CLI on a fake corpus is tested in tests/corpus/test_an4.py."""

from prepare_cli_cases import PrepareCli, PrepareCliChecks


class TestPrepareAN4(PrepareCliChecks):
    cli = PrepareCli("prepare_an4", "--an4_root", "AN4", "--dev_speakers")
