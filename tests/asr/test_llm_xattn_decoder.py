"""LlmXattnDecoder: zero-gate identity, cached decoding with context, training, ESPnet wiring.

A tiny random Llama (hidden 32, 2 layers) with a WordLevel tokenizer is saved locally and loaded
back through ``from_pretrained``, as a user's LLM is.
"""

import pytest
import torch
from tiny_models import TINY_BOS, TINY_EOS, TINY_PAD, TINY_SPECIALS, TINY_WORDS, save_tiny_word_llm

from espnet_llm_plugin.asr.llm_decoder import LlmDecoder
from espnet_llm_plugin.asr.llm_xattn_decoder import LlmXattnDecoder, feed_context, split_context

WORDS, SPECIALS = TINY_WORDS, TINY_SPECIALS
V = len(SPECIALS) + len(WORDS)
PAD, BOS, EOS = TINY_PAD, TINY_BOS, TINY_EOS
D = 32
COMMON = dict(prompt="the cat", prompt_suffix="to", finetune="lora", lora_r=4, lora_dropout=0.0)
XATTN = dict(xattn_every=1, num_passages=2, passage_max_tokens=8, value_encoder_layers=1, xattn_heads=4)


@pytest.fixture(scope="module")
def llm_dir(tmp_path_factory):
    return save_tiny_word_llm(tmp_path_factory.mktemp("tiny_llm_xattn"), max_position_embeddings=64)


def perturb(module, pattern, seed, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if pattern in name:
                p.copy_(scale * torch.randn(p.shape, generator=g))


def open_gates(dec, value=0.7):
    with torch.no_grad():
        for block in dec.xattn_blocks:
            block.attn_gate.fill_(value)
            block.ffn_gate.fill_(-value)
    return dec


@pytest.fixture(scope="module")
def pair(llm_dir):
    """(base LlmDecoder, LlmXattnDecoder with the same LLM/LoRA weights and zero gates)."""
    base = LlmDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON)
    perturb(base, "lora_B", seed=1)
    torch.manual_seed(0)
    xattn = LlmXattnDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON, **XATTN)
    missing, unexpected = xattn.load_state_dict(base.state_dict(), strict=False)
    assert not unexpected
    assert missing and all(k.startswith(("value_encoder.", "xattn_blocks.")) for k in missing)
    return base.eval(), xattn.eval()


@pytest.fixture
def opened(llm_dir, pair):
    """Same LLM/LoRA weights as ``pair``'s base decoder, gates open."""
    torch.manual_seed(1)
    dec = LlmXattnDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON, **XATTN)
    dec.load_state_dict(pair[0].state_dict(), strict=False)
    return open_gates(dec).eval()


def speech(T, seed=0):
    return torch.randn(T, D, generator=torch.Generator().manual_seed(seed))


# passages: "cat sat on mat" | "big red dog" | "one two" (3rd is beyond num_passages=2)
CTX = torch.tensor([6, 8, 9, 10, EOS, 14, 16, 7, EOS, 18, 19])
CTX2 = torch.tensor([[6, 8, 9, 10, EOS, 14, 16, 7, EOS, 18, 19], [13, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1]])
BATCH = dict(
    hs_pad=torch.stack([speech(7, 1), speech(7, 2)]),
    hlens=torch.tensor([7, 4]),
    ys_in_pad=torch.tensor([[EOS, 5, 6, 7, 8], [EOS, 9, 10, EOS, EOS]]),
    ys_in_lens=torch.tensor([5, 3]),
)


def full_prefix_logp(dec, x, ys, context):
    n = ys.size(0)
    with torch.no_grad():
        logits, _ = dec(
            x.unsqueeze(0).expand(n, -1, -1),
            torch.full((n,), x.size(0)),
            ys,
            torch.full((n,), ys.size(1)),
            context=context.unsqueeze(0).expand(n, -1),
        )
    return torch.log_softmax(logits[:, -1], dim=-1)


# ---------------------------------------------------------------- context layout
def test_split_context_keeps_top_passages_truncated_and_skips_padding():
    ids, mask = split_context(CTX2, torch.tensor([11, 2]), EOS, num_passages=2, max_tokens=3)
    assert ids.shape == mask.shape == (2, 2, 3)
    assert ids[0][mask[0]].tolist() == [6, 8, 9, 14, 16, 7]  # "10" truncated, 3rd passage dropped
    assert ids[1, 0][mask[1, 0]].tolist() == [13, 11] and not mask[1, 1].any()
    ids, mask = split_context(torch.tensor([[EOS, -1]]), None, EOS, 2, 3)
    assert ids.shape[1] == 0  # no passage at all


# ---------------------------------------------------------------- zero gates = base decoder
def test_zero_gates_give_exactly_the_base_forward(pair):
    base, xattn = pair
    with torch.no_grad():
        expected, _ = base(**BATCH)
        got, _ = xattn(**BATCH, context=CTX2, context_lengths=torch.tensor([11, 2]))
        no_ctx, _ = xattn(**BATCH)
    assert torch.equal(got, expected) and torch.equal(no_ctx, expected)


def test_zero_gates_give_exactly_the_base_beam_search(pair):
    from espnet.nets.batch_beam_search import BatchBeamSearch

    base, xattn = pair
    x = speech(6, 3)
    xattn.set_context(CTX)
    results = []
    for dec in (base, xattn):
        search = BatchBeamSearch(
            scorers={"decoder": dec}, weights={"decoder": 1.0}, beam_size=3, vocab_size=V, sos=EOS, eos=EOS
        )
        with torch.no_grad():
            results.append(search(x, maxlenratio=-5, minlenratio=0.0))
        ys = torch.tensor([[EOS], [EOS]])
        states = [dec.init_state(x)] * 2
        results.append(dec.batch_score(ys, states, x.expand(2, -1, -1))[0])
    (base_hyps, base_logp), (x_hyps, x_logp) = results[:2], results[2:]
    assert torch.equal(x_logp, base_logp)
    assert [h.yseq.tolist() for h in x_hyps] == [h.yseq.tolist() for h in base_hyps]
    assert [float(h.score) for h in x_hyps] == [float(h.score) for h in base_hyps]


# ---------------------------------------------------------------- open gates
def test_open_gates_change_outputs_but_not_rows_without_context(pair, opened):
    base, _ = pair
    with torch.no_grad():
        expected, _ = base(**BATCH)
        got, _ = opened(**BATCH, context=CTX2)
        empty = torch.full_like(CTX2, -1)
        empty[0] = CTX2[0]
        partly, _ = opened(**BATCH, context=empty)
    assert not torch.allclose(got[0], expected[0], atol=1e-3)  # the context is read
    assert torch.allclose(partly[0], got[0], atol=1e-5)
    assert torch.equal(partly[1, :3], expected[1, :3])  # no context: base LLM, gates or not


def test_row_logits_do_not_depend_on_batch_context_padding(opened):
    with torch.no_grad():
        both, _ = opened(**BATCH, context=CTX2, context_lengths=torch.tensor([11, 2]))
        alone, _ = opened(
            BATCH["hs_pad"][1:, :4],
            BATCH["hlens"][1:],
            BATCH["ys_in_pad"][1:, :3],
            BATCH["ys_in_lens"][1:],
            context=CTX2[1:, :2],
        )
    assert torch.allclose(both[1, :3], alone[0], atol=1e-5)


def test_kv_cached_scoring_with_context_equals_full_forward(opened):
    x = speech(6, 5)
    g = torch.Generator().manual_seed(0)
    opened.set_context(CTX)
    ys, states = torch.tensor([[EOS]]), [opened.init_state(x)]
    for step in range(4):
        logp, new_states = opened.batch_score(ys, states, x.expand(ys.size(0), -1, -1))
        assert torch.allclose(logp, full_prefix_logp(opened, x, ys, CTX), atol=1e-5), step
        parents = torch.randint(0, ys.size(0), (3,), generator=g)
        ys = torch.cat([ys[parents], torch.randint(4, V, (3, 1), generator=g)], dim=1)
        states = [opened.select_state(new_states, int(p)) for p in parents]
    # a released cache is recomputed under the same memory
    opened._live_caches.clear()
    logp, _ = opened.batch_score(ys, [None] * ys.size(0), x.expand(ys.size(0), -1, -1))
    assert torch.allclose(logp, full_prefix_logp(opened, x, ys, CTX), atol=1e-5)


def test_espnet_beam_searches_agree_with_context_and_text_context_equals_ids(opened):
    from espnet.nets.batch_beam_search import BatchBeamSearch
    from espnet.nets.beam_search import BeamSearch

    x = speech(6, 9)
    out = {}
    for name, ctx in (("ids", CTX), ("text", "cat sat on mat ||| big red dog ||| one two")):
        opened.set_context(ctx)
        for cls in (BeamSearch, BatchBeamSearch):
            search = cls(
                scorers={"decoder": opened},
                weights={"decoder": 1.0},
                beam_size=3,
                vocab_size=V,
                sos=EOS,
                eos=EOS,
                token_list=None,
            )
            with torch.no_grad():
                best = search(x, maxlenratio=-5)[0]
            out[name, cls.__name__] = (best.yseq.tolist(), float(best.score))
    ref = out["ids", "BatchBeamSearch"]
    for key, (yseq, score) in out.items():
        assert yseq == ref[0] and abs(score - ref[1]) < 1e-4, key
    opened.set_context(None)
    with torch.no_grad():
        plain = BatchBeamSearch(
            scorers={"decoder": opened}, weights={"decoder": 1.0}, beam_size=3, vocab_size=V, sos=EOS, eos=EOS
        )(x, maxlenratio=-5)[0]
    assert abs(float(plain.score) - ref[1]) > 1e-4  # the context mattered


# ---------------------------------------------------------------- training
def test_gates_get_gradients_first_then_the_value_encoder(llm_dir):
    torch.manual_seed(0)
    dec = LlmXattnDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON, **XATTN).train()
    opt = torch.optim.SGD([p for p in dec.parameters() if p.requires_grad], lr=0.5)

    def backward():
        opt.zero_grad()
        logits, _ = dec(**BATCH, context=CTX2)
        logits.logsumexp(-1).sum().backward()

    backward()
    gates = [b.attn_gate for b in dec.xattn_blocks] + [b.ffn_gate for b in dec.xattn_blocks]
    assert all(g.grad is not None and g.grad.abs().sum() > 0 for g in gates)
    # tanh(0) = 0 multiplies the branches: nothing reaches the value encoder yet
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in dec.value_encoder.parameters())
    opt.step()
    assert all(g.abs().sum() > 0 for g in gates)  # the gates moved
    backward()
    grads = [p.grad for p in dec.value_encoder.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads)


def test_train_steps_with_context_lower_the_loss(llm_dir):
    torch.manual_seed(0)
    dec = LlmXattnDecoder(
        vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **{**COMMON, "finetune": "frozen"}, **XATTN
    ).train()
    trainable = [n for n, p in dec.named_parameters() if p.requires_grad]
    assert trainable and all(n.startswith(("value_encoder.", "xattn_blocks.")) for n in trainable)
    ys_out = torch.tensor([[5, 6, 7, 8, EOS], [9, 10, EOS, -1, -1]])
    opt = torch.optim.Adam([p for p in dec.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(8):
        logits, _ = dec(**BATCH, context=CTX2)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, V), ys_out.reshape(-1), ignore_index=-1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.9 * losses[0], losses


def test_espnet_init_keeps_llm_and_zero_gates(pair, llm_dir):
    from espnet2.torch_utils.initialize import initialize

    base, _ = pair
    fresh = LlmDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON).eval()
    for init in ("xavier_uniform", "chainer"):
        holder = torch.nn.Module()
        holder.decoder = open_gates(
            LlmXattnDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON, **XATTN)
        )
        initialize(holder, init)
        if init == "chainer":  # chainer init does not call reload_pretrained_parameters
            holder.decoder.reload_pretrained_parameters()
        dec = holder.decoder.eval()
        assert all(b.attn_gate.item() == 0 and b.ffn_gate.item() == 0 for b in dec.xattn_blocks), init
        with torch.no_grad():
            assert torch.allclose(dec(**BATCH, context=CTX2)[0], fresh(**BATCH)[0], atol=1e-6), init


# ---------------------------------------------------------------- ESPnet model + inference hook
def build_model(decoder):
    from espnet2.asr.ctc import CTC
    from espnet2.asr.encoder.transformer_encoder import TransformerEncoder

    from espnet_llm_plugin.asr.adapter import Conv1dMlpAdapter
    from espnet_llm_plugin.asr.llm_asr_model import LlmASRModel

    torch.manual_seed(0)
    encoder = TransformerEncoder(
        8, output_size=16, attention_heads=2, linear_units=16, num_blocks=1, input_layer="linear"
    )
    return LlmASRModel(
        vocab_size=V,
        token_list=SPECIALS + WORDS,
        frontend=None,
        specaug=None,
        normalize=None,
        preencoder=None,
        encoder=encoder,
        postencoder=Conv1dMlpAdapter(input_size=16, output_size=D, num_conv_layers=1),
        decoder=decoder,
        ctc=CTC(odim=V, encoder_output_size=D),
        joint_network=None,
        ctc_weight=0.0,
        report_cer=False,
        report_wer=False,
        sym_sos="</s>",
        sym_eos="</s>",
    )


MODEL_BATCH = dict(
    speech=torch.randn(2, 24, 8, generator=torch.Generator().manual_seed(0)),
    speech_lengths=torch.tensor([24, 20]),
    text=torch.tensor([[4, 6, 8], [5, -1, -1]]),
    text_lengths=torch.tensor([3, 1]),
)


def test_llm_asr_model_passes_context_to_the_decoder(opened, pair):
    model = build_model(opened).eval()
    with torch.no_grad():
        with_ctx, _, _ = model(**MODEL_BATCH, context=CTX2, context_lengths=torch.tensor([11, 2]))
        without, _, _ = model(**MODEL_BATCH)
    assert torch.isfinite(with_ctx) and not torch.allclose(with_ctx, without)
    assert opened._batch_context is None  # not left behind for the next batch
    plain = build_model(pair[0])
    with pytest.raises(ValueError, match="does not read context"):
        plain(**MODEL_BATCH, context=CTX2)


def test_feed_context_sets_the_memory_and_refuses_other_decoders(opened, pair):
    class S2T:
        pass

    s2t = S2T()
    s2t.asr_model = torch.nn.Module()
    s2t.asr_model.decoder = opened
    feed_context(s2t, CTX.unsqueeze(0))
    assert opened._decode_memory is not None
    feed_context(s2t, None)
    assert opened._decode_memory is None
    s2t.asr_model.decoder = pair[0]
    feed_context(s2t, None)  # a plain decoder without context is fine
    with pytest.raises(ValueError, match="does not read context"):
        feed_context(s2t, CTX)


# ---------------------------------------------------------------- configuration errors
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(num_passages=0), "decoder_conf.num_passages"),
        (dict(passage_max_tokens=0), "decoder_conf.passage_max_tokens"),
        (dict(xattn_every=3), "decoder_conf.xattn_every"),
        (dict(xattn_heads=5), "decoder_conf.xattn_heads"),
    ],
)
def test_bad_options_name_the_config_key(llm_dir, kw, match):
    with pytest.raises(ValueError, match=match):
        LlmXattnDecoder(vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON, **{**XATTN, **kw})


def test_xattn_every_two_places_blocks_after_the_second_layer(llm_dir):
    dec = LlmXattnDecoder(
        vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON, **{**XATTN, "xattn_every": 2}
    )
    assert dec.xattn_layer_ids == [1] and len(dec.xattn_blocks) == 1


def test_every_base_option_is_spelled_out_with_the_same_default():
    import inspect

    base = inspect.signature(LlmDecoder.__init__).parameters
    ours = inspect.signature(LlmXattnDecoder.__init__).parameters
    assert not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in ours.values())  # config checks see typos
    assert all(name in ours and ours[name].default == p.default for name, p in base.items())


def test_training_without_context_warns_once(pair, caplog):
    import logging

    _, dec = pair
    dec.train()
    dec._warned_no_context = False
    try:
        with caplog.at_level(logging.WARNING, logger="espnet_llm_plugin.asr.llm_xattn_decoder"):
            dec(**BATCH)
            dec(**BATCH)
    finally:
        dec.eval()
    warnings = [r for r in caplog.records if "training without context" in r.getMessage()]
    assert len(warnings) == 1 and "model: llm_asr" in warnings[0].getMessage()


# ---------------------------------------------------------------- gradient checkpointing
def test_gradient_checkpointing_with_context_gives_the_same_gradients(llm_dir, pair):
    """Checkpointed LLM layers (recomputed in backward) + cross-attention hooks = plain training."""
    decs = []
    for ckpt in (False, True):
        torch.manual_seed(1)
        dec = LlmXattnDecoder(
            vocab_size=V, encoder_output_size=D, llm_path=str(llm_dir), **COMMON, **XATTN, gradient_checkpointing=ckpt
        )
        dec.load_state_dict(pair[0].state_dict(), strict=False)
        decs.append(open_gates(dec).train())
    plain, ckpt = decs
    layers = [m for m in ckpt.llm.modules() if type(m).__name__ == "LlamaDecoderLayer"]
    assert ckpt.gradient_checkpointing and layers and all(m.gradient_checkpointing for m in layers)
    calls = []
    for m in layers:  # pre-hook: counts the recomputation in backward as well
        m.mlp.register_forward_pre_hook(lambda *_: calls.append(1))
    results = []
    for dec in (plain, ckpt):
        hs = BATCH["hs_pad"].clone().requires_grad_(True)
        logits, _ = dec(**{**BATCH, "hs_pad": hs}, context=CTX2, context_lengths=torch.tensor([11, 2]))
        loss = logits.logsumexp(-1).sum()
        loss.backward()
        results.append((loss.detach(), hs.grad, {n: p.grad for n, p in dec.named_parameters() if p.grad is not None}))
    assert len(calls) == 2 * len(layers)  # forward + recomputation: checkpointing was on
    (loss, hs_grad, grads), (loss_c, hs_grad_c, grads_c) = results
    assert torch.allclose(loss_c, loss, atol=1e-5)
    assert hs_grad.abs().sum() > 0 and torch.allclose(hs_grad_c, hs_grad, atol=1e-5)
    assert grads_c.keys() == grads.keys()
    assert any(n.startswith("value_encoder.") for n in grads) and any(n.startswith("xattn_blocks.") for n in grads)
    for name, g in grads.items():
        assert torch.allclose(grads_c[name], g, atol=1e-5), name


def test_checkpoint_recomputation_reads_the_memory_of_its_forward(opened):
    """Where transformers recomputes a layer's hooks too, the recomputation (in backward, after
    ``_reading`` was left) must see the memory that the forward saw."""
    memory = (torch.zeros(1, 3, 4), torch.ones(1, 3, dtype=torch.bool))
    with opened._reading(memory):
        forward_ctx, recompute_ctx = opened._checkpoint_contexts()  # what checkpoint calls in forward
        with forward_ctx:
            assert opened._memory is memory
    assert opened._memory is None
    with recompute_ctx:
        assert opened._memory is memory
    assert opened._memory is None
    assert opened._checkpoint_kwargs() == {"context_fn": opened._checkpoint_contexts}
