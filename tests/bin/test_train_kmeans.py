"""train_kmeans end to end on a tiny data dir of generated wavs."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

from espnet_llm_plugin.bin.train_kmeans import main
from espnet_llm_plugin.frontend.kmeans import KMeansModel


def make_wav_dir(root: Path, n: int = 6, short: bool = False) -> Path:
    """Kaldi dir of sine (even) / noise (odd) wavs, 0.5-1.0 s; ``short``: + a 10 ms one."""
    rng = np.random.default_rng(0)
    (root / "wav").mkdir(parents=True)
    items = []
    for i in range(n):
        t = np.arange(int(rng.uniform(0.5, 1.0) * 16000)) / 16000
        x = 0.5 * np.sin(2 * np.pi * (200 + 100 * i) * t) if i % 2 == 0 else 0.3 * rng.standard_normal(t.size)
        items.append((f"utt{i:02d}", x))
    if short:
        items.append(("tiny", np.zeros(160)))
    for utt, x in items:
        soundfile.write(root / "wav" / f"{utt}.wav", x.astype(np.float32), 16000)
    items.sort()
    (root / "wav.scp").write_text("".join(f"{u} {root / 'wav' / (u + '.wav')}\n" for u, _ in items))
    (root / "text").write_text("".join(f"{u} word {i % 2}\n" for i, (u, _) in enumerate(items)))
    (root / "utt2spk").write_text("".join(f"{u} {u}\n" for u, _ in items))
    return root


def test_train_kmeans_fbank(tmp_path):
    data = make_wav_dir(tmp_path / "data", short=True)
    out = tmp_path / "km"
    main(
        [
            "--data_dir",
            str(data),
            "--feature_type",
            "fbank",
            "--n_mels",
            "20",
            "--num_units",
            "8",
            "--max_frames",
            "150",
            "--seed",
            "1",
            "--out_dir",
            str(out),
            "--device",
            "cpu",
        ]
    )
    km = KMeansModel.load(out)
    meta = json.loads((out / "kmeans.json").read_text())
    assert km.num_units == 8 and km.dim == 20
    assert meta["feature"]["type"] == "fbank" and meta["feature"]["n_mels"] == 20
    assert meta["frames_given"] == 150 and meta["frames_seen"] > 150
    assert meta["utterances_skipped_short"] == 1 and meta["seed"] == 1
    # same seed, same codebook
    main(
        [
            "--wav_scp",
            str(data / "wav.scp"),
            "--n_mels",
            "20",
            "--num_units",
            "8",
            "--max_frames",
            "150",
            "--seed",
            "1",
            "--out_dir",
            str(tmp_path / "km2"),
            "--device",
            "cpu",
        ]
    )
    np.testing.assert_array_equal(KMeansModel.load(tmp_path / "km2").centroids, km.centroids)


def test_train_kmeans_hf(tmp_path):
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
    transformers.AutoModel.from_config(cfg).save_pretrained(tmp_path / "hubert")
    data = make_wav_dir(tmp_path / "data", n=2)
    main(
        [
            "--data_dir",
            str(data),
            "--feature_type",
            "hf",
            "--hf_path",
            str(tmp_path / "hubert"),
            "--layer",
            "1",
            "--num_units",
            "4",
            "--max_frames",
            "400",
            "--out_dir",
            str(tmp_path / "km"),
            "--device",
            "cpu",
        ]
    )
    km = KMeansModel.load(tmp_path / "km", expected_dim=32)
    assert km.feature_spec["layer"] == 1 and km.feature_spec["type"] == "hf"


def test_errors_exit_with_message(tmp_path, capsys):
    data = make_wav_dir(tmp_path / "data", n=2, short=True)
    with pytest.raises(SystemExit, match="tiny"):
        main(["--data_dir", str(data), "--skip_short", "false", "--num_units", "2", "--out_dir", str(tmp_path / "km")])
    with pytest.raises(SystemExit, match="fewer than num_units"):
        main(["--data_dir", str(data), "--num_units", "100000", "--out_dir", str(tmp_path / "km")])
    with pytest.raises(SystemExit, match="--hf_path"):
        main(["--data_dir", str(data), "--feature_type", "hf", "--out_dir", str(tmp_path / "km")])
    assert not (tmp_path / "km").exists()
