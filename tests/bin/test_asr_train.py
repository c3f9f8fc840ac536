"""asr_train end to end on tiny data: ESPnet's own trainer with an LLM decoder under LoRA writes
epoch files that hold the trained parameters plus a base reference (not the LLM), resumes from
them (strict loading), averages them, and asr_inference decodes from the average; a base
changed afterwards is refused by ESPnet's model loading.
"""

import logging
import os

import numpy as np
import pytest
import torch
from tiny_models import save_tiny_llm

WORDS = [
    "<pad>",
    "<unk>",
    "<s>",
    "</s>",
] + "the a cat cats dog sat on mat ran to home big small red blue one two".split()

CONFIG = """
frontend_conf: {n_fft: 256, hop_length: 128, n_mels: 20}
encoder: transformer
encoder_conf: {output_size: 16, attention_heads: 2, linear_units: 16, num_blocks: 1, input_layer: conv2d}
postencoder: conv1d_mlp_adapter
postencoder_conf: {output_size: 32, num_conv_layers: 1, stride: 2}
decoder: llm
decoder_conf: {llm_path: LLM_DIR, prompt: "the", finetune: lora, lora_r: 4, lora_alpha: 8}
model: llm_asr
model_conf: {ctc_weight: 0.0, sym_sos: "</s>", sym_eos: "</s>"}
optim: adam
optim_conf: {lr: 0.01}
batch_type: unsorted
batch_size: 3
num_workers: 0
num_att_plot: 0
best_model_criterion: [[valid, acc, max]]
keep_nbest_models: 2
seed: 0
"""

SENTENCES = ["the cat sat", "a dog ran home", "the big red mat", "one small blue dog", "two cats ran", "the mat"]


def save_llm(d):
    """A random Llama whose WordLevel tokenizer is ``WORDS`` (the ESPnet token list)."""
    return save_tiny_llm(
        d,
        WORDS,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=256,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
    )


def write_data(d, utts, rng):
    import soundfile as sf

    d.mkdir()
    wav, text, shape = [], [], []
    for i, utt in enumerate(utts):
        n = 4000 + 800 * i
        sf.write(d / f"{utt}.wav", (rng.standard_normal(n) * 0.1).astype(np.float32), 16000)
        wav.append(f"{utt} {d / (utt + '.wav')}")
        text.append(f"{utt} {SENTENCES[i % len(SENTENCES)]}")
        shape.append(f"{utt} {n}")
    for name, lines in (("wav.scp", wav), ("text", text), ("speech_shape", shape)):
        (d / name).write_text("\n".join(lines) + "\n")
    return d


def train(root, llm, max_epoch, *extra):
    from espnet_llm_plugin.bin.asr_train import main

    argv = [
        "--config",
        str(root / "train.yaml"),
        "--output_dir",
        str(root / "exp"),
        "--ngpu",
        "0",
        "--token_list",
        str(root / "tokens.txt"),
        "--token_type",
        "hugging_face",
        "--bpemodel",
        str(llm),
        "--max_epoch",
        str(max_epoch),
        "--resume",
        "true",
        "--use_matplotlib",
        "false",
        "--use_tensorboard",
        "false",
        *extra,
    ]
    for split in ("train", "valid"):
        argv += [
            "--" + split + "_data_path_and_name_and_type",
            f"{root / split / 'wav.scp'},speech,sound",
            "--" + split + "_data_path_and_name_and_type",
            f"{root / split / 'text'},text,text",
            "--" + split + "_shape_file",
            str(root / split / "speech_shape"),
        ]
    main(argv)


def prepare(root):
    """Tiny LLM, data, token list and config under ``root``; returns the LLM dir."""
    llm = save_llm(root / "llm")
    rng = np.random.default_rng(0)
    write_data(root / "train", [f"tr{i}" for i in range(6)], rng)
    write_data(root / "valid", [f"dv{i}" for i in range(2)], rng)
    (root / "tokens.txt").write_text("\n".join(WORDS) + "\n")
    (root / "train.yaml").write_text(CONFIG.replace("LLM_DIR", str(llm)))
    return llm


class WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: a checkpoint that runs code when loaded."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_train_resume_average_decode_with_small_checkpoints(tmp_path, caplog):
    from espnet_llm_plugin.core.base_weights import base_content_hash, checkpoint_base_reference
    from espnet_llm_plugin.espnet_fixes import load_checkpoint

    llm = prepare(tmp_path)
    exp = tmp_path / "exp"

    train(tmp_path, llm, max_epoch=2)
    reference = (base_content_hash(llm), str(llm))
    llm_keys = {k for k in torch.load(exp / "1epoch.pth", weights_only=True) if k.startswith("decoder.llm.")}
    for epoch in (1, 2):
        sd = torch.load(exp / f"{epoch}epoch.pth", weights_only=True)
        assert checkpoint_base_reference(sd, "decoder.") == reference
        # of the LLM only its LoRA adapters are stored
        assert all(".lora_" in k for k in sd if k.startswith("decoder.llm.")), epoch
    assert llm_keys and all(".lora_" in k for k in llm_keys)

    # resume: ESPnet loads checkpoint.pth with strict=True (the base keys are filled from the
    # loaded LLM) and trains epoch 3 only
    caplog.clear()
    with caplog.at_level(logging.INFO):
        train(tmp_path, llm, max_epoch=3)
    assert "The training was resumed" in caplog.text
    assert (exp / "3epoch.pth").is_file()
    # our checkpoints load weights-only (ESPnet's resume just did), and none is left half-written
    assert load_checkpoint(exp / "checkpoint.pth")["reporter"]["epoch"] == 3
    assert not [p.name for p in exp.iterdir() if p.name.endswith(".tmp")]

    # ESPnet averaged the two best epochs at the end of training
    avg = torch.load(exp / "valid.acc.ave_2best.pth", weights_only=True)
    assert checkpoint_base_reference(avg, "decoder.") == reference
    assert {k for k in avg if k.startswith("decoder.llm.")} == llm_keys

    from espnet_llm_plugin.bin.asr_inference import main as decode

    out = tmp_path / "decode"
    decode(
        [
            "--asr_train_config",
            str(exp / "config.yaml"),
            "--asr_model_file",
            str(exp / "valid.acc.ave.pth"),
            "--output_dir",
            str(out),
            "--beam_size",
            "2",
            "--ctc_weight",
            "0",
            "--lm_weight",
            "0",
            "--maxlenratio",
            "0.0",
            "--data_path_and_name_and_type",
            f"{tmp_path / 'valid' / 'wav.scp'},speech,sound",
        ]
    )
    hyps = (out / "1best_recog" / "token_int").read_text().splitlines()
    assert sorted(h.split()[0] for h in hyps) == ["dv0", "dv1"]

    # --quantize_asr_model quantizes the LLM's base layers; its LoRA adapters stay in float
    decode(
        [
            "--asr_train_config",
            str(exp / "config.yaml"),
            "--asr_model_file",
            str(exp / "valid.acc.ave.pth"),
            "--output_dir",
            str(tmp_path / "decode_q"),
            "--beam_size",
            "2",
            "--ctc_weight",
            "0",
            "--lm_weight",
            "0",
            "--quantize_asr_model",
            "true",
            "--data_path_and_name_and_type",
            f"{tmp_path / 'valid' / 'wav.scp'},speech,sound",
        ]
    )
    hyps = (tmp_path / "decode_q" / "1best_recog" / "token_int").read_text().splitlines()
    assert sorted(h.split()[0] for h in hyps) == ["dv0", "dv1"]

    # a model file that would run code is refused by name, and runs nothing
    marker, crafted = tmp_path / "marker", tmp_path / "crafted.pth"
    state = torch.load(exp / "valid.acc.ave.pth", weights_only=True)
    state["payload"] = WritesMarker(marker)
    torch.save(state, crafted)
    with pytest.raises(SystemExit, match=rf"asr_inference: error: {crafted}: refused to load"):
        decode(
            [
                "--asr_train_config",
                str(exp / "config.yaml"),
                "--asr_model_file",
                str(crafted),
                "--output_dir",
                str(tmp_path / "decode_x"),
                "--beam_size",
                "1",
                "--data_path_and_name_and_type",
                f"{tmp_path / 'valid' / 'wav.scp'},speech,sound",
            ]
        )
    assert not marker.exists()

    # the base changed in place (one weight): ESPnet's loader passes our refusal on
    from transformers import AutoModelForCausalLM

    from espnet_llm_plugin.core.base_weights import BaseMismatchError
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    model = AutoModelForCausalLM.from_pretrained(str(llm))
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1.0
    model.save_pretrained(llm)
    with pytest.raises(BaseMismatchError, match="decoder_conf.llm_path"):
        LlmASRTask.build_model_from_file(exp / "config.yaml", exp / "valid.acc.ave.pth", "cpu")


def test_crafted_truncated_and_concurrent_outputs_are_refused_by_name(tmp_path):
    from espnet_llm_plugin.fileio.atomic import exclusive_dir_lock

    llm = prepare(tmp_path)
    exp = tmp_path / "exp"
    marker, crafted = tmp_path / "marker", tmp_path / "crafted.pth"
    torch.save({"decoder.payload": WritesMarker(marker)}, crafted)

    # --init_param
    with pytest.raises(SystemExit, match=rf"asr_train: error: {crafted}: refused to load"):
        train(tmp_path, llm, 1, "--init_param", str(crafted))
    # --resume from a crafted checkpoint.pth
    exp.mkdir(exist_ok=True)
    (exp / "checkpoint.pth").write_bytes(crafted.read_bytes())
    with pytest.raises(SystemExit, match=rf"asr_train: error: {exp / 'checkpoint.pth'}: refused to load"):
        train(tmp_path, llm, 1)
    assert not marker.exists()

    # --resume from a checkpoint.pth cut short (a full disk before writes were atomic)
    torch.save({"model": {"w": torch.randn(4000)}}, exp / "checkpoint.pth")
    data = (exp / "checkpoint.pth").read_bytes()
    (exp / "checkpoint.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(SystemExit, match=rf"{exp / 'checkpoint.pth'}: truncated or corrupt checkpoint.*remove it"):
        train(tmp_path, llm, 1)

    # a second training into the same directory
    (exp / "checkpoint.pth").unlink()
    with exclusive_dir_lock(exp, "asr_train"):
        with pytest.raises(SystemExit, match=rf"{exp}: another asr_train is writing .*pid {os.getpid()}"):
            train(tmp_path, llm, 1)
    assert not (exp / "1epoch.pth").exists()
