"""fill_llm_dependent_conf: the adapter width read from the LLM directory."""

import argparse

import pytest
from tiny_models import save_tiny_llm

from espnet_llm_plugin.asr.llm_auto_conf import fill_llm_dependent_conf
from espnet_llm_plugin.core.hf_causal_lm import LlmLoadError


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    """A WordLevel tokenizer and a random Llama of hidden size 48."""
    return save_tiny_llm(
        tmp_path_factory.mktemp("llm48"),
        "<pad> <unk> <s> </s> a b c".split(),
        hidden_size=48,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
    )


def _args(llm_dir, decoder="llm", postencoder="conv1d_mlp_adapter", post_conf=None):
    return argparse.Namespace(
        decoder=decoder,
        decoder_conf={"llm_path": str(llm_dir)} if llm_dir else {},
        postencoder=postencoder,
        postencoder_conf=dict(post_conf or {}),
    )


@pytest.mark.parametrize("decoder", ["llm", "llm_xattn", "LLM"])
@pytest.mark.parametrize(
    "post_conf",
    [
        {"num_conv_layers": 1},  # left out
        {"output_size": "auto", "num_conv_layers": 1},  # asked for
        {"output_size": " AUTO ", "num_conv_layers": 1},
        {"output_size": None, "num_conv_layers": 1},  # YAML null
    ],
)
def test_width_is_read_from_the_llm(llm_dir, decoder, post_conf):
    args = _args(llm_dir, decoder=decoder, post_conf=post_conf)
    assert fill_llm_dependent_conf(args) == {"postencoder_conf.output_size": 48}
    assert args.postencoder_conf == {"output_size": 48, "num_conv_layers": 1}


def test_explicit_width_is_kept(llm_dir):
    args = _args(llm_dir, post_conf={"output_size": 128})
    assert fill_llm_dependent_conf(args) == {}
    assert args.postencoder_conf == {"output_size": 128}  # a wrong width fails later, in LlmDecoder


def test_other_decoders_and_postencoders_are_left_alone(llm_dir):
    for args in (
        _args(llm_dir, decoder="transformer"),
        _args(llm_dir, postencoder=None),
        _args(llm_dir, postencoder="length_adaptor"),
        _args(None),
    ):
        before = dict(args.postencoder_conf)
        assert fill_llm_dependent_conf(args) == {} and args.postencoder_conf == before


def test_auto_without_an_llm_names_the_key(llm_dir, tmp_path):
    with pytest.raises(ValueError, match=r"postencoder_conf.output_size: 'auto' .*decoder 'transformer' has no LLM"):
        fill_llm_dependent_conf(_args(llm_dir, decoder="transformer", post_conf={"output_size": "auto"}))
    with pytest.raises(ValueError, match=r"postencoder_conf.output_size: 'auto' .*decoder_conf.llm_path is not set"):
        fill_llm_dependent_conf(_args(None, post_conf={"output_size": "auto"}))
    with pytest.raises(LlmLoadError, match="missing_llm.*does not exist"):
        fill_llm_dependent_conf(_args(tmp_path / "missing_llm"))


def _usage_dir(llm_dir, tmp_path, usage):
    import json
    import shutil

    d = tmp_path / "llm_with_usage"
    shutil.copytree(llm_dir, d)
    (d / "llm_usage.json").write_text(json.dumps(usage))
    return d


def test_usage_defaults_are_recorded_in_decoder_conf(llm_dir, tmp_path):
    usage = {
        "framing": {"start": ["<s>"], "end": ["</s>"]},
        "text_form": {"case": "sentence", "punctuation": "final_period"},
    }
    d = _usage_dir(llm_dir, tmp_path, usage)
    args = _args(d, post_conf={"output_size": 48})
    args.decoder_conf["text_form"] = {"recipe_case": "upper"}  # what asr_train infers
    filled = fill_llm_dependent_conf(args)
    assert args.decoder_conf["text_start"] == ["<s>"] and args.decoder_conf["text_end"] == ["</s>"]
    assert args.decoder_conf["text_form"] == {"case": "sentence", "punctuation": "final_period", "recipe_case": "upper"}
    assert set(filled) == {"decoder_conf.text_start", "decoder_conf.text_end", "decoder_conf.text_form"}
    # a second pass (config.yaml read back at decoding) changes nothing
    assert fill_llm_dependent_conf(args) == {}


def test_usage_chat_template_is_recorded_and_config_values_win(llm_dir, tmp_path):
    usage = {
        "framing": {"start": ["<s>"], "end": ["</s>"]},
        "llm_asr": {"chat_template": True},
        "text_form": {"case": "lower"},
    }
    d = _usage_dir(llm_dir, tmp_path, usage)
    args = _args(d, post_conf={"output_size": 48})
    fill_llm_dependent_conf(args)
    assert args.decoder_conf["chat_template"] is True and "text_start" not in args.decoder_conf
    args = _args(d, post_conf={"output_size": 48})
    args.decoder_conf.update(chat_template=False, text_form={"case": "as_is"})
    fill_llm_dependent_conf(args)
    assert args.decoder_conf["chat_template"] is False
    assert args.decoder_conf["text_start"] == ["<s>"]
    assert args.decoder_conf["text_form"] == {"case": "as_is"}


def test_no_usage_file_records_nothing(llm_dir):
    args = _args(llm_dir, post_conf={"output_size": 48})
    assert fill_llm_dependent_conf(args) == {}
    assert args.decoder_conf == {"llm_path": str(llm_dir)}
