"""asr_inference: our decoding options are taken out of the command line and the YAML."""

import yaml

from espnet_llm_plugin.bin.asr_inference import split_extra_options


def test_options_from_yaml_and_command_line(tmp_path):
    cfg = tmp_path / "decode.yaml"
    cfg.write_text("beam_size: 4\nno_repeat_ngram_size: 3\n")
    cmd, extra = split_extra_options(["--config", str(cfg), "--nbest", "2"], tmp_path)
    assert extra.no_repeat_ngram_size == 3
    filtered = cmd[cmd.index("--config") + 1]
    assert filtered != str(cfg) and yaml.safe_load(open(filtered)) == {"beam_size": 4}
    assert cmd[-2:] == ["--nbest", "2"]
    cmd, extra = split_extra_options([f"--config={cfg}", "--no_repeat_ngram_size=2"], tmp_path)
    assert extra.no_repeat_ngram_size == 2 and cmd[0].startswith("--config=") and len(cmd) == 1


def test_config_without_our_keys_is_passed_unchanged(tmp_path):
    cfg = tmp_path / "decode.yaml"
    cfg.write_text("beam_size: 4\n")
    cmd, extra = split_extra_options(["--config", str(cfg)], tmp_path)
    assert cmd == ["--config", str(cfg)] and extra.no_repeat_ngram_size == 0


def test_units_and_decoding_method_options(tmp_path):
    import pytest

    cfg = tmp_path / "decode.yaml"
    cfg.write_text("knnlm_units_from_data: true\ndecoding_method: hf_generate\n")
    cmd, extra = split_extra_options(["--config", str(cfg)], tmp_path)
    assert extra.knnlm_units_from_data is True and extra.decoding_method == "hf_generate"
    _, extra = split_extra_options(["--knnlm_units_from_data", "false"], tmp_path)
    assert extra.knnlm_units_from_data is False
    with pytest.raises(ValueError, match="knnlm_units_from_data"):
        split_extra_options(["--knnlm_units_from_data", "maybe"], tmp_path)
    cfg.write_text("knnlm_units_from_data: 1\n")
    with pytest.raises(ValueError, match="true or false"):
        split_extra_options(["--config", str(cfg)], tmp_path)
