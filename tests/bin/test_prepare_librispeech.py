"""prepare_librispeech CLI: help without heavy imports, argument errors, a missing corpus (the checks in
prepare_cli_cases.py). The CLI on a fake corpus is tested in tests/corpus/test_librispeech.py."""

from prepare_cli_cases import PrepareCli, PrepareCliChecks


class TestPrepareLibriSpeech(PrepareCliChecks):
    cli = PrepareCli("prepare_librispeech", "--librispeech_root", "LIBRISPEECH", "--train_hours")
