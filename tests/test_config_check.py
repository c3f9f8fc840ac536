"""Config pre-check: unknown keys are named with the file."""

from pathlib import Path

import pytest
from tiny_models import save_tiny_llm

from espnet_llm_plugin.config_check import ConfigError, check_task_config, load_yaml_mapping


@pytest.fixture(scope="module")
def task():
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    return LlmASRTask


def _check(tmp_path, task, text):
    cfg = tmp_path / "train.yaml"
    cfg.write_text(text)
    check_task_config(cfg, task.get_parser(), task.class_choices_list)
    return cfg


def test_valid_config_passes(tmp_path, task):
    _check(tmp_path, task, "encoder: transformer\nencoder_conf:\n  num_blocks: 2\nmax_epoch: 3\n")


def test_unknown_top_level_key_names_file_and_key(tmp_path, task):
    with pytest.raises(ConfigError) as e:
        _check(tmp_path, task, "max_epoc: 3\n")
    assert "train.yaml" in str(e.value) and "'max_epoc'" in str(e.value)
    assert "max_epoch" in str(e.value)  # suggestion


def test_unknown_nested_key_names_path(tmp_path, task):
    with pytest.raises(ConfigError, match=r"encoder_conf\.num_blokcs.*num_blocks"):
        _check(tmp_path, task, "encoder: transformer\nencoder_conf:\n  num_blokcs: 2\n")


def test_unknown_choice_value(tmp_path, task):
    with pytest.raises(ConfigError, match="'transfomer' is not a known encoder"):
        _check(tmp_path, task, "encoder: transfomer\n")


def test_our_component_conf_is_checked(tmp_path, task):
    with pytest.raises(ConfigError, match="postencoder_conf.strid"):
        _check(tmp_path, task, "postencoder: conv1d_mlp_adapter\npostencoder_conf:\n  strid: 2\n")


def test_not_a_mapping_and_bad_yaml(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="x.yaml: expected a mapping"):
        load_yaml_mapping(p)
    p.write_text("a: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml_mapping(p)
    with pytest.raises(ConfigError, match="not found"):
        load_yaml_mapping(tmp_path / "missing.yaml")


REPO = Path(__file__).resolve().parents[1]
# the top-level templates and every recipe's own configs (conf/{asr,decode,tuning})
SHIPPED = sorted(REPO.glob("conf/**/*.yaml")) + sorted(REPO.glob("egs2/*/llm_asr1/conf/**/*.yaml"))


def _is_decode_config(path: Path) -> bool:
    return "decode" in path.parts or "beam" in path.name


def _shipped_id(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.mark.parametrize("path", [p for p in SHIPPED if not _is_decode_config(p)], ids=_shipped_id)
def test_shipped_training_configs_pass(path, task):
    """Every training YAML (templates and recipes') names known components and only their options."""
    check_task_config(path, task.get_parser(), task.class_choices_list)


@pytest.mark.parametrize("path", [p for p in SHIPPED if _is_decode_config(p)], ids=_shipped_id)
def test_shipped_decode_configs_pass(path, tmp_path):
    """Every decode YAML (recipes' conf/) sets only ESPnet's asr_inference options and ours, with
    values our option parser accepts."""
    import yaml
    from espnet2.bin.asr_inference import get_parser

    from espnet_llm_plugin.bin.asr_inference import split_extra_options

    cmd, _ = split_extra_options(["--config", str(path)], tmp_path, get_parser())  # types checked too
    left_for_espnet = yaml.safe_load(Path(cmd[1]).read_text())
    espnet_options = {a.dest for a in get_parser()._actions}
    assert set(left_for_espnet) <= espnet_options, set(left_for_espnet) - espnet_options


# ---------------------------------------------------------------- token strings (issue 14.1)
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
    from espnet_llm_plugin.config_check import check_llm_token_config

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


def test_shipped_llm_configs_set_no_sos_eos_string():
    """Defaults come from the LLM's tokenizer/framing, not a hard-coded '</s>'."""
    for path in [p for p in SHIPPED if p.name.startswith("llm") and not _is_decode_config(p)]:
        conf = load_yaml_mapping(path)
        model_conf = conf.get("model_conf") or {}
        assert "sym_sos" not in model_conf and "sym_eos" not in model_conf, path.name


# ---------------------------------------------------------------- value types (issue 15)
@pytest.mark.parametrize(
    "text, match",
    [
        ("max_epoch: ten\n", r"train\.yaml: max_epoch: expected int, got 'ten' \(str\)"),
        ("batch_size: '32'\n", r"train\.yaml: batch_size: expected int, got '32' \(str\)"),
        ("use_amp: 'yes'\n", r"train\.yaml: use_amp: expected bool \(true/false\), got 'yes' \(str\)"),
        ("patience: 2.5\n", r"train\.yaml: patience: expected int or null, got 2.5 \(float\)"),
        (
            "decoder: llm\ndecoder_conf:\n  llm_path: x\n  lora_r: eight\n",
            r"train\.yaml: decoder_conf\.lora_r: expected int, got 'eight' \(str\)",
        ),
        (
            "decoder: llm\ndecoder_conf:\n  llm_path: x\n  text_start: <s>\n",
            r"decoder_conf\.text_start: expected a list or null, got '<s>' \(str\)",
        ),
        ("decoder: llm\ndecoder_conf:\n  llm_path: 7\n", r"decoder_conf\.llm_path: expected str, got 7 \(int\)"),
        (
            "model: llm_asr\nmodel_conf:\n  ctc_weight: 3e-1\n",  # YAML reads 3e-1 as a string
            r"train\.yaml: model_conf\.ctc_weight: expected float, got '3e-1' \(str\) \(YAML 1.1 reads",
        ),
        (
            "model: llm_asr\nmodel_conf:\n  matching_weight: true\n",
            r"model_conf\.matching_weight: expected float, got True",
        ),
    ],
)
def test_wrong_value_types_name_key_file_type_and_value(tmp_path, task, text, match):
    with pytest.raises(ConfigError, match=match):
        _check(tmp_path, task, text)


def test_right_value_types_pass(tmp_path, task):
    _check(
        tmp_path,
        task,
        "max_epoch: 3\nbatch_bins: 1.0e+6\npatience: null\nuse_amp: false\n"
        "keep_nbest_models: [3, 5]\nmodel: llm_asr\nmodel_conf:\n  ctc_weight: 0\n"
        "  matching_weight: 0.5\ndecoder: llm\ndecoder_conf:\n  llm_path: x\n  lora_r: 8\n"
        "  max_context: null\n  text_end: ['</s>']\n",
    )


def test_decode_config_value_types_name_the_file(tmp_path):
    from espnet2.bin.asr_inference import get_parser

    from espnet_llm_plugin.bin.asr_inference import split_extra_options

    cfg = tmp_path / "decode.yaml"
    cfg.write_text("beam_size: ten\n")
    with pytest.raises(ConfigError, match=r"decode\.yaml: beam_size: expected int, got 'ten'"):
        split_extra_options(["--config", str(cfg)], tmp_path, get_parser())
    cfg.write_text("beam_size: 4\nknnlm_k: many\n")  # ours: the file is named too
    with pytest.raises(ConfigError, match=r"decode\.yaml: decoding option knnlm_k must be of type int"):
        split_extra_options(["--config", str(cfg)], tmp_path, get_parser())
