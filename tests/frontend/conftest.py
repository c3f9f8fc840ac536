"""Fixtures for the discrete-unit tests: tiny real wav data dirs, a tiny HF encoder dir, a tiny
ESPnet ASR model (config.yaml + .pth), all built on the fly."""

from pathlib import Path

import numpy as np
import pytest
import soundfile

SR = 16000


def make_wav_dir(root: Path, n: int = 6, seed: int = 0, short: bool = False) -> Path:
    """Kaldi data dir of sine/noise wavs (0.5-1.0 s); ``short`` adds a 10 ms utterance."""
    rng = np.random.default_rng(seed)
    (root / "wav").mkdir(parents=True, exist_ok=True)
    wav_scp, text = [], []
    for i in range(n):
        dur = rng.uniform(0.5, 1.0)
        t = np.arange(int(dur * SR)) / SR
        if i % 2 == 0:
            x = 0.5 * np.sin(2 * np.pi * rng.uniform(150, 900) * t)
        else:
            x = 0.3 * rng.standard_normal(t.size)
        utt = f"utt{i:02d}"
        soundfile.write(root / "wav" / f"{utt}.wav", x.astype(np.float32), SR)
        wav_scp.append(f"{utt} {root / 'wav' / (utt + '.wav')}")
        text.append(f"{utt} {'tone' if i % 2 == 0 else 'noise'} {i % 3}")
    if short:
        soundfile.write(root / "wav" / "tiny.wav", np.zeros(160, dtype=np.float32), SR)
        wav_scp.append(f"tiny {root / 'wav' / 'tiny.wav'}")
        text.append("tiny x")
    (root / "wav.scp").write_text("\n".join(sorted(wav_scp)) + "\n")
    (root / "text").write_text("\n".join(sorted(text)) + "\n")
    utts = sorted(line.split()[0] for line in wav_scp)
    (root / "utt2spk").write_text("".join(f"{u} {'spk' + u[-1:]}\n" for u in utts))
    return root


@pytest.fixture
def wav_dir(tmp_path) -> Path:
    return make_wav_dir(tmp_path / "data")


@pytest.fixture(scope="session")
def tiny_hubert_dir(tmp_path_factory) -> Path:
    import torch
    import transformers

    torch.manual_seed(0)
    cfg = transformers.HubertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        conv_dim=(16, 16),
        conv_kernel=(10, 3),
        conv_stride=(5, 2),
        conv_bias=True,
        num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=2,
    )
    path = tmp_path_factory.mktemp("hubert")
    transformers.AutoModel.from_config(cfg).save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_espnet_asr(tmp_path_factory, asr_task):
    """``(config.yaml, model.pth)`` of a randomly initialised 2-block Transformer ASR model,
    with a relative ``global_mvn`` stats file the way recipes write it."""
    import torch
    import yaml

    root = tmp_path_factory.mktemp("recipe")
    stats_dir = root / "exp" / "asr_stats" / "train"
    stats_dir.mkdir(parents=True)
    n_mels = 20
    np.savez(
        stats_dir / "feats_stats.npz", count=np.array(100.0), sum=np.zeros(n_mels), sum_square=np.full(n_mels, 100.0)
    )
    args = asr_task.ASRTask.get_parser().parse_args(
        [
            "--token_list",
            "unused",
            "--output_dir",
            str(root / "exp" / "asr"),
            "--frontend_conf",
            f"n_mels={n_mels}",
            "--frontend_conf",
            "hop_length=160",
            "--normalize",
            "global_mvn",
            "--normalize_conf",
            "stats_file=exp/asr_stats/train/feats_stats.npz",
            "--encoder",
            "transformer",
            "--encoder_conf",
            "output_size=16",
            "--encoder_conf",
            "linear_units=16",
            "--encoder_conf",
            "num_blocks=2",
            "--encoder_conf",
            "attention_heads=2",
            "--decoder",
            "transformer",
            "--decoder_conf",
            "num_blocks=1",
            "--decoder_conf",
            "linear_units=16",
            "--decoder_conf",
            "attention_heads=2",
        ]
    )
    args.token_list = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    args.normalize_conf = {"stats_file": str(stats_dir / "feats_stats.npz")}
    torch.manual_seed(0)
    model = asr_task.ASRTask.build_model(args)
    exp = root / "exp" / "asr"
    exp.mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), exp / "valid.acc.ave.pth")  # ESPnet's checkpoint format
    conf = {k: v for k, v in vars(args).items()}
    conf["normalize_conf"] = {"stats_file": "exp/asr_stats/train/feats_stats.npz"}
    (exp / "config.yaml").write_text(yaml.safe_dump(_plain(conf)))
    return exp / "config.yaml", exp / "valid.acc.ave.pth"


def _plain(x):
    """argparse values -> YAML-safe plain types."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x
