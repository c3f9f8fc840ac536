import pytest

from espnet_llm_plugin.core.unit_tokens import speech_span, unit_token, unit_token_list


def test_span_and_list():
    assert unit_token(7) == "<unit_7>"
    assert speech_span([1, 0]) == "<speech><unit_1><unit_0></speech>"
    toks = unit_token_list(3)
    assert toks == ["<speech>", "</speech>", "<unit_0>", "<unit_1>", "<unit_2>"]


def test_out_of_range():
    with pytest.raises(ValueError, match="unit id 3 out of range"):
        speech_span([0, 3], num_units=3)
    with pytest.raises(ValueError):
        unit_token_list(0)
