"""LlmDecoder: teacher forcing, KV-cached beam scoring, fine-tuning schemes, ESPnet integration.

A tiny random Llama (hidden 32, 2 layers, 4 heads) and a WordLevel tokenizer are built
locally and loaded back through ``from_pretrained``, as a user's real LLM is.
"""

import gc
import shutil

import pytest
import torch
from espnet.nets.scorer_interface import BatchScorerInterface
from tiny_models import TINY_BOS, TINY_EOS, TINY_PAD, TINY_SPECIALS, TINY_WORDS, save_tiny_word_llm

from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
from espnet_llm_plugin.core.finetune import parameter_counts

WORDS, SPECIALS = TINY_WORDS, TINY_SPECIALS
V = len(SPECIALS) + len(WORDS)
PAD, BOS, EOS = TINY_PAD, TINY_BOS, TINY_EOS
D = 32


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    return save_tiny_word_llm(tmp_path_factory.mktemp("tiny_llm"), max_position_embeddings=64)


def make_decoder(llm_dir, **kw):
    args = dict(
        llm_path=str(llm_dir), prompt="the cat", prompt_suffix="to", finetune="lora", lora_r=4, lora_dropout=0.0
    )
    args.update(kw)
    return LlmDecoder(vocab_size=V, encoder_output_size=D, **args)


def perturb_lora(dec, seed=1):
    """LoRA B starts at zero (a no-op); give it weights so LoRA is visible in outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in dec.named_parameters():
            if "lora_B" in name:
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
    return dec


@pytest.fixture(scope="module")
def dec(llm_dir):
    return perturb_lora(make_decoder(llm_dir)).eval()


def speech(T, seed=0):
    return torch.randn(T, D, generator=torch.Generator().manual_seed(seed))


def full_prefix_logp(dec, x, ys):
    """Reference: uncached teacher-forced forward over the whole prefix; next-token log-probs."""
    n = ys.size(0)
    with torch.no_grad():
        logits, _ = dec(x.unsqueeze(0).expand(n, -1, -1), torch.full((n,), x.size(0)), ys, torch.full((n,), ys.size(1)))
    return torch.log_softmax(logits[:, -1], dim=-1)


# ---------------------------------------------------------------- teacher forcing
def test_forward_matches_direct_hf_forward_over_concatenated_embeddings(dec):
    hs = torch.stack([speech(7, 1), speech(7, 2)])
    hlens = torch.tensor([7, 4])
    ys = torch.tensor([[EOS, 5, 6, 7, 8], [EOS, 9, 10, EOS, EOS]])  # ESPnet pads ys_in with eos
    ylens = torch.tensor([5, 3])
    with torch.no_grad():
        logits, out_lens = dec(hs, hlens, ys, ylens)
    assert logits.shape == (2, 5, V) and logits.dtype == torch.float32
    assert torch.equal(out_lens, ylens)

    emb = dec.llm.get_input_embeddings()
    prompt, suffix = torch.tensor([4, 6]), torch.tensor([12])  # "the cat", "to"
    for b in range(2):
        h, n = int(hlens[b]), int(ylens[b])
        text = torch.cat([torch.tensor([BOS]), ys[b, 1:n]])  # sos (= eos id) is fed as BOS
        inputs = torch.cat([emb(prompt), hs[b, :h], emb(suffix), emb(text)]).unsqueeze(0)
        with torch.no_grad():
            ref = dec.llm(inputs_embeds=inputs).logits[0, -n:]  # the peft model's own forward
        assert torch.allclose(logits[b, :n], ref, atol=1e-5), b


def test_utterance_logits_do_not_depend_on_batch_padding(dec):
    short_x, short_y = speech(4, 3), torch.tensor([EOS, 5, 6])
    long_x, long_y = speech(9, 4), torch.tensor([EOS, 7, 8, 9, 10, 11])
    with torch.no_grad():
        alone, _ = dec(short_x[None], torch.tensor([4]), short_y[None], torch.tensor([3]))
        hs = torch.zeros(2, 9, D)
        hs[0], hs[1, :4] = long_x, short_x
        hs[1, 4:] = 100.0  # garbage in the padding must not leak
        ys = torch.full((2, 6), EOS)
        ys[0], ys[1, :3] = long_y, short_y
        batched, _ = dec(hs, torch.tensor([9, 4]), ys, torch.tensor([6, 3]))
    assert torch.allclose(batched[1, :3], alone[0], atol=1e-5)


def test_too_long_input_names_max_context(llm_dir):
    dec = make_decoder(llm_dir, max_context=12)
    with pytest.raises(ValueError, match="max_context"):
        dec(speech(10)[None], torch.tensor([10]), torch.tensor([[EOS, 5, 6]]), torch.tensor([3]))


def test_empty_utterance_without_prompt_is_refused(llm_dir):
    dec = make_decoder(llm_dir, prompt="", prompt_suffix="")
    ys, ylens = torch.tensor([[EOS, 5], [EOS, 6]]), torch.tensor([2, 2])
    logits, _ = dec(torch.randn(2, 3, D), torch.tensor([3, 1]), ys, ylens)
    assert torch.isfinite(logits).all()
    with pytest.raises(ValueError, match="0 speech frames"):
        dec(torch.randn(2, 3, D), torch.tensor([3, 0]), ys, ylens)


# ---------------------------------------------------------------- beam scoring
def test_kv_cached_batch_score_equals_full_prefix_scoring_through_reorders(dec):
    x = speech(6, 5)
    g = torch.Generator().manual_seed(0)
    state = dec.init_state(x)
    ys = torch.tensor([[EOS]])
    states = [state]
    for step in range(5):
        logp, new_states = dec.batch_score(ys, states, x.expand(ys.size(0), -1, -1))
        assert logp.shape == (ys.size(0), V) and logp.dtype == torch.float32
        assert torch.allclose(logp, full_prefix_logp(dec, x, ys), atol=1e-5), step
        # beam-style reordering: parents picked with repeats, each child gets a new token
        parents = torch.randint(0, ys.size(0), (3,), generator=g)
        tokens = torch.randint(4, V, (3, 1), generator=g)
        ys = torch.cat([ys[parents], tokens], dim=1)
        states = [dec.select_state(new_states, int(p)) for p in parents]


def test_batch_score_equals_score_per_hypothesis(dec):
    x = speech(5, 6)
    ys0 = torch.tensor([[EOS]])
    _, states = dec.batch_score(ys0, [dec.init_state(x)], x[None])
    ys = torch.tensor([[EOS, 5], [EOS, 9], [EOS, 13]])
    states = [states[0]] * 3
    logp, _ = dec.batch_score(ys, states, x.expand(3, -1, -1))
    for i in range(3):
        single, _ = dec.score(ys[i], states[i], x)
        assert torch.allclose(logp[i], single, atol=1e-5)


def test_released_or_missing_cache_is_recomputed(dec):
    x = speech(5, 7)
    _, states = dec.batch_score(torch.tensor([[EOS]]), [dec.init_state(x)], x[None])
    ys = torch.tensor([[EOS, 6], [EOS, 7]])
    dec._live_caches.clear()  # what happens to finished hypotheses' caches
    gc.collect()
    assert states[0].cache_ref() is None
    logp, new_states = dec.batch_score(ys, [states[0], None], x.expand(2, -1, -1))
    assert torch.allclose(logp, full_prefix_logp(dec, x, ys), atol=1e-5)
    # and decoding continues from the recomputed cache
    ys = torch.cat([ys, torch.tensor([[8], [9]])], dim=1)
    logp, _ = dec.batch_score(ys, new_states, x.expand(2, -1, -1))
    assert torch.allclose(logp, full_prefix_logp(dec, x, ys), atol=1e-5)


def test_old_step_caches_are_freed_during_search(dec):
    x = speech(5, 8)
    state = dec.init_state(x)
    first = state.cache_ref
    ys, states = torch.tensor([[EOS]]), [state]
    for tok in (5, 6, 7):
        _, states = dec.batch_score(ys, states, x[None])
        ys = torch.cat([ys, torch.tensor([[tok]])], dim=1)
    gc.collect()
    assert first() is None  # the prefix cache of step 0 is no longer held
    assert states[0].cache_ref() is not None


def greedy_by_full_forward(dec, x, maxlen):
    ys = torch.tensor([[EOS]])
    for _ in range(maxlen):
        nxt = int(full_prefix_logp(dec, x, ys)[0].argmax())
        if nxt == EOS:
            break
        ys = torch.cat([ys, torch.tensor([[nxt]])], dim=1)
    return ys[0, 1:].tolist()


def test_espnet_beam_searches_agree(dec):
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.beam_search import BeamSearch

    x, maxlen = speech(6, 9), 6
    results = {}
    for cls in (BeamSearch, BatchBeamSearch):
        search = cls(
            scorers={"decoder": dec},
            weights={"decoder": 1.0},
            beam_size=3,
            vocab_size=V,
            sos=EOS,
            eos=EOS,
            token_list=None,
        )
        with torch.no_grad():
            results[cls.__name__] = search(x, maxlenratio=-maxlen)
    single, batch = results["BeamSearch"][0], results["BatchBeamSearch"][0]
    assert batch.yseq.tolist() == single.yseq.tolist()
    assert abs(float(batch.score) - float(single.score)) < 1e-4
    # the score is the sum of the decoder's log-probs along the hypothesis (eos included)
    yseq = batch.yseq
    ref = sum(float(full_prefix_logp(dec, x, yseq[None, :k])[0, yseq[k]]) for k in range(1, len(yseq)))
    assert abs(float(batch.score) - ref) < 1e-4


def test_beam_one_equals_exhaustive_greedy_and_hf_generate(dec):
    from espnet.nets.batch_beam_search import BatchBeamSearch

    x, maxlen = speech(6, 10), 6
    search = BatchBeamSearch(
        scorers={"decoder": dec},
        weights={"decoder": 1.0},
        beam_size=1,
        vocab_size=V,
        sos=EOS,
        eos=EOS,
    )
    with torch.no_grad():
        best = search(x, maxlenratio=-maxlen)[0]
    greedy = greedy_by_full_forward(dec, x, maxlen)
    assert len(greedy) > 0
    assert best.yseq[1:-1].tolist() == greedy
    assert dec.generate(x[None], max_new_tokens=maxlen, num_beams=1) == greedy


# ---------------------------------------------------------------- streaming simulation
def test_more_speech_rescores_hypotheses_over_all_frames(dec):
    # ESPnet's BatchBeamSearchOnlineSim starts on the first block and extends the scorers with
    # all frames so far; the decoder must score the next step over those, not the first block
    x = speech(9, 11)
    first = x[:4]
    _, states = dec.batch_score(torch.tensor([[EOS]]), [dec.init_state(first)], first[None])
    ys = torch.tensor([[EOS, 6], [EOS, 6]])
    states = [states[0], states[0]]
    dec.extend_prob(first)  # the same block again: states kept (cached)
    assert dec.extend_state(states) is states
    dec.extend_prob(x)
    states = dec.extend_state(states)
    logp, new_states = dec.batch_score(ys, states, x.expand(2, -1, -1))
    assert torch.allclose(logp, full_prefix_logp(dec, x, ys), atol=1e-5)
    assert not torch.allclose(logp, full_prefix_logp(dec, first, ys), atol=1e-3)
    # the recomputed caches carry on over all frames
    ys = torch.cat([ys, torch.tensor([[8], [9]])], dim=1)
    logp, _ = dec.batch_score(ys, new_states, x.expand(2, -1, -1))
    assert torch.allclose(logp, full_prefix_logp(dec, x, ys), atol=1e-5)


class RepeatFirstToken(BatchScorerInterface):
    """Favours token 6 for the first two tokens: a repetition right away, on which ESPnet's
    streaming simulation moves to the next block without backing off (its hardest case)."""

    def init_state(self, x):
        return None

    def batch_score(self, ys, states, xs):
        scores = torch.zeros(ys.size(0), V)
        if ys.size(1) <= 2:
            scores[:, 6] = 20.0
        return scores, states

    def score(self, y, state, x):
        return self.batch_score(y[None], [state], x[None])[0][0], state


def test_streaming_simulation_search_reads_every_block(dec, monkeypatch):
    from espnet.nets.batch_beam_search_online_sim import BatchBeamSearchOnlineSim

    frames = []
    uncached = dec._score_uncached

    def spy(ys, xs):
        frames.append(xs.size(1))
        return uncached(ys, xs)

    monkeypatch.setattr(dec, "_score_uncached", spy)
    x = speech(12, 3)
    search = BatchBeamSearchOnlineSim(
        scorers={"decoder": dec, "repeat": RepeatFirstToken()},
        weights={"decoder": 1.0, "repeat": 1.0},
        beam_size=2,
        vocab_size=V,
        sos=EOS,
        eos=EOS,
    )
    search.set_block_size(4)
    search.set_hop_size(2)
    search.set_look_ahead(1)
    with torch.no_grad():
        best = search(x, maxlenratio=0.0)[0]
    assert best.yseq[:3].tolist() == [EOS, 6, 6] and best.yseq[-1] == EOS
    # blocks end at 3 (init_state), 5, 7, 9 and 12 frames: each later one is read once, when it
    # arrives (before, the caches of the first block were extended after the early move)
    assert frames == [5, 7, 9, 12]


# ---------------------------------------------------------------- dynamic quantization
def test_dynamic_quantization_with_lora_decodes_close_to_float(llm_dir):
    # ESPnet's --quantize_asr_model: quantize_dynamic over every nn.Linear of the model
    dec = perturb_lora(make_decoder(llm_dir)).eval()
    x, ys = speech(5, 12), torch.tensor([[EOS, 6, 7]])
    ref = full_prefix_logp(dec, x, ys)
    holder = torch.nn.ModuleDict({"decoder": dec})
    quantized = torch.quantization.quantize_dynamic(holder, qconfig_spec={torch.nn.Linear}, dtype=torch.qint8)
    qdec = quantized["decoder"]
    q_proj = qdec._causal_lm().model.layers[0].self_attn.q_proj
    assert type(q_proj.base_layer).__name__ == "Linear" and "quantized" in type(q_proj.base_layer).__module__
    assert type(q_proj.lora_A["default"]) is torch.nn.Linear  # adapters stay in float
    logp = full_prefix_logp(qdec, x, ys)
    assert torch.allclose(logp.exp(), ref.exp(), atol=0.05)
    # ... and the LoRA adapters still act: without them the output is further off
    with qdec.llm.disable_adapter():
        base = full_prefix_logp(qdec, x, ys)
    assert (base.exp() - ref.exp()).abs().max() > (logp.exp() - ref.exp()).abs().max()
    # beam scoring works on the quantized decoder
    state = qdec.init_state(x)
    cached, _ = qdec.batch_score(ys[:, :1], [state], x[None])
    assert torch.isfinite(cached).all()


# ---------------------------------------------------------------- fine-tuning schemes
def lora_param_count(llm_dir, r, targets=None):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(llm_dir), local_files_only=True)
    total = 0
    for name, m in model.named_modules():
        leaf = name.split(".")[-1]
        if isinstance(m, torch.nn.Linear) and leaf != "lm_head" and (targets is None or leaf in targets):
            total += r * (m.in_features + m.out_features)
    return total, sum(p.numel() for p in model.parameters())


def test_trainable_parameters_per_scheme(llm_dir):
    expected_lora, llm_total = lora_param_count(llm_dir, r=4)
    lora = make_decoder(llm_dir, finetune="lora", lora_r=4)
    trainable, _ = parameter_counts(lora)
    assert trainable == expected_lora
    assert all("lora_" in n for n, p in lora.named_parameters() if p.requires_grad)

    expected_qv, _ = lora_param_count(llm_dir, r=2, targets={"q_proj", "v_proj"})
    qv = make_decoder(llm_dir, finetune="lora", lora_r=2, lora_target_modules=["q_proj", "v_proj"])
    assert parameter_counts(qv)[0] == expected_qv

    assert parameter_counts(make_decoder(llm_dir, finetune="frozen"))[0] == 0
    assert parameter_counts(make_decoder(llm_dir, finetune="full")) == (llm_total, llm_total)


def test_gradients_reach_lora_and_speech_input(llm_dir):
    dec = make_decoder(llm_dir).train()
    hs = speech(6, 11)[None].repeat(2, 1, 1).requires_grad_(True)
    ys = torch.tensor([[EOS, 5, 6], [EOS, 7, EOS]])
    logits, _ = dec(hs, torch.tensor([6, 4]), ys, torch.tensor([3, 2]))
    logits.logsumexp(-1).sum().backward()
    assert hs.grad is not None and hs.grad[0].abs().sum() > 0
    assert hs.grad[1, 4:].abs().sum() == 0  # padded frames take no part
    lora_b = [p for n, p in dec.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.grad is not None and p.grad.abs().sum() > 0 for p in lora_b)
    assert all(p.grad is None for n, p in dec.named_parameters() if not p.requires_grad)


@pytest.mark.parametrize("scheme", ["lora", "full"])
def test_optimizer_steps_lower_the_loss(llm_dir, scheme):
    torch.manual_seed(0)
    dec = make_decoder(llm_dir, finetune=scheme).train()
    hs = torch.stack([speech(6, 12), speech(6, 13)])
    hlens = torch.tensor([6, 5])
    ys_in = torch.tensor([[EOS, 5, 6, 7], [EOS, 8, 9, EOS]])
    ys_out = torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, -1]])
    opt = torch.optim.Adam([p for p in dec.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(6):
        logits, _ = dec(hs, hlens, ys_in, torch.tensor([4, 3]))
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ys_out.reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


# ---------------------------------------------------------------- persistence
def test_state_dict_round_trip_gives_identical_outputs(llm_dir, tmp_path):
    src = perturb_lora(make_decoder(llm_dir), seed=3).eval()
    torch.save(src.state_dict(), tmp_path / "dec.pth")
    dst = make_decoder(llm_dir).eval()
    args = (speech(5, 14)[None], torch.tensor([5]), torch.tensor([[EOS, 5, 6]]), torch.tensor([3]))
    with torch.no_grad():
        expected, before = src(*args)[0], dst(*args)[0]
        assert not torch.allclose(expected, before, atol=1e-4)  # the test can fail
        dst.load_state_dict(torch.load(tmp_path / "dec.pth"))  # strict: every key matches
        assert torch.equal(dst(*args)[0], expected)


def test_espnet_init_keeps_pretrained_llm(llm_dir):
    from espnet2.torch_utils.initialize import initialize

    reference = make_decoder(llm_dir).eval()
    holder = torch.nn.Module()
    holder.decoder = perturb_lora(make_decoder(llm_dir))
    initialize(holder, "xavier_uniform")  # re-initialises every matrix, then reloads
    dec = holder.decoder.eval()
    for name, p in dec.named_parameters():
        if "lora_B" in name:
            assert p.abs().sum() == 0, name
    args = (speech(5, 15)[None], torch.tensor([5]), torch.tensor([[EOS, 5]]), torch.tensor([2]))
    with torch.no_grad():
        assert torch.allclose(dec(*args)[0], reference(*args)[0], atol=1e-6)


# ---------------------------------------------------------------- ESPnet model
def test_espnet_asr_model_trains_with_llm_decoder(llm_dir):
    from espnet2.asr.ctc import CTC
    from espnet2.asr.encoder.abs_encoder import AbsEncoder
    from espnet2.asr.espnet_model import ESPnetASRModel

    from espnet_llm_plugin.asr.adapter import Conv1dMlpAdapter

    class LinearEncoder(AbsEncoder):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(8, 16)

        def output_size(self):
            return 16

        def forward(self, xs_pad, ilens, prev_states=None):
            return self.linear(xs_pad), ilens, None

    token_list = SPECIALS + WORDS
    adapter = Conv1dMlpAdapter(input_size=16, output_size=D, num_conv_layers=1)
    decoder = LlmDecoder(vocab_size=V, encoder_output_size=adapter.output_size(), llm_path=str(llm_dir), lora_r=2)
    model = ESPnetASRModel(
        vocab_size=V,
        token_list=token_list,
        frontend=None,
        specaug=None,
        normalize=None,
        preencoder=None,
        encoder=LinearEncoder(),
        postencoder=adapter,
        decoder=decoder,
        ctc=CTC(odim=V, encoder_output_size=D),
        joint_network=None,
        ctc_weight=0.0,
        report_cer=False,
        report_wer=False,
        sym_sos="</s>",
        sym_eos="</s>",
    )
    assert model.sos == model.eos == EOS
    speech_in = torch.randn(2, 20, 8)
    loss, stats, _ = model(
        speech=speech_in,
        speech_lengths=torch.tensor([20, 15]),
        text=torch.tensor([[5, 6, 7], [8, -1, -1]]),
        text_lengths=torch.tensor([3, 1]),
    )
    assert torch.isfinite(loss)
    loss.backward()
    assert adapter.mlp[0].weight.grad.abs().sum() > 0
    assert model.encoder.linear.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------- configuration errors
def test_nonexistent_llm_path(tmp_path):
    with pytest.raises(ValueError, match="llm_path.*does not exist"):
        LlmDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="llm_path is required"):
        LlmDecoder(vocab_size=V, encoder_output_size=D)


def test_llm_dir_without_tokenizer(llm_dir, tmp_path):
    for name in ("config.json", "model.safetensors"):
        shutil.copy(llm_dir / name, tmp_path / name)
    with pytest.raises(ValueError, match="llm_path.*no tokenizer"):
        LlmDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(tmp_path))


def test_width_mismatch_names_postencoder_output_size(llm_dir):
    with pytest.raises(ValueError, match="set postencoder_conf.output_size to 32"):
        LlmDecoder(vocab_size=V, encoder_output_size=16, llm_path=str(llm_dir))


def test_vocab_mismatch_names_token_list(llm_dir):
    with pytest.raises(ValueError, match="token list.*not this LLM's vocabulary"):
        LlmDecoder(vocab_size=V + 3, encoder_output_size=D, llm_path=str(llm_dir))


def test_prompt_longer_than_context(llm_dir):
    with pytest.raises(ValueError, match="prompt.*max_context"):
        make_decoder(llm_dir, prompt="the big red cat sat on the mat", max_context=8)


def test_unknown_finetune_scheme(llm_dir):
    with pytest.raises(ValueError, match="decoder_conf.finetune"):
        make_decoder(llm_dir, finetune="adapters")


# ---------------------------------------------------------------- gradient checkpointing
GC_BATCH = dict(
    hs=torch.stack([speech(6, 21), speech(6, 22)]),
    hlens=torch.tensor([6, 4]),
    ys=torch.tensor([[EOS, 5, 6, 7], [EOS, 8, 9, EOS]]),
    ylens=torch.tensor([4, 3]),
    targets=torch.tensor([[5, 6, 7, EOS], [8, 9, EOS, -1]]),
)


def decoder_pair(llm_dir, **kw):
    """(without, with) gradient checkpointing, same weights (LoRA B perturbed so LoRA matters)."""
    plain = perturb_lora(make_decoder(llm_dir, **kw))
    ckpt = make_decoder(llm_dir, gradient_checkpointing=True, **kw)
    ckpt.load_state_dict(plain.state_dict())
    return plain, ckpt


def count_mlp_calls(dec):
    """Calls of every LLM layer's MLP, counted by pre-hooks (recomputation calls it again; a
    post-hook would miss it: torch stops the recomputation inside the MLP once it has every
    tensor it needs)."""
    calls = []
    for name, module in dec.named_modules():
        if name.endswith(".mlp"):
            module.register_forward_pre_hook(lambda *_: calls.append(1))
    return calls


def train_step_grads(dec, seed=0):
    """Loss, d loss / d hs and parameter gradients of one teacher-forced step in training mode."""
    dec.train()
    hs = GC_BATCH["hs"].clone().requires_grad_(True)
    torch.manual_seed(seed)  # same dropout masks in both runs
    logits, _ = dec(hs, GC_BATCH["hlens"], GC_BATCH["ys"], GC_BATCH["ylens"])
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), GC_BATCH["targets"].reshape(-1), ignore_index=-1)
    loss.backward()
    grads = {n: p.grad.clone() for n, p in dec.named_parameters() if p.grad is not None}
    return loss.detach(), hs.grad, grads


@pytest.mark.parametrize("scheme", ["frozen", "lora", "full"])
def test_gradient_checkpointing_gives_the_same_loss_and_gradients(llm_dir, scheme):
    # LoRA dropout > 0: the recomputation must replay the forward's dropout masks
    plain, ckpt = decoder_pair(llm_dir, finetune=scheme, lora_dropout=0.2)
    calls = count_mlp_calls(ckpt)
    loss, hs_grad, grads = train_step_grads(plain)
    n_plain = len(calls)  # hooks are on ckpt only: plain adds nothing
    loss_ckpt, hs_grad_ckpt, grads_ckpt = train_step_grads(ckpt)
    # checkpointing was on: every layer's MLP ran again in backward
    assert n_plain == 0 and len(calls) == 2 * 2
    assert torch.allclose(loss_ckpt, loss, atol=1e-6)
    # the adapter side gets its gradient through the frozen / LoRA / full LLM
    assert hs_grad is not None and hs_grad_ckpt is not None and hs_grad[0].abs().sum() > 0
    assert torch.allclose(hs_grad_ckpt, hs_grad, atol=1e-6)
    assert hs_grad_ckpt[1, 4:].abs().sum() == 0  # padded frames still take no part
    assert grads_ckpt.keys() == grads.keys()
    if scheme == "frozen":
        assert not grads
    else:
        assert grads and all(g.abs().sum() > 0 for n, g in grads.items() if "lora_B" in n or scheme == "full")
    for name, g in grads.items():
        assert torch.allclose(grads_ckpt[name], g, atol=1e-6), name


def saved_for_backward_bytes(dec, train=True):
    """Bytes of the tensors autograd keeps for backward (outside checkpointed regions)."""
    total = [0]

    def pack(t):
        total[0] += t.numel() * t.element_size()
        return t

    dec.train(train)
    hs = GC_BATCH["hs"].clone().requires_grad_(True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        dec(hs, GC_BATCH["hlens"], GC_BATCH["ys"], GC_BATCH["ylens"])
    return total[0]


@pytest.mark.parametrize("scheme", ["lora", "full"])
def test_gradient_checkpointing_keeps_fewer_activations_in_training_only(llm_dir, scheme):
    plain, ckpt = decoder_pair(llm_dir, finetune=scheme)
    without, with_ckpt = saved_for_backward_bytes(plain), saved_for_backward_bytes(ckpt)
    assert with_ckpt < 0.5 * without, (with_ckpt, without)
    # eval mode: nothing is checkpointed, each layer runs once
    assert saved_for_backward_bytes(ckpt, train=False) == saved_for_backward_bytes(plain, train=False)
    calls = count_mlp_calls(ckpt.eval())
    out, _ = ckpt(GC_BATCH["hs"].clone().requires_grad_(True), GC_BATCH["hlens"], GC_BATCH["ys"], GC_BATCH["ylens"])
    out.sum().backward()
    assert len(calls) == 2


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_gradient_checkpointing_leaves_cached_decoding_unchanged(llm_dir, mode):
    """Beam scoring (``torch.no_grad``) keeps its KV cache and its scores, even in training mode."""
    from espnet.nets.batch_beam_search import BatchBeamSearch

    plain, ckpt = decoder_pair(llm_dir)  # lora_dropout 0: training mode is deterministic too
    decoders = {"plain": plain.train(mode == "train"), "ckpt": ckpt.train(mode == "train")}
    x = speech(6, 23)
    g = torch.Generator().manual_seed(0)
    ys = torch.tensor([[EOS]])
    states = {k: [d.init_state(x)] for k, d in decoders.items()}
    for step in range(4):
        logp = {}
        for k, d in decoders.items():
            logp[k], states[k] = d.batch_score(ys, states[k], x.expand(ys.size(0), -1, -1))
            assert all(s.cache_ref() is not None for s in states[k])  # cached path, cache kept
        assert torch.allclose(logp["ckpt"], logp["plain"], atol=1e-6), step
        assert torch.allclose(logp["ckpt"], full_prefix_logp(ckpt, x, ys), atol=1e-5), step
        parents = torch.randint(0, ys.size(0), (3,), generator=g)
        ys = torch.cat([ys[parents], torch.randint(4, V, (3, 1), generator=g)], dim=1)
        states = {k: [d.select_state(states[k], int(p)) for p in parents] for k, d in decoders.items()}

    best = {}
    for k, d in decoders.items():
        search = BatchBeamSearch(
            scorers={"decoder": d},
            weights={"decoder": 1.0},
            beam_size=3,
            vocab_size=V,
            sos=EOS,
            eos=EOS,
        )
        with torch.no_grad():
            best[k] = search(x, maxlenratio=-6)[0]
    assert best["ckpt"].yseq.tolist() == best["plain"].yseq.tolist()
    assert abs(float(best["ckpt"].score) - float(best["plain"].score)) < 1e-5


def test_gradient_checkpointing_is_logged_and_reported(llm_dir, caplog):
    import logging

    with caplog.at_level(logging.INFO, logger="espnet_llm_plugin.core.finetune"):
        dec = make_decoder(llm_dir, gradient_checkpointing=True)
    assert dec.gradient_checkpointing
    assert any("gradient checkpointing on" in r.getMessage() for r in caplog.records)
    layers = [m for m in dec.llm.modules() if type(m).__name__ == "LlamaDecoderLayer"]
    assert len(layers) == 2 and all(m.gradient_checkpointing for m in layers)
    assert not make_decoder(llm_dir).gradient_checkpointing


# ---------------------------------------------------------------- framing and text form
def ids_of(*words):
    return [(SPECIALS + WORDS).index(w) for w in words]


def copy_llm(llm_dir, dest):
    shutil.copytree(llm_dir, dest)
    return dest


def test_legacy_frame_without_llm_usage(dec):
    """No llm_usage.json and no options: [bos] text [eos], as before."""
    assert dec.text_lead_id == BOS and dec.end_id == EOS
    assert dec.suffix_ids.tolist() == ids_of("to")
    assert dec.text_form.is_identity


def test_text_start_and_end_frame_the_text(llm_dir):
    """The last start token replaces ESPnet's sos (= the end token); earlier ones follow the
    prompt suffix; the end token is what the decoder (and so ESPnet's eos) ends on."""
    x = speech(6).unsqueeze(0)
    a = make_decoder(llm_dir, finetune="frozen", text_start=["big", "red"], text_end=["two"]).eval()
    assert a.end_id == ids_of("two")[0] and a.text_lead_id == ids_of("red")[0]
    assert a.suffix_ids.tolist() == ids_of("to", "big")
    b = make_decoder(llm_dir, finetune="frozen", prompt_suffix="to big", text_start=["red"], text_end=["two"]).eval()
    legacy = make_decoder(llm_dir, finetune="frozen", prompt_suffix="to big").eval()
    lens = torch.tensor([6])
    with torch.no_grad():
        sos_first, _ = a(x, lens, torch.tensor([ids_of("two", "the", "cat")]), torch.tensor([3]))
        red_first, _ = a(x, lens, torch.tensor([ids_of("red", "the", "cat")]), torch.tensor([3]))
        same, _ = b(x, lens, torch.tensor([ids_of("two", "the", "cat")]), torch.tensor([3]))
        old, _ = legacy(x, lens, torch.tensor([[EOS] + ids_of("the", "cat")]), torch.tensor([3]))
    torch.testing.assert_close(sos_first, red_first)
    torch.testing.assert_close(sos_first, same)
    assert not torch.allclose(sos_first, old, atol=1e-4)  # bos instead of red after "to big"
    # beam search's first step reads the same frame
    logp, _ = a.score(torch.tensor(ids_of("two")), a.init_state(x[0]), x[0])
    torch.testing.assert_close(logp, torch.log_softmax(sos_first[0, 0], dim=-1), atol=1e-5, rtol=1e-5)


def test_text_end_must_be_one_vocabulary_token(llm_dir):
    with pytest.raises(ValueError, match=r"text_end must be exactly one token.*final_period"):
        make_decoder(llm_dir, text_end=["two", "</s>"])
    with pytest.raises(ValueError, match=r"decoder_conf\.text_start/text_end.*'<\|im_end\|>' is not in the vocabulary"):
        make_decoder(llm_dir, text_end=["<|im_end|>"])
    with pytest.raises(ValueError, match=r"'<\|endoftext\|>' is not in the vocabulary"):
        make_decoder(llm_dir, text_start=["<|endoftext|>"])


def test_llm_usage_json_gives_the_defaults(llm_dir, tmp_path):
    import json

    d = copy_llm(llm_dir, tmp_path / "llm")
    (d / "llm_usage.json").write_text(
        json.dumps({"framing": {"start": ["big"], "end": ["two"]}, "text_form": {"case": "lower"}})
    )
    dec = make_decoder(d)
    assert dec.text_lead_id == ids_of("big")[0] and dec.end_id == ids_of("two")[0]
    assert dec.text_form.case == "lower"
    dec = make_decoder(d, text_end=["one"], text_form={"case": "as_is", "recipe_case": "upper"})
    assert dec.text_lead_id == ids_of("big")[0] and dec.end_id == ids_of("one")[0]
    assert dec.text_form.case == "as_is" and dec.text_form.recipe_case == "upper"
    with pytest.raises(ValueError, match=r"decoder_conf\.text_form.*'casing'"):
        make_decoder(d, text_form={"casing": "lower"})


def test_chat_template_wraps_prompt_and_speech_as_a_user_turn(llm_dir, tmp_path):
    from transformers import AutoTokenizer

    with pytest.raises(ValueError, match="chat_template.*has no chat template"):
        make_decoder(llm_dir, chat_template=True)
    d = copy_llm(llm_dir, tmp_path / "llm")
    tok = AutoTokenizer.from_pretrained(d)
    tok.chat_template = (
        "{% for m in messages %}<s> {{ m['content'] }} </s> {% endfor %}"
        "{% if add_generation_prompt %}<s> big {% endif %}"
    )
    tok.save_pretrained(d)
    dec = make_decoder(d, prompt="the cat", prompt_suffix=" on", chat_template=True)
    # [<s> the cat][speech][on </s> <s>] big | text | </s>
    assert dec.prompt_ids.tolist() == [BOS] + ids_of("the", "cat")
    assert dec.suffix_ids.tolist() == ids_of("on") + [EOS, BOS]
    assert dec.text_lead_id == ids_of("big")[0] and dec.end_id == EOS
    with pytest.raises(ValueError, match="chat_template is true.*text_start/text_end"):
        make_decoder(d, chat_template=True, text_end=["two"])
    # a usage file's chat default gives way to an explicit text frame
    import json

    (d / "llm_usage.json").write_text(json.dumps({"llm_asr": {"chat_template": True}}))
    assert make_decoder(d, prompt="the cat").end_id == EOS  # the chat frame (template's end)
    plain = make_decoder(d, prompt="the cat", text_end=["two"])
    assert plain.end_id == ids_of("two")[0] and plain.prompt_ids.tolist() == ids_of("the", "cat")


@pytest.mark.real_model
def test_smollm2_default_frame_ends_sentences_far_more_readily_than_bos_eos(smollm2_dir, smollm2):
    """Issue 14.2: ``[<|im_start|>] TEXT [<|im_end|>]`` made SmolLM2-Instruct pay ~15 nats to end
    a sentence. The decoder's defaults (measured, in llm_usage.json) must frame the text so the
    end token after a complete sentence is far more likely; the text alone, without speech."""
    from espnet_llm_plugin.asr.llm_decoder import text_frame
    from espnet_llm_plugin.core.llm_usage import read_llm_usage

    model, tokenizer = smollm2
    usage = read_llm_usage(smollm2_dir)
    assert "framing" in usage and "text_form" in usage, "prepare_pretrained writes the measured defaults"
    prompt = "Transcribe the speech."
    dec = LlmDecoder(
        vocab_size=len(tokenizer), encoder_output_size=576, llm_path=str(smollm2_dir), finetune="frozen", prompt=prompt
    )
    # the decoder's frame is the one llm_usage.json names
    measured = text_frame(tokenizer, str(smollm2_dir), prompt, "", None, None, None)
    assert (dec.prompt_ids.tolist(), dec.suffix_ids.tolist(), dec.text_lead_id, dec.end_id) == (
        list(measured.prompt_ids),
        list(measured.suffix_ids),
        measured.lead_id,
        measured.end_id,
    )
    legacy = text_frame(tokenizer, str(smollm2_dir), prompt, "", ["<bos>"], ["<eos>"], False)
    assert tokenizer.convert_ids_to_tokens([legacy.lead_id, legacy.end_id]) == ["<|im_start|>", "<|im_end|>"]

    recipe = [
        "THE OLD BOY FOUND HER CLEAN PICTURES THIS MORNING",
        "CAN THE CHILDREN COOK AN APPLE",
        "DOCTOR VOLKONSKY WANTS TO SEND ANOTHER PROBE TO CERES",
        "HOW MUCH DID THEIR BOTTLE COST",
    ]

    def end_nll(frame, form):
        out = []
        for text in recipe:
            body = tokenizer(form.to_llm(text), add_special_tokens=False).input_ids
            ids = list(frame.prompt_ids) + list(frame.suffix_ids) + [frame.lead_id] + body
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([ids])).logits[0, -1]
            out.append(-torch.log_softmax(logits.float(), dim=-1)[frame.end_id].item())
        return torch.tensor(out)

    from espnet_llm_plugin.core.text_form import TextForm

    new, old = end_nll(measured, dec.text_form), end_nll(legacy, TextForm())
    # measured here: about 1 nat against 10 (the end costs ~5x less: e^9 times likelier)
    assert new.mean() < old.mean() / 3 and old.mean() - new.mean() > 5, (new, old)


# ---------------------------------------------------------------- autocast
def test_autocast_value_is_checked(llm_dir):
    with pytest.raises(ValueError, match="decoder_conf.autocast"):
        make_decoder(llm_dir, autocast="int8")


def test_bf16_autocast_keeps_fp32_weights_and_grads_and_close_logits(llm_dir):
    from espnet_llm_plugin.core.hf_causal_lm import cpu_supports_bfloat16

    if not cpu_supports_bfloat16():  # falls back to float32: same logits as without autocast
        torch.manual_seed(0)
        ref = perturb_lora(make_decoder(llm_dir)).eval()
        torch.manual_seed(0)
        dec = perturb_lora(make_decoder(llm_dir, autocast="bfloat16")).eval()
        args = (speech(5)[None], torch.tensor([5]), torch.tensor([[EOS, 5]]), torch.tensor([2]))
        assert torch.equal(dec(*args)[0], ref(*args)[0])
        return
    torch.manual_seed(0)  # LoRA A is initialised at random: the same for both
    ref = perturb_lora(make_decoder(llm_dir)).train()
    torch.manual_seed(0)
    dec = perturb_lora(make_decoder(llm_dir, autocast="bfloat16")).train()
    hs, hl = speech(5)[None], torch.tensor([5])
    ys, yl = torch.tensor([[EOS, 5, 6]]), torch.tensor([3])
    want, _ = ref(hs, hl, ys, yl)
    got, _ = dec(hs, hl, ys, yl)
    assert got.dtype == torch.float32
    assert not torch.equal(got, want)  # the matmuls did run in bf16
    torch.testing.assert_close(got.log_softmax(-1), want.log_softmax(-1), atol=0.1, rtol=0.05)
    got.logsumexp(-1).sum().backward()
    lora_b = [p for n, p in dec.named_parameters() if "lora_B" in n]
    assert all(p.dtype == torch.float32 and p.grad is not None and p.grad.dtype == torch.float32 for p in lora_b)


def test_float16_autocast_on_cpu_runs_in_float32(llm_dir):
    """A model trained with fp16 autocast on a GPU decodes on a CPU (float32, a warning)."""
    torch.manual_seed(0)
    ref = perturb_lora(make_decoder(llm_dir)).eval()
    torch.manual_seed(0)
    dec = perturb_lora(make_decoder(llm_dir, autocast="float16")).eval()
    args = (speech(5)[None], torch.tensor([5]), torch.tensor([[EOS, 5]]), torch.tensor([2]))
    assert torch.equal(dec(*args)[0], ref(*args)[0])
