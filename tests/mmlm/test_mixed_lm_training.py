"""Mixed-sequence LM training: LoRA merged into a plain HF model, text rows kept, units learnt."""

import pytest
import torch
from mmlm_data import NUM_UNITS, SENTENCES, synthetic_units

from espnet_llm_plugin.core.finetune import LoraOptions
from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm, unwrap_peft
from espnet_llm_plugin.lm.causal_lm_pretraining import TrainConfig
from espnet_llm_plugin.mmlm.mixed_lm_training import train_mixed_lm
from espnet_llm_plugin.mmlm.mixed_sequences import MixRatios, PairedUtterance, build_mixed_sequences
from espnet_llm_plugin.mmlm.unit_vocab import extend_with_units

PAIRS = [PairedUtterance(f"u{i}", tuple(synthetic_units(t, i)), t) for i, t in enumerate(SENTENCES)]
CFG = TrainConfig(
    max_steps=30,
    batch_size=4,
    seq_len=64,
    lr=1e-2,
    warmup_steps=2,
    eval_every=15,
    save_every=100,
    log_every=10,
    weight_decay=0.1,
)


@pytest.mark.parametrize("finetune", ["lora", "full"])
def test_training_lowers_dev_loss_and_returns_a_plain_model(tiny_lm_dir, tmp_path, finetune):
    model, tok = load_causal_lm(tiny_lm_dir)
    info = extend_with_units(model, tok, NUM_UNITS)
    emb_before = model.get_input_embeddings().weight.detach().clone()
    seqs = [s for _, s in build_mixed_sequences(PAIRS, MixRatios(1, 1, 1), seed=0)]
    trained, log = train_mixed_lm(
        model,
        tok,
        info,
        seqs,
        seqs[:10],
        CFG,
        finetune=finetune,
        lora=LoraOptions(r=4, alpha=8, dropout=0.0),
        ckpt_dir=tmp_path / "ckpt",
        device=torch.device("cpu"),
    )
    assert unwrap_peft(trained) is trained and type(trained).__name__ == "LlamaForCausalLM"
    assert not any(p.requires_grad for p in trained.parameters())
    assert log["final_dev_ppl"] < log["initial_dev_ppl"]
    emb = trained.get_input_embeddings().weight.detach()
    n = info.base_vocab_size
    unit_rows = slice(info.first_unit_id, info.first_unit_id + NUM_UNITS)
    assert not torch.allclose(emb[unit_rows], emb_before[unit_rows])  # units were learnt
    if finetune == "lora":
        assert torch.equal(emb[:n], emb_before[:n])  # text rows exactly the base model's
        assert not any("lora" in k for k in trained.state_dict())
    else:
        assert not torch.equal(emb[:n], emb_before[:n])
    assert (tmp_path / "ckpt" / "trainer_state.json").is_file()


def test_bad_scheme(tiny_lm_dir):
    model, tok = load_causal_lm(tiny_lm_dir)
    info = extend_with_units(model, tok, 4)
    with pytest.raises(ValueError, match="finetune"):
        train_mixed_lm(model, tok, info, ["a b"], None, CFG, finetune="frozen")
