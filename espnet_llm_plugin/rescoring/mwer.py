"""Minimum word error rate (MWER) training of the rescoring LM over n-best lists.

For one utterance with hypotheses ``h_1..h_N`` (word errors ``E_i`` against the reference)::

    s_i   = first_pass_weight * first_pass_i + lm_weight * log p_LM(h_i [| units])
    P_i   = softmax(s)_i                     (normalised within the n-best list)
    L     = sum_i P_i * (E_i - mean_j E_j)   (expected errors, mean-error baseline subtracted)

plus ``ce_weight`` times the LM's per-token NLL of the reference (keeps the LM a language
model). Only the LM gets gradients; the first-pass scores are constants. The loss of a batch
is the mean over its utterances.
"""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import torch
from tqdm import tqdm

from espnet_llm_plugin.rescoring.lm_scorer import LmScorer, score_nbest, sequence_logprobs
from espnet_llm_plugin.rescoring.nbest import NBest
from espnet_llm_plugin.rescoring.weight_search import CombinationWeights, hypothesis_errors, weights_counts

logger = logging.getLogger(__name__)


def nbest_posteriors(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over each row's valid hypotheses.

    Args:
        scores: (B, N) combined scores.
        mask: (B, N) True for real hypotheses (each row needs at least one).

    Returns:
        (B, N) posteriors, zero at padded entries, rows summing to 1.
    """
    masked = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(masked, dim=-1).masked_fill(~mask, 0.0)


def mwer_loss(scores: torch.Tensor, word_errors: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over utterances of the expected word errors minus the list's mean error.

    Args:
        scores: (B, N) combined scores (differentiable).
        word_errors: (B, N) word errors of each hypothesis.
        mask: (B, N) bool, real hypotheses.

    Returns:
        scalar loss.
    """
    post = nbest_posteriors(scores, mask)
    errs = word_errors.to(post.dtype).masked_fill(~mask, 0.0)
    mean_err = errs.sum(-1, keepdim=True) / mask.sum(-1, keepdim=True).clamp(min=1)
    relative = (errs - mean_err).masked_fill(~mask, 0.0)
    return (post * relative).sum(-1).mean()


@dataclass
class MwerConfig:
    epochs: int = 3
    lr: float = 1e-4
    ce_weight: float = 0.1
    utts_per_step: int = 4
    grad_clip: float = 1.0
    seed: int = 0
    weights: CombinationWeights = field(default_factory=lambda: CombinationWeights(1.0, 0.5, 0.0))

    def validate(self) -> None:
        if self.epochs < 1 or self.utts_per_step < 1:
            raise ValueError(f"epochs and utts_per_step must be >= 1 (got {self.epochs}, {self.utts_per_step})")
        if self.lr <= 0 or self.ce_weight < 0:
            raise ValueError(f"need lr > 0 and ce_weight >= 0 (got {self.lr}, {self.ce_weight})")
        if self.weights.lm_weight == 0:
            raise ValueError("lm_weight is 0: the LM would get no MWER gradient")


def utterance_loss(
    scorer: LmScorer,
    hyps_text: Sequence[str],
    first_pass: Sequence[float],
    errors: Sequence[int],
    reference: str,
    units: Optional[Sequence[int]],
    cfg: MwerConfig,
) -> Dict[str, torch.Tensor]:
    """MWER (+CE) loss of one utterance, with gradients into ``scorer.model``.

    Returns ``{"loss", "mwer", "ce"}`` scalars.
    """
    w = cfg.weights
    seqs = [scorer.encode(t, units) for t in hyps_text]
    ids, att, tgt = scorer.collate(seqs)
    lm = sequence_logprobs(scorer.model, ids, att, tgt)  # (N,)
    if scorer.length_norm:
        lm = lm / tgt[:, 1:].sum(-1).clamp(min=1)
    fp = torch.tensor(first_pass, dtype=lm.dtype, device=lm.device)
    n_words = torch.tensor([len(t.split()) for t in hyps_text], dtype=lm.dtype, device=lm.device)
    scores = (w.first_pass_weight * fp + w.lm_weight * lm + w.length_bonus * n_words).unsqueeze(0)
    err = torch.tensor([list(errors)], device=lm.device)
    mask = torch.ones_like(scores, dtype=torch.bool)
    mwer = mwer_loss(scores, err, mask)
    ce = torch.zeros((), device=lm.device)
    if cfg.ce_weight > 0:
        ref = scorer.encode(reference, units)
        r_ids, r_att, r_tgt = scorer.collate([ref])
        ce = -sequence_logprobs(scorer.model, r_ids, r_att, r_tgt)[0] / (len(ref.ids) - ref.num_context)
    return {"loss": mwer + cfg.ce_weight * ce, "mwer": mwer.detach(), "ce": ce.detach()}


def train_mwer(
    scorer: LmScorer,
    nbest: NBest,
    refs: Dict[str, str],
    cfg: MwerConfig,
    units: Optional[Dict[str, List[int]]] = None,
    dev: Optional[tuple] = None,
) -> List[dict]:
    """Train ``scorer.model`` (already prepared by ``apply_finetune``) with MWER (+CE).

    Args:
        nbest, refs, units: training lists, references and (speech+text LM) units.
        dev: optional ``(nbest, refs, units)`` for the per-epoch WER; else the training lists.

    Returns:
        a log: one dict per epoch (0 = before training) with loss and WER.
    """
    cfg.validate()
    random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)
    errors = hypothesis_errors(nbest, refs)
    # lists where every hypothesis has the same error give no MWER signal
    utts = [u for u, e in errors.items() if len(e) >= 2 and len({c.errors for c in e}) > 1]
    if not utts and cfg.ce_weight == 0:
        raise ValueError("no n-best list has hypotheses with different word errors: nothing to train")
    if not utts:
        utts = list(errors)
    dev_nbest, dev_refs, dev_units = dev if dev is not None else (nbest, refs, units)
    dev_name = "dev" if dev is not None else "train"

    def evaluate() -> float:
        scorer.model.eval()
        scored = score_nbest(scorer, dev_nbest, dev_units)
        return weights_counts(scored, dev_refs, cfg.weights).error_rate

    params = [p for p in scorer.model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the LM has no trainable parameters (finetune scheme frozen?)")
    optim = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    log = [{"epoch": 0, f"{dev_name}_wer": evaluate()}]
    logger.info("epoch 0: %s WER %.2f%%", dev_name, log[0][f"{dev_name}_wer"])
    rng = random.Random(cfg.seed)
    for epoch in range(1, cfg.epochs + 1):
        scorer.model.train()
        order = list(utts)
        rng.shuffle(order)
        sums = {"loss": 0.0, "mwer": 0.0, "ce": 0.0}
        steps = [order[i : i + cfg.utts_per_step] for i in range(0, len(order), cfg.utts_per_step)]
        for step in tqdm(steps, desc=f"MWER epoch {epoch}", unit="step"):
            optim.zero_grad()
            for utt in step:
                hyps = nbest[utt]
                parts = utterance_loss(
                    scorer,
                    [h.text for h in hyps],
                    [h.scores.get("first_pass", h.score) for h in hyps],
                    [c.errors for c in errors[utt]],
                    refs[utt],
                    None if units is None else units[utt],
                    cfg,
                )
                (parts["loss"] / len(step)).backward()
                for k in sums:
                    sums[k] += float(parts[k].detach())
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optim.step()
        n = len(order)
        entry = {"epoch": epoch, **{k: v / n for k, v in sums.items()}, f"{dev_name}_wer": evaluate()}
        if not all(math.isfinite(entry[k]) for k in ("loss", "mwer", "ce")):
            raise FloatingPointError(f"MWER training diverged at epoch {epoch}: {entry}")
        log.append(entry)
        logger.info(
            "epoch %d: loss %.4f (mwer %.4f, ce %.4f), %s WER %.2f%%",
            epoch,
            entry["loss"],
            entry["mwer"],
            entry["ce"],
            dev_name,
            entry[f"{dev_name}_wer"],
        )
    scorer.model.eval()
    return log
