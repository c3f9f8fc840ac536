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


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[1] / "conf" / "asr").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_training_configs_pass(path, task):
    """Every training YAML in conf/asr names known components and only their options."""
    check_task_config(path, task.get_parser(), task.class_choices_list)


@pytest.mark.parametrize(
    "path", sorted((Path(__file__).resolve().parents[1] / "conf" / "decode").glob("*.yaml")),
    ids=lambda p: p.name,
)
def test_shipped_decode_configs_pass(path, tmp_path):
    """Every decode YAML in conf/ sets only ESPnet's asr_inference options and ours, with
    values our option parser accepts."""
    import yaml
    from espnet2.bin.asr_inference import get_parser

    from espnet_llm_plugin.bin.asr_inference import split_extra_options

    cmd, _ = split_extra_options(["--config", str(path)], tmp_path)
    left_for_espnet = yaml.safe_load(Path(cmd[1]).read_text())
    espnet_options = {a.dest for a in get_parser()._actions}
    assert set(left_for_espnet) <= espnet_options, set(left_for_espnet) - espnet_options
