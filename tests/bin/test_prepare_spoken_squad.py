"""prepare_spoken_squad CLI: help without heavy imports, argument errors, a missing corpus (the checks in
prepare_cli_cases.py). The CLI on a fake corpus is tested in tests/corpus/test_spoken_squad.py."""

from prepare_cli_cases import PrepareCli, PrepareCliChecks


class TestPrepareSpokenSquad(PrepareCliChecks):
    cli = PrepareCli("prepare_spoken_squad", "--spoken_squad_root", "SPOKEN_SQUAD", "--valid_ratio")
