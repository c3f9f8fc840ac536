"""llm_asr.sh with ``--token_type hugging_face``: which models get ``decoder_conf.llm_path``.

An ESPnet transformer decoder over an LLM's vocabulary (the baseline of an LLM-ASR
comparison) takes no ``llm_path``; the LLM decoder does, and with the template config
``conf/asr/llm_hf_lora.yaml`` any Hugging Face causal LM runs through the recipe (the README's
"your own LLM" example, here with SmolLM2-135M-Instruct on a tiny corpus).
"""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from tiny_models import tiny_llama

REPO = Path(__file__).resolve().parents[2]
WORDS = "the a cat dog sat on mat ran to home big small red blue one two".split()

BASELINE = """
frontend_conf: {n_fft: 512, hop_length: 160, n_mels: 40}
normalize: global_mvn
encoder: transformer
encoder_conf: {output_size: 32, attention_heads: 2, linear_units: 64, num_blocks: 1, input_layer: conv2d}
decoder: transformer
decoder_conf: {attention_heads: 2, linear_units: 64, num_blocks: 1}
model_conf: {ctc_weight: 0.3}
optim: adam
optim_conf: {lr: 0.002}
batch_type: folded
batch_size: 4
max_epoch: 1
num_workers: 0
num_att_plot: 0
best_model_criterion: [[valid, acc, max]]
keep_nbest_models: 1
"""


def _tiny_llm(out_dir: Path) -> None:
    """A WordLevel tokenizer over WORDS and a random 2-layer Llama, saved like a user's LLM."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<unk>", "<s>", "</s>"] + WORDS)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    ).save_pretrained(out_dir)
    tiny_llama(
        0,
        vocab_size=len(vocab),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=128,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    ).save_pretrained(out_dir)


def _tiny_data(recipe: Path, sets: dict) -> None:
    """Kaldi data dirs of noise bursts (no espeak-ng needed) with WORDS transcripts; stage 1
    is marked done so the recipe starts from these."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    for name, count in sets.items():
        d = recipe / "data" / name
        (d / "wav").mkdir(parents=True)
        scp, text, spk = [], [], []
        for i in range(count):
            uid = f"spk1-{name}-{i:03d}"
            audio = rng.standard_normal(int(16000 * rng.uniform(0.8, 1.2))) * 0.1
            sf.write(d / "wav" / f"{uid}.wav", audio.astype(np.float32), 16000)
            scp.append(f"{uid} {d / 'wav' / uid}.wav")
            text.append(f"{uid} " + " ".join(rng.choice(WORDS, size=3)))
            spk.append(f"{uid} spk1")
        for fname, lines in (("wav.scp", scp), ("text", text), ("utt2spk", spk)):
            (d / fname).write_text("\n".join(lines) + "\n")
    (recipe / "data" / ".data_prep.done").touch()


def _logs(recipe: Path, proc: subprocess.CompletedProcess) -> str:
    logs = sorted(recipe.glob("exp/**/*.log"))
    tails = "".join(f"\n== {p}\n{p.read_text()[-1500:]}" for p in logs[-3:])
    return proc.stdout[-2000:] + proc.stderr[-2000:] + tails


@pytest.mark.slow
def test_transformer_baseline_over_the_llm_vocabulary_gets_no_llm_path(tmp_path, make_recipe, recipe_env):
    r = make_recipe(
        tmp_path, {"conf/asr/baseline.yaml": BASELINE, "conf/decode/beam2.yaml": "beam_size: 2\nctc_weight: 0.3\n"}
    )
    _tiny_llm(r / "my_llm")
    _tiny_data(r, {"train": 6, "dev": 2})
    proc = subprocess.run(
        [
            "./llm_asr.sh",
            "--stage",
            "2",
            "--stop_stage",
            "13",
            "--train_set",
            "train",
            "--valid_set",
            "dev",
            "--test_sets",
            "dev",
            "--nj",
            "1",
            "--inference_nj",
            "1",
            "--token_type",
            "hugging_face",
            "--llm_path",
            "my_llm",
            "--asr_config",
            "conf/asr/baseline.yaml",
            "--inference_config",
            "conf/decode/beam2.yaml",
            "--nbest",
            "1",
        ],
        cwd=r,
        capture_output=True,
        text=True,
        timeout=600,
        env=recipe_env,
    )
    # before the fix the statistics stage passed decoder_conf.llm_path to ESPnet's TransformerDecoder:
    # TypeError: __init__() got an unexpected keyword argument 'llm_path'
    assert proc.returncode == 0, _logs(r, proc)
    config = yaml.safe_load((r / "exp" / "asr_baseline" / "config.yaml").read_text())
    assert config["decoder"] == "transformer" and "llm_path" not in config["decoder_conf"]
    assert config["token_type"] == "hugging_face" and config["bpemodel"] == "my_llm"
    assert len(config["token_list"]) == 4 + len(WORDS)  # the LLM tokenizer's vocabulary
    res = json.loads(
        (r / "exp" / "asr_baseline" / "decode_beam2_valid.acc.ave" / "dev" / "score" / "result.json").read_text()
    )
    assert res["wer"]["utterances"] == 2 and res["missing_hypotheses"] == 0
    # an LLM decoder in the same recipe still gets llm_path, also when --asr_args picks it
    # over the YAML's decoder (the adapter width then comes from the LLM)
    (r / "conf" / "asr" / "plain.yaml").write_text("decoder: transformer\nnormalize: null\n")
    log = subprocess.run(
        [
            "./llm_asr.sh",
            "--stage",
            "10",
            "--stop_stage",
            "10",
            "--train_set",
            "train",
            "--valid_set",
            "dev",
            "--nj",
            "1",
            "--token_type",
            "hugging_face",
            "--llm_path",
            "my_llm",
            "--asr_config",
            "conf/asr/plain.yaml",
            "--asr_stats_dir",
            "exp/asr_stats_llm",
            "--asr_args",
            "--decoder llm --postencoder conv1d_mlp_adapter --model_conf ctc_weight=0.0",
        ],
        cwd=r,
        capture_output=True,
        text=True,
        timeout=600,
        env=recipe_env,
    )
    assert log.returncode == 0, _logs(r, log)
    command = (r / "exp" / "asr_stats_llm" / "logs" / "stats.1.log").read_text().split("\n", 1)[0]
    assert "--decoder_conf llm_path=my_llm" in command, command


@pytest.mark.slow
@pytest.mark.espeak
@pytest.mark.real_model
def test_readme_own_llm_example_runs_with_smollm2(tmp_path, make_recipe, recipe_env, smollm2_dir):
    # the README's "your own LLM" example at test size: a prepared HF directory as --llm_path,
    # the template config unchanged (its width and eos come from the LLM), stages 1-13
    template = (REPO / "conf" / "asr" / "llm_hf_lora.yaml").read_text()
    r = make_recipe(
        tmp_path,
        {
            "conf/asr/llm_hf_lora.yaml": template,
            "conf/decode/beam2.yaml": "beam_size: 2\nctc_weight: 0.0\nno_repeat_ngram_size: 3\n",
        },
    )
    proc = subprocess.run(
        [
            "./llm_asr.sh",
            "--train_set",
            "train",
            "--valid_set",
            "dev",
            "--test_sets",
            "test",
            "--nj",
            "1",
            "--inference_nj",
            "1",
            "--token_type",
            "hugging_face",
            "--llm_path",
            str(smollm2_dir),
            "--asr_config",
            "conf/asr/llm_hf_lora.yaml",
            "--inference_config",
            "conf/decode/beam2.yaml",
            "--nbest",
            "1",
            "--asr_args",
            "--max_epoch 1 --batch_type folded --batch_size 4 --num_workers 0 --keep_nbest_models 1",
            "--local_data_opts",
            "--num_train 8 --num_dev 2 --num_test 2 --num_target_test 1 --num_noise_train 1 "
            "--num_noise_dev 1 --num_noise_test 1 --num_passages 2 --num_target_text 4 --num_target_dev 1 "
            "--num_target_memory 1",
        ],
        cwd=r,
        capture_output=True,
        text=True,
        timeout=900,
        env=recipe_env,
    )
    assert proc.returncode == 0, _logs(r, proc)
    assert not (r / "exp" / "text_lm").exists()  # stage 5 trains no LM when --llm_path is given
    tokens = (r / "data" / "token_list" / f"hf_{smollm2_dir.name}" / "tokens.txt").read_text().splitlines()
    assert len(tokens) == 49152 and tokens[2] == "<|im_end|>"
    config = yaml.safe_load((r / "exp" / "asr_llm_hf_lora" / "config.yaml").read_text())
    assert config["decoder"] == "llm" and config["decoder_conf"]["llm_path"] == str(smollm2_dir)
    assert config["postencoder_conf"]["output_size"] == 576
    res = json.loads(
        (r / "exp" / "asr_llm_hf_lora" / "decode_beam2_valid.acc.ave" / "test" / "score" / "result.json").read_text()
    )
    assert res["wer"]["utterances"] == 2 and res["missing_hypotheses"] == 0
    assert "asr_llm_hf_lora" in (r / "exp" / "RESULTS.md").read_text()
