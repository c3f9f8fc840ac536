"""LlmASRTask: what spawned DDP workers and model loading see."""

import pickle
import subprocess
import sys


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
    args = parser.parse_args([
        "--token_list", str(tmp_path / "tokens.txt"), "--output_dir", str(tmp_path),
        "--encoder", "transformer", "--encoder_conf", "output_size=16", "--encoder_conf", "linear_units=16",
        "--encoder_conf", "num_blocks=1", "--encoder_conf", "attention_heads=2",
        "--postencoder", "conv1d_mlp_adapter", "--postencoder_conf", "output_size=24",
        "--decoder", "transformer", "--decoder_conf", "num_blocks=1", "--decoder_conf", "linear_units=16",
        "--decoder_conf", "attention_heads=2", "--frontend_conf", "n_mels=20",
    ])
    (tmp_path / "tokens.txt").write_text("\n".join(token_list) + "\n")
    args.token_list = str(tmp_path / "tokens.txt")
    model = LlmASRTask.build_model(args)
    assert type(model.postencoder).__name__ == "Conv1dMlpAdapter"
    assert model.postencoder.output_size() == 24
