"""LlmASRTask: what spawned DDP workers and model loading see."""

import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from tiny_models import save_tiny_llm


def test_spawned_worker_sees_our_components():
    # ESPnet's multiprocessing DDP starts workers with target=cls.main_worker under the
    # "spawn" start method: the child unpickles that target in a fresh interpreter.
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    payload = pickle.dumps(LlmASRTask.main_worker)
    child = (
        "import pickle, sys\n"
        "target = pickle.loads(sys.stdin.buffer.read())\n"
        "import espnet2.tasks.asr as t\n"
        "print(t.postencoder_choices.classes['conv1d_mlp_adapter'].__name__, target.__self__.__name__)\n"
    )
    proc = subprocess.run([sys.executable, "-c", child], input=payload, capture_output=True, timeout=300)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert proc.stdout.decode().split() == ["Conv1dMlpAdapter", "LlmASRTask"]


def test_model_with_our_component_builds_from_config(tmp_path):
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    token_list = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    parser = LlmASRTask.get_parser()
    args = parser.parse_args(
        [
            "--token_list",
            str(tmp_path / "tokens.txt"),
            "--output_dir",
            str(tmp_path),
            "--encoder",
            "transformer",
            "--encoder_conf",
            "output_size=16",
            "--encoder_conf",
            "linear_units=16",
            "--encoder_conf",
            "num_blocks=1",
            "--encoder_conf",
            "attention_heads=2",
            "--postencoder",
            "conv1d_mlp_adapter",
            "--postencoder_conf",
            "output_size=24",
            "--decoder",
            "transformer",
            "--decoder_conf",
            "num_blocks=1",
            "--decoder_conf",
            "linear_units=16",
            "--decoder_conf",
            "attention_heads=2",
            "--frontend_conf",
            "n_mels=20",
        ]
    )
    (tmp_path / "tokens.txt").write_text("\n".join(token_list) + "\n")
    args.token_list = str(tmp_path / "tokens.txt")
    model = LlmASRTask.build_model(args)
    assert type(model.postencoder).__name__ == "Conv1dMlpAdapter"
    assert model.postencoder.output_size() == 24


TEMPLATE = Path(__file__).resolve().parents[2] / "conf" / "asr" / "llm_hf_lora.yaml"


def _llm_args(llm_dir, tmp_path, config, *extra):
    """Task arguments of ``config`` over the LLM's vocabulary, as the recipe's stage 11 gives them."""
    from espnet_llm_plugin.bin.make_token_list import hf_token_list

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(hf_token_list(llm_dir)) + "\n")
    return [
        "--config",
        str(config),
        "--token_list",
        str(tokens),
        "--token_type",
        "hugging_face",
        "--bpemodel",
        str(llm_dir),
        "--decoder_conf",
        f"llm_path={llm_dir}",
        "--normalize",
        "none",
        "--output_dir",
        str(tmp_path / "exp"),
        *extra,
    ]


@pytest.mark.real_model
def test_template_config_gets_the_llm_width_and_records_it(smollm2_dir, tmp_path):
    # conf/asr/llm_hf_lora.yaml names no width: SmolLM2's 576 is read from its directory,
    # lands in the experiment's config.yaml, and decoding rebuilds the same model from there
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    LlmASRTask.main(cmd=_llm_args(smollm2_dir, tmp_path, TEMPLATE, "--dry_run", "true"))
    config = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert config["postencoder_conf"] == {"num_conv_layers": 1, "kernel_size": 3, "stride": 2, "output_size": 576}
    model, _ = LlmASRTask.build_model_from_file(tmp_path / "exp" / "config.yaml", None, "cpu")
    assert model.postencoder.output_size() == 576 and model.decoder.hidden_size == 576
    with torch.no_grad():
        out, lens = model.postencoder(torch.randn(1, 9, 128), torch.tensor([9]))
    assert out.shape == (1, 4, 576)


@pytest.mark.real_model
def test_wrong_explicit_width_still_fails_with_the_right_value(smollm2_dir, tmp_path):
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    args = LlmASRTask.get_parser().parse_args(
        _llm_args(smollm2_dir, tmp_path, TEMPLATE, "--postencoder_conf", "output_size=128")
    )
    with pytest.raises(
        ValueError, match=r"encoder_output_size 128 != hidden size 576 .*set postencoder_conf.output_size to 576"
    ):
        LlmASRTask.build_model(args)


def test_shipped_tiny_config_with_its_explicit_width_still_builds(tmp_path):
    # conf/asr/llm_tiny.yaml states the width (128): kept as written
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    llm = save_tiny_llm(
        tmp_path / "llm",
        "<unk> <s> </s> a b".split(),
        seed=None,
        special_tokens=dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>"),
        hidden_size=128,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
    )
    config = Path(__file__).resolve().parents[2] / "egs2" / "synthetic" / "llm_asr1" / "conf" / "asr" / "llm_tiny.yaml"
    args = LlmASRTask.get_parser().parse_args(_llm_args(llm, tmp_path, config))
    model = LlmASRTask.build_model(args)
    assert model.postencoder.output_size() == 128 and args.postencoder_conf["output_size"] == 128
