"""ESPnet's ErrorCalculator on validation batches of non-speech segments only."""

import pytest


@pytest.fixture
def calculator(asr_task):
    from espnet.nets.e2e_asr_common import ErrorCalculator

    from espnet_llm_plugin.espnet_fixes import apply_espnet_fixes

    apply_espnet_fixes()
    apply_espnet_fixes()  # idempotent: wraps once
    return ErrorCalculator(["<blank>", "a", "b", "<space>", "<sos/eos>"], "<space>", "<blank>", True, True)


def test_all_empty_references_give_none_not_zero_division(calculator):
    assert calculator.calculate_cer(["ab", "a"], ["", ""]) is None
    assert calculator.calculate_wer(["ab", "a"], ["", ""]) is None


def test_normal_batches_keep_espnet_values(calculator):
    assert calculator.calculate_cer(["ab", "a"], ["ab", "b"]) == pytest.approx(1 / 3)
    assert calculator.calculate_wer(["a b", ""], ["a b", "b"]) == pytest.approx(1 / 3)
    assert not hasattr(calculator.calculate_cer.__wrapped__, "__wrapped__")
