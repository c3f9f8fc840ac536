"""MWER: posterior normalisation, loss value by hand, gradient sign, and a real training run."""

import math

import pytest
import torch

from espnet_llm_plugin.core.finetune import LoraOptions, apply_finetune
from espnet_llm_plugin.rescoring.lm_scorer import LmScorer
from espnet_llm_plugin.rescoring.mwer import MwerConfig, mwer_loss, nbest_posteriors, train_mwer, utterance_loss
from espnet_llm_plugin.rescoring.nbest import Hypothesis
from espnet_llm_plugin.rescoring.weight_search import CombinationWeights


def test_posteriors_are_normalised_within_each_list():
    scores = torch.tensor([[0.0, math.log(2.0), 5.0], [1.0, 1.0, 1.0]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    post = nbest_posteriors(scores, mask)
    assert post[0].tolist() == pytest.approx([1 / 3, 2 / 3, 0.0])  # the padded 5.0 gets nothing
    assert post[1].tolist() == pytest.approx([1 / 3] * 3)
    assert post.sum(-1).tolist() == pytest.approx([1.0, 1.0])


def test_loss_value_by_hand():
    # row 1: P = [1/3, 2/3], errors [3, 0], mean 1.5 -> 1/3*1.5 + 2/3*(-1.5) = -0.5
    # row 2: P uniform over 3, errors [1, 2, 3], mean 2 -> (-1 + 0 + 1)/3 = 0
    scores = torch.tensor([[0.0, math.log(2.0), 0.0], [0.0, 0.0, 0.0]])
    errors = torch.tensor([[3, 0, 99], [1, 2, 3]])
    mask = torch.tensor([[True, True, False], [True, True, True]])
    assert float(mwer_loss(scores, errors, mask)) == pytest.approx((-0.5 + 0.0) / 2)


def test_raising_the_best_hypothesis_lowers_the_loss():
    scores = torch.tensor([[-1.0, -2.0, -3.0]], requires_grad=True)
    errors = torch.tensor([[2, 0, 4]])
    mask = torch.ones(1, 3, dtype=torch.bool)
    loss = mwer_loss(scores, errors, mask)
    loss.backward()
    g = scores.grad[0]
    assert g[1] < 0 and g[0] > 0 and g[2] > 0  # gradient descent raises the 0-error hyp
    bumped = scores.detach().clone()
    bumped[0, 1] += 0.5
    assert float(mwer_loss(bumped, errors, mask)) < float(loss.detach())


def test_equal_errors_give_zero_loss():
    scores = torch.randn(2, 4)
    assert float(mwer_loss(scores, torch.full((2, 4), 3), torch.ones(2, 4, dtype=torch.bool))) == pytest.approx(0.0)


NBEST = {
    "u1": [Hypothesis("the cat sad", -1.0), Hypothesis("the cat sat", -1.2), Hypothesis("cat sat", -2.0)],
    "u2": [Hypothesis("a dog ran", -0.5), Hypothesis("a dog ran home", -0.7)],
    "u3": [Hypothesis("one", -0.5), Hypothesis("one two", -0.6)],
}
REFS = {"u1": "the cat sat", "u2": "a dog ran home", "u3": "one two"}
UNITS = {"u1": [1, 2, 3], "u2": [4, 5], "u3": [6]}


def expected_errors(scorer, cfg, units):
    total = 0.0
    with torch.no_grad():
        for u, hyps in NBEST.items():
            errs = [2, 0, 1] if u == "u1" else [1, 0]
            parts = utterance_loss(
                scorer,
                [h.text for h in hyps],
                [h.score for h in hyps],
                errs,
                REFS[u],
                None if units is None else units[u],
                cfg,
            )
            total += float(parts["mwer"])
    return total


@pytest.mark.parametrize("kind, scheme", [("text", "full"), ("speech_text", "lora")])
def test_training_lowers_the_expected_errors(lm_dirs, kind, scheme):
    units = UNITS if kind == "speech_text" else None
    scorer = LmScorer.from_pretrained(str(lm_dirs[kind]), device="cpu")
    scorer.model = apply_finetune(scorer.model, scheme, LoraOptions(r=4, alpha=8, dropout=0.0))
    cfg = MwerConfig(
        epochs=2,
        lr=3e-2 if scheme == "lora" else 1e-2,
        ce_weight=0.1,
        utts_per_step=3,
        seed=0,
        weights=CombinationWeights(1.0, 0.5, 0.0),
    )
    before = expected_errors(scorer, cfg, units)
    log = train_mwer(scorer, NBEST, REFS, cfg, units=units)
    after = expected_errors(scorer, cfg, units)
    assert [e["epoch"] for e in log] == [0, 1, 2]
    assert all(math.isfinite(e["loss"]) for e in log[1:]) and "train_wer" in log[-1]
    assert after < before


def test_config_errors():
    with pytest.raises(ValueError, match="lm_weight is 0"):
        MwerConfig(weights=CombinationWeights(1.0, 0.0)).validate()
    with pytest.raises(ValueError, match="lr > 0"):
        MwerConfig(lr=0).validate()
