"""UnitExtractor and the ESPnet frontend ``discrete_units``."""

import numpy as np
import pytest
import torch

from espnet_llm_plugin.frontend.discrete_units import DiscreteUnitsFrontend, UnitExtractor
from espnet_llm_plugin.frontend.kmeans import KMeansError, KMeansModel
from espnet_llm_plugin.frontend.unit_features import ShortAudioError, build_feature_extractor

SPEC = {"type": "fbank", "n_mels": 20, "hop_ms": 20.0}


def _wav(n, seed):
    t = np.arange(n) / 16000
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(2 * np.pi * 300 * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


@pytest.fixture
def kmeans_dir(tmp_path):
    ex = build_feature_extractor(SPEC)
    frames = np.concatenate(
        [ex.extract(_wav(16000, s)) for s in range(4)]
        + [ex.extract(np.random.default_rng(9).standard_normal(8000).astype(np.float32))]
    )
    return KMeansModel.fit(frames, 8, seed=0, feature_spec=ex.spec).save(tmp_path / "km")


def test_units_deterministic_and_in_range(kmeans_dir):
    ue = UnitExtractor(kmeans_dir)
    a = ue.units(_wav(12000, 1), "u")
    assert a == UnitExtractor(kmeans_dir).units(_wav(12000, 1), "u")
    assert len(a) == 1 + (12000 - 400) // 320 and all(0 <= u < 8 for u in a)
    d = ue.units(_wav(12000, 1), "u", dedup=True)
    assert all(x != y for x, y in zip(d, d[1:])) and len(d) <= len(a)


def test_dim_mismatch_refused(kmeans_dir):
    with pytest.raises(KMeansError, match="does not match"):
        UnitExtractor(kmeans_dir, feature_spec={"type": "fbank", "n_mels": 40})


def test_short_audio_named(kmeans_dir):
    with pytest.raises(ShortAudioError, match="too_short"):
        UnitExtractor(kmeans_dir).units(np.zeros(100, np.float32), "too_short")


def test_frontend_embedding_shapes_and_gradients(kmeans_dir):
    fe = DiscreteUnitsFrontend(str(kmeans_dir), fs="16k", embed_dim=12)
    wavs = torch.zeros(2, 16000)
    wavs[0] = torch.from_numpy(_wav(16000, 2))
    wavs[1, :9000] = torch.from_numpy(_wav(9000, 3))
    lens = torch.tensor([16000, 9000])
    out, olens = fe(wavs, lens)
    assert olens.tolist() == [1 + (16000 - 400) // 320, 1 + (9000 - 400) // 320]
    assert out.shape == (2, olens.max(), 12) == (2, olens.max(), fe.output_size())
    assert (out[1, olens[1] :] == 0).all()  # padding frames
    out.sum().backward()
    assert fe.embed.weight.grad is not None
    # only the embedding is a parameter/state: the extractor and centroids come from kmeans_dir
    assert list(fe.state_dict()) == ["embed.weight"]
    # the same units as the file-based path (dump_units)
    ue = UnitExtractor(kmeans_dir)
    assert fe.units(wavs[1, :9000]) == ue.units(wavs[1, :9000].numpy())


def test_frontend_ids_and_dedup(kmeans_dir):
    fe = DiscreteUnitsFrontend(str(kmeans_dir), output="ids", dedup=True)
    wavs = torch.stack([torch.from_numpy(_wav(16000, 4)), torch.from_numpy(_wav(16000, 5))])
    out, olens = fe(wavs, torch.tensor([16000, 8000]))
    assert out.shape == (2, olens.max(), 1) and fe.output_size() == 1
    ids = out[..., 0].long()
    ue = UnitExtractor(kmeans_dir)
    assert ids[1, : olens[1]].tolist() == ue.units(wavs[1, :8000].numpy(), dedup=True)
    assert (ids[1, olens[1] :] == -1).all()


def test_frontend_refusals(kmeans_dir):
    with pytest.raises(ValueError, match="16000"):
        DiscreteUnitsFrontend(str(kmeans_dir), fs=8000)
    with pytest.raises(ValueError, match="output"):
        DiscreteUnitsFrontend(str(kmeans_dir), output="onehot")
    fe = DiscreteUnitsFrontend(str(kmeans_dir))
    with pytest.raises(ShortAudioError, match="#1 of the batch"):
        fe(torch.zeros(2, 4000), torch.tensor([4000, 100]))


def test_frontend_in_espnet_asr_model(kmeans_dir):
    from espnet2.asr.ctc import CTC
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder
    from espnet2.asr.espnet_model import ESPnetASRModel

    fe = DiscreteUnitsFrontend(str(kmeans_dir), embed_dim=16)
    enc = TransformerEncoder(
        fe.output_size(), output_size=16, attention_heads=2, linear_units=16, num_blocks=1, input_layer="linear"
    )
    tokens = ["<blank>", "<unk>", "a", "b", "<sos/eos>"]
    model = ESPnetASRModel(
        vocab_size=5,
        token_list=tokens,
        frontend=fe,
        specaug=None,
        normalize=None,
        preencoder=None,
        encoder=enc,
        postencoder=None,
        decoder=None,
        joint_network=None,
        ctc=CTC(5, 16),
        ctc_weight=1.0,
    )
    wavs = torch.stack([torch.from_numpy(_wav(16000, 6)), torch.from_numpy(_wav(16000, 7))])
    loss, _, _ = model(wavs, torch.tensor([16000, 12000]), torch.tensor([[2, 3], [3, -1]]), torch.tensor([2, 1]))
    loss.backward()
    assert torch.isfinite(loss) and fe.embed.weight.grad.abs().sum() > 0
