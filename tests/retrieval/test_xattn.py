"""Value encoder and gated cross-attention blocks (arXiv 2406.09618 cross-attention model)."""

import pytest
import torch

from espnet_llm_plugin.retrieval.xattn import GatedCrossAttentionBlock, ValueEncoder

D, DV = 16, 12


def embed():
    torch.manual_seed(0)
    return torch.nn.Embedding(30, D)


def block(gate=0.0):
    torch.manual_seed(1)
    b = GatedCrossAttentionBlock(D, DV, num_heads=4).eval()
    with torch.no_grad():
        b.attn_gate.fill_(gate)
        b.ffn_gate.fill_(gate)
    return b


def encoder():
    torch.manual_seed(2)
    return ValueEncoder(D, DV, num_layers=2, num_heads=4, max_tokens=6).eval()


def test_zero_gates_are_the_identity_exactly():
    h = torch.randn(2, 5, D)
    memory, mask = torch.randn(2, 7, DV), torch.ones(2, 7, dtype=torch.bool)
    assert torch.equal(block(0.0)(h, memory, mask), h)
    assert not torch.allclose(block(0.5)(h, memory, mask), h, atol=1e-3)


def test_masked_memory_does_not_leak_and_empty_rows_pass_through():
    b = block(0.5)
    h = torch.randn(2, 4, D)
    memory = torch.randn(2, 6, DV)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.bool)
    out = b(h, memory, mask)
    garbage = memory.clone()
    garbage[0, 3:] = 1e4
    garbage[1] = float("nan")  # never read
    out2 = b(h, garbage, mask)
    assert torch.allclose(out, out2) and torch.isfinite(out2).all()
    assert torch.equal(out[1], h[1])  # no memory: unchanged whatever the gates
    alone = b(h[:1], memory[:1, :3], mask[:1, :3])
    assert torch.allclose(out[:1], alone, atol=1e-6)


def test_block_is_position_wise_and_a_shared_memory_broadcasts():
    b = block(0.5)
    h = torch.randn(3, 6, D)
    memory, mask = torch.randn(1, 5, DV), torch.ones(1, 5, dtype=torch.bool)
    whole = b(h, memory, mask)
    parts = torch.cat([b(h[:, :4], memory, mask), b(h[:, 4:], memory, mask)], dim=1)
    assert torch.allclose(whole, parts, atol=1e-6)
    expanded = b(h, memory.expand(3, -1, -1), mask.expand(3, -1))
    assert torch.allclose(whole, expanded, atol=1e-6)
    with pytest.raises(ValueError, match="do not match"):
        b(h, torch.randn(2, 5, DV), torch.ones(2, 5, dtype=torch.bool))


def test_value_encoder_encodes_each_passage_on_its_own():
    enc, emb = encoder(), embed()
    ids = torch.tensor([[[5, 6, 7, 0], [8, 9, 0, 0]], [[10, 11, 12, 13], [0, 0, 0, 0]]])
    mask = ids > 0
    memory, mem_mask = enc(ids, mask, emb)
    assert memory.shape == (2, 8, DV) and torch.equal(mem_mask, mask.reshape(2, 8))
    assert torch.isfinite(memory).all() and memory[1, 4:].abs().sum() == 0  # empty passage
    one, _ = enc(ids[:1, 1:, :2], mask[:1, 1:, :2], emb)  # passage 2 alone, no padding
    assert torch.allclose(memory[0, 4:6], one[0], atol=1e-5)
    assert emb.weight.grad is None
    memory.sum().backward()
    assert emb.weight.grad is None  # the LLM's table stays frozen
    assert enc.proj.weight.grad.abs().sum() > 0


def test_value_encoder_refuses_too_long_passages_and_bad_shapes():
    enc, emb = encoder(), embed()
    with pytest.raises(ValueError, match="passage_max_tokens"):
        enc(torch.ones(1, 1, 7, dtype=torch.long), torch.ones(1, 1, 7, dtype=torch.bool), emb)
    with pytest.raises(ValueError, match=r"\(B, K, L\)"):
        enc(torch.ones(1, 7, dtype=torch.long), torch.ones(1, 7, dtype=torch.bool), emb)
    with pytest.raises(ValueError, match="num_heads"):
        ValueEncoder(D, 10, num_heads=4)
    with pytest.raises(ValueError, match="xattn_heads"):
        GatedCrossAttentionBlock(D, DV, num_heads=5)


def test_espnet_initialization_resets_gates_to_zero():
    b = block(0.9)
    b.espnet_initialization_fn()
    assert b.attn_gate.item() == 0 and b.ffn_gate.item() == 0
