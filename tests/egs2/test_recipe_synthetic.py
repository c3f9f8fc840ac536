"""The demo recipe end to end on a tiny corpus and a tiny model (stages 1-13).

Then the trained baseline decodes through our asr_inference (done by the recipe) and
through ESPnet's own ``espnet2.bin.asr_inference`` with the plugin registered, and the
stages skip complete outputs on a re-run.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

TINY_MODEL = """
frontend_conf: {n_fft: 512, hop_length: 160, n_mels: 40}
normalize: global_mvn
encoder: transformer
encoder_conf: {output_size: 32, attention_heads: 2, linear_units: 64, num_blocks: 1, input_layer: conv2d6}
decoder: transformer
decoder_conf: {attention_heads: 2, linear_units: 64, num_blocks: 1}
model_conf: {ctc_weight: 0.3}
optim: adam
optim_conf: {lr: 0.002}
batch_type: folded
batch_size: 8
max_epoch: 2
num_workers: 0
best_model_criterion: [[valid, acc, max]]
keep_nbest_models: 2
"""

pytestmark = [
    pytest.mark.slow,
    pytest.mark.espeak,
]


def _run(recipe: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    return subprocess.run(["./run.sh", *args], cwd=recipe, capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def trained_recipe(tmp_path_factory, make_recipe):
    recipe = make_recipe(
        tmp_path_factory.mktemp("recipe"),
        {"conf/asr/tiny.yaml": TINY_MODEL, "conf/decode/beam3.yaml": "beam_size: 3\nctc_weight: 0.3\n"},
    )
    proc = _run(
        recipe,
        "--local_data_opts",
        "--num_train 48 --num_dev 8 --num_test 6 --num_target_test 4 --num_noise_train 4 "
        "--num_noise_test 3 --num_passages 5 --num_target_text 20 --num_target_dev 2 "
        "--num_target_memory 4",
        "--asr_config",
        "conf/asr/tiny.yaml",
        "--inference_config",
        "conf/decode/beam3.yaml",
        "--nbpe",
        "30",
        "--nbest",
        "3",
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return recipe, proc


def test_recipe_writes_results_table(trained_recipe):
    recipe, proc = trained_recipe
    results = (recipe / "exp" / "RESULTS.md").read_text()
    for test_set in ("test", "test_target", "test_noise"):
        assert f"| {test_set} |" in results
    assert "| WER % | sub | del | ins |" in results
    assert "| WER % |" in proc.stdout  # printed at the end
    decode = recipe / "exp" / "asr_tiny" / "decode_beam3_valid.acc.ave" / "test"
    assert (decode / "3best_recog" / "text").is_file()
    score = json.loads((decode / "score" / "result.json").read_text())
    assert score["wer"]["utterances"] == 6 and score["rtf"] > 0
    stats = next((recipe / "exp").glob("asr_stats_*"))
    assert json.loads((stats / "frontend.json").read_text())["frontend_conf"]["n_mels"] == 40


def test_rerun_skips_complete_stages(trained_recipe):
    recipe, _ = trained_recipe
    model = recipe / "exp" / "asr_tiny" / "valid.acc.ave.pth"
    mtime = model.stat().st_mtime
    proc = _run(
        recipe,
        "--stage",
        "2",
        "--stop_stage",
        "12",
        "--asr_config",
        "conf/asr/tiny.yaml",
        "--inference_config",
        "conf/decode/beam3.yaml",
        "--nbpe",
        "30",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "is complete, skipping" in proc.stdout and "exists, skipping" in proc.stdout
    assert model.stat().st_mtime == mtime


def test_espnet_own_inference_decodes_the_model_with_plugin_imported(trained_recipe, tmp_path):
    recipe, _ = trained_recipe
    exp = recipe / "exp" / "asr_tiny"
    code = (
        "import sys, espnet_llm_plugin; espnet_llm_plugin.register(); "
        "from espnet2.bin.asr_inference import main; main(sys.argv[1:])"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "--asr_train_config",
            str(exp / "config.yaml"),
            "--asr_model_file",
            str(exp / "valid.acc.ave.pth"),
            "--beam_size",
            "3",
            "--data_path_and_name_and_type",
            f"{recipe / 'dump/raw/test/wav.scp'},speech,sound",
            "--output_dir",
            str(tmp_path / "out"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=recipe,  # config.yaml paths are recipe-relative
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = (exp / "decode_beam3_valid.acc.ave" / "test" / "1best_recog" / "text").read_text()
    theirs = (tmp_path / "out" / "1best_recog" / "text").read_text()
    assert ours.split("\n")[0].split()[0] == theirs.split("\n")[0].split()[0]
    assert len(theirs.splitlines()) == 6


def test_unknown_config_key_stops_training_with_the_key_named(trained_recipe):
    recipe, _ = trained_recipe
    bad = recipe / "conf" / "asr" / "bad.yaml"
    bad.write_text((recipe / "conf" / "asr" / "tiny.yaml").read_text() + "encoder_conf_typo: 1\n")
    proc = _run(
        recipe,
        "--stage",
        "11",
        "--stop_stage",
        "11",
        "--asr_config",
        "conf/asr/bad.yaml",
        "--inference_config",
        "conf/decode/beam3.yaml",
        "--nbpe",
        "30",
    )
    assert proc.returncode != 0
    assert "see exp/asr_bad/logs/train.log" in proc.stderr, proc.stdout + proc.stderr
    log = (recipe / "exp" / "asr_bad" / "logs" / "train.log").read_text()
    assert "bad.yaml: unknown config key 'encoder_conf_typo'" in log
    assert not (recipe / "exp" / "asr_bad" / "valid.acc.ave.pth").exists()
