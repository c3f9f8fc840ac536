"""Config pre-check: unknown keys are named with the file."""

from pathlib import Path

import pytest

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
