"""LmFraming: token strings around a text, resolved to ids through a real HF tokenizer."""

import json

import pytest

from espnet_llm_plugin.core.framing import LEGACY_FRAMING, LmFraming, resolve_framing

WORDS = "the cat sat . <|endoftext|>".split()


def make_tokenizer(bos="<s>", eos="</s>"):
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<unk>", "<s>", "</s>"]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(specials + WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=bos, eos_token=eos, unk_token="<unk>", pad_token="<pad>"
    )


@pytest.fixture(scope="module")
def tokenizer():
    return make_tokenizer()


def test_legacy_framing_is_bos_text_eos(tokenizer):
    assert LEGACY_FRAMING == LmFraming()
    assert LEGACY_FRAMING.start_ids(tokenizer) == [2]
    assert LEGACY_FRAMING.end_ids(tokenizer) == [3]
    assert LEGACY_FRAMING.encode(tokenizer, "the cat sat") == [2, 4, 5, 6, 3]


def test_named_tokens_resolve_to_their_ids(tokenizer):
    f = LmFraming(start=("<|endoftext|>",), end=(".", "<|endoftext|>"))
    assert f.start_ids(tokenizer) == [8]
    assert f.end_ids(tokenizer) == [7, 8]
    assert LmFraming(start=(), end=("<eos>",)).start_ids(tokenizer) == []


def test_token_outside_vocabulary_is_refused_naming_it_and_where(tokenizer):
    """convert_tokens_to_ids would answer the unk id silently; we refuse instead."""
    f = LmFraming.from_dict({"end": ["<|im_end|>"]}, "conf/x.yaml: decoder_conf.framing")
    with pytest.raises(ValueError, match=r"conf/x\.yaml: decoder_conf\.framing: framing\.end.*'<\|im_end\|>'"):
        f.end_ids(tokenizer)
    with pytest.raises(ValueError, match="'the cat'"):
        LmFraming(start=("the cat",)).start_ids(tokenizer)


def test_missing_bos_is_dropped_missing_eos_is_an_error():
    tok = make_tokenizer(bos=None, eos=None)
    assert LmFraming().start_ids(tok) == []
    with pytest.raises(ValueError, match="no eos token"):
        LmFraming().end_ids(tok)


def test_from_dict_validates_and_round_trips():
    f = LmFraming.from_dict({"start": "<|endoftext|>", "end": ["."]}, "w")
    assert f == LmFraming(start=("<|endoftext|>",), end=(".",))
    assert LmFraming.from_dict(f.to_dict(), "w") == f
    with pytest.raises(ValueError, match=r"cfg: unknown framing key\(s\) \['begin'\]"):
        LmFraming.from_dict({"begin": []}, "cfg")
    with pytest.raises(ValueError, match="cfg: framing.end must be a list of token strings"):
        LmFraming.from_dict({"end": [1]}, "cfg")


def test_resolve_framing_prefers_config_then_llm_usage_then_legacy(tmp_path, tokenizer):
    assert resolve_framing(None, tmp_path, "cfg") == LEGACY_FRAMING
    (tmp_path / "llm_usage.json").write_text(
        json.dumps({"framing": {"start": ["<|endoftext|>"], "end": ["<|endoftext|>"]}})
    )
    f = resolve_framing(None, tmp_path, "cfg")
    assert f.start_ids(tokenizer) == [8] and f.end_ids(tokenizer) == [8]
    f = resolve_framing({"end": ["<eos>"]}, tmp_path, "cfg")
    assert f == LmFraming(start=("<|endoftext|>",), end=("<eos>",))
    (tmp_path / "llm_usage.json").write_text(json.dumps({"framing": {"end": ["<nope>"]}}))
    with pytest.raises(ValueError, match=r"cfg \(defaults from .*llm_usage\.json\).*'<nope>'"):
        resolve_framing(None, tmp_path, "cfg").end_ids(tokenizer)


def test_chat_frame_of_a_broken_template_names_where():
    from espnet_llm_plugin.core.framing import chat_frame

    tok = make_tokenizer()
    tok.chat_template = "{% for m in messages %}{{ raise_exception('no system role') }}{% endfor %}"
    with pytest.raises(ValueError, match="decoder_conf.chat_template: the LLM's chat template fails"):
        chat_frame(tok, "the cat", "", "decoder_conf.chat_template")
