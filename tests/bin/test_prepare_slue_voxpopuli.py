"""prepare_slue_voxpopuli CLI: help without heavy imports, argument errors, a missing corpus (the checks in
prepare_cli_cases.py). The CLI on a fake corpus is tested in tests/corpus/test_slue_voxpopuli.py."""

from prepare_cli_cases import PrepareCli, PrepareCliChecks


class TestPrepareSlueVoxPopuli(PrepareCliChecks):
    cli = PrepareCli("prepare_slue_voxpopuli", "--slue_root", "SLUE_VOXPOPULI", "--valid_ratio")
