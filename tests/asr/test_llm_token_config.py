"""check_llm_token_config: token strings ESPnet would misread are refused, naming key and file."""

import pytest
from tiny_models import save_tiny_llm

from espnet_llm_plugin.asr.llm_token_config import check_llm_token_config
from espnet_llm_plugin.config_check import ConfigError


@pytest.fixture(scope="module")
def task():
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    return LlmASRTask


TINY_WORDS = ["<pad>", "<unk>", "<s>", "</s>", "the", "cat", "sat"]


@pytest.fixture(scope="module")
def tiny_llm(tmp_path_factory):
    d = save_tiny_llm(
        tmp_path_factory.mktemp("tiny_llm"),
        TINY_WORDS,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )
    (d / "tokens.txt").write_text("".join(w + "\n" for w in TINY_WORDS))
    return d


def _token_check(tmp_path, task, llm_dir, yaml_text, token_list=None, extra=()):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(yaml_text.replace("LLM_DIR", str(llm_dir)))
    token_list = token_list or llm_dir / "tokens.txt"
    args = task.get_parser().parse_args(["--config", str(cfg), "--token_list", str(token_list), *extra])
    check_llm_token_config(args, cfg)
    return cfg


LLM_YAML = "model: llm_asr\ndecoder: llm\ndecoder_conf:\n  llm_path: LLM_DIR\n"


def test_llm_token_config_accepts_unset_and_the_end_token(tmp_path, task, tiny_llm):
    _token_check(tmp_path, task, tiny_llm, LLM_YAML)
    _token_check(tmp_path, task, tiny_llm, LLM_YAML + "model_conf:\n  sym_sos: </s>\n  sym_eos: </s>\n")
    _token_check(
        tmp_path, task, tiny_llm, LLM_YAML, extra=["--decoder_conf", "text_end=[cat]", "--model_conf", "sym_eos=cat"]
    )


def test_symbol_missing_from_token_list_names_key_and_file(tmp_path, task, tiny_llm):
    with pytest.raises(
        ConfigError, match=r"train\.yaml: model_conf\.sym_eos: '<sos/eos>' is not in the token list .*tokens\.txt"
    ):
        _token_check(tmp_path, task, tiny_llm, LLM_YAML + "model_conf:\n  sym_eos: <sos/eos>\n")
    # also without an LLM decoder (ESPnet would silently take the last id)
    with pytest.raises(ConfigError, match=r"command line: model_conf\.sym_sos: 'x' is not in the token list"):
        _token_check(tmp_path, task, tiny_llm, "encoder: transformer\n", extra=["--model_conf", "sym_sos=x"])


def test_symbol_other_than_the_end_token_is_refused(tmp_path, task, tiny_llm):
    with pytest.raises(
        ConfigError, match=r"train\.yaml: model_conf\.sym_eos: '<s>' is not the LLM decoder's end token '</s>'"
    ):
        _token_check(tmp_path, task, tiny_llm, LLM_YAML + "model_conf:\n  sym_eos: <s>\n")


def test_framing_and_text_form_are_checked(tmp_path, task, tiny_llm):
    with pytest.raises(ConfigError, match=r"train\.yaml: .*decoder_conf\.text_start/text_end.*'<\|endoftext\|>'"):
        _token_check(tmp_path, task, tiny_llm, LLM_YAML + "  text_end: ['<|endoftext|>']\n")
    with pytest.raises(ConfigError, match=r"command line: .*decoder_conf\.text_form.*'Title'"):
        _token_check(tmp_path, task, tiny_llm, LLM_YAML, extra=["--decoder_conf", "text_form={case: Title}"])


@pytest.mark.real_model
def test_smollm2_refuses_sym_eos_not_in_vocabulary(tmp_path, task, smollm2_dir, smollm2):
    """Issue 14.1: the shipped configs said '</s>', which SmolLM2 lacks (ESPnet took id 49151)."""
    _, tokenizer = smollm2
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("".join(t + "\n" for t in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))))
    with pytest.raises(ConfigError, match=r"train\.yaml: model_conf\.sym_eos: '</s>' is not in the token list"):
        _token_check(tmp_path, task, smollm2_dir, LLM_YAML + "model_conf:\n  sym_eos: </s>\n", token_list=tokens)
    # without a token list file yet (stage order), the LLM's vocabulary still refuses it
    with pytest.raises(
        ConfigError, match=r"train\.yaml: model_conf\.sym_eos: '</s>' is not a token of the LLM tokenizer"
    ):
        _token_check(
            tmp_path,
            task,
            smollm2_dir,
            LLM_YAML + "model_conf:\n  sym_eos: </s>\n",
            token_list=tmp_path / "missing.txt",
        )
    _token_check(tmp_path, task, smollm2_dir, LLM_YAML, token_list=tokens)
