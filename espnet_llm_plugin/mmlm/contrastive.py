"""Speech<->text contrastive training of a unit-extended LM (arXiv 2404.01616).

Both sides go through the same causal LM: speech as ``<s> <speech> <unit_a> ... </speech> </s>``,
text as ``<s> tokens </s>``. A sequence's embedding is pooled from the hidden states of one
layer (``layer``: an index into HF's ``hidden_states``, 0 = embeddings, -1 = last layer):

* ``mean``: the mean over the sequence's positions (padding and the leading ``<s>``, whose
  state is the same for every sequence, excluded);
* ``last``: the state at the last real position (the ``</s>``, which has seen everything).

The loss is a symmetric InfoNCE with in-batch negatives over L2-normalised embeddings:
``(CE(S T^T / tau, I) + CE(T S^T / tau, I)) / 2``. ``tau`` is fixed or learnt; a learnt one is
stored as ``log tau`` and clamped to ``[min_temperature, max_temperature]`` (keeps it from
collapsing to 0, where the loss explodes). Optional translation pairs (text in language A,
its translation in language B) add ``translation_weight`` x the same loss over text-text pairs,
which pulls translations together so speech in one language can retrieve text in another.

A batch never holds two pairs with the same transcript (the later ones are dropped), since the
other would be a false in-batch negative.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from tqdm import tqdm

from espnet_llm_plugin.lm.causal_lm_pretraining import batch_indices
from espnet_llm_plugin.mmlm.unit_vocab import UnitVocabInfo

logger = logging.getLogger(__name__)

POOLINGS = ("mean", "last")
CONTRASTIVE_FILE = "contrastive.json"


@dataclass
class PoolingConfig:
    """How a sequence becomes one vector."""

    layer: int = -1
    pooling: str = "mean"

    def validate(self, num_hidden_states: Optional[int] = None) -> None:
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")
        n = num_hidden_states
        if n is not None and not -n <= self.layer < n:
            raise ValueError(
                f"layer {self.layer} out of range: the model has "
                f"{num_hidden_states} hidden states (embeddings + layers)"
            )


@dataclass
class ContrastiveConfig:
    """Contrastive training settings."""

    max_steps: int = 300
    batch_size: int = 32
    lr: float = 1e-3
    warmup_steps: int = 20
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    temperature: float = 0.07  # initial value when learnt
    learn_temperature: bool = True
    min_temperature: float = 0.01
    max_temperature: float = 1.0
    translation_weight: float = 1.0
    log_every: int = 10
    seed: int = 0

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.batch_size < 2:
            raise ValueError("--batch_size must be at least 2 (in-batch negatives)")
        if not 0 < self.min_temperature <= self.temperature <= self.max_temperature:
            raise ValueError(
                f"need 0 < --min_temperature <= --temperature <= --max_temperature, "
                f"got {self.min_temperature}, {self.temperature}, "
                f"{self.max_temperature}"
            )
        if self.lr <= 0 or self.warmup_steps < 0 or self.translation_weight < 0:
            raise ValueError("need --lr > 0, --warmup_steps >= 0, --translation_weight >= 0")


class Temperature(torch.nn.Module):
    """``tau = exp(clamp(log_tau))``; a parameter when learnt, a buffer when fixed."""

    def __init__(self, init: float = 0.07, learnable: bool = True, min_value: float = 0.01, max_value: float = 1.0):
        super().__init__()
        log_tau = torch.tensor(math.log(init), dtype=torch.float32)
        if learnable:
            self.log_tau = torch.nn.Parameter(log_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        self.log_min, self.log_max = math.log(min_value), math.log(max_value)

    def forward(self) -> torch.Tensor:
        return self.log_tau.clamp(self.log_min, self.log_max).exp()


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: Union[float, torch.Tensor]) -> torch.Tensor:
    """Symmetric InfoNCE: row ``i`` of ``a`` (B, D) and row ``i`` of ``b`` (B, D) are the positives.

    Embeddings are L2-normalised, so the logits are cosine similarities / temperature.
    """
    if a.shape != b.shape or a.dim() != 2:
        raise ValueError(f"need two (B, D) tensors of the same shape, got {tuple(a.shape)}, {tuple(b.shape)}")
    logits = F.normalize(a.float(), dim=-1) @ F.normalize(b.float(), dim=-1).T / temperature
    target = torch.arange(a.shape[0], device=a.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target))


# ------------------------------------------------------------------------------- encoding


def speech_token_ids(tokenizer: Any, info: UnitVocabInfo, units: Sequence[int]) -> List[int]:
    """``<s> <speech> units </speech> </s>`` as ids (the same ids ``speech_span`` tokenises to)."""
    ids = [info.speech_start_id, *info.unit_ids(list(units)), info.speech_end_id]
    return _wrap(tokenizer, ids)


def text_token_ids(tokenizer: Any, texts: Sequence[str]) -> List[List[int]]:
    """``<s> tokens </s>`` per text."""
    if not texts:
        return []
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [_wrap(tokenizer, x) for x in ids]


def _wrap(tokenizer: Any, ids: List[int]) -> List[int]:
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    return bos + list(ids) + eos


def pad_batch(seqs: Sequence[Sequence[int]], pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ``(ids (B, T), mask (B, T))``."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(list(s), dtype=torch.long)
        mask[i, : len(s)] = 1
    return ids, mask


def pooled_embeddings(
    model: torch.nn.Module,
    ids: torch.Tensor,
    mask: torch.Tensor,
    pooling: PoolingConfig,
    skip_first: bool = True,
) -> torch.Tensor:
    """Pooled hidden states ``(B, D)`` of right-padded ``ids``/``mask`` ``(B, T)``.

    ``skip_first``: leave position 0 (``<s>``) out of the mean.
    """
    out = model(input_ids=ids, attention_mask=mask, output_hidden_states=True, use_cache=False)
    states = out.hidden_states
    pooling.validate(len(states))
    h = states[pooling.layer].float()  # (B, T, D)
    if pooling.pooling == "last":
        last = mask.sum(1) - 1
        return h[torch.arange(h.shape[0], device=h.device), last]
    weights = mask.clone().float()
    if skip_first and ids.shape[1] > 1:
        weights[:, 0] = 0
        weights[mask.sum(1) <= 1, 0] = 1  # a one-token sequence keeps its only position
    return (h * weights.unsqueeze(-1)).sum(1) / weights.sum(1, keepdim=True)


def _pad_id(tokenizer: Any) -> int:
    for name in ("pad_token_id", "eos_token_id", "unk_token_id"):
        value = getattr(tokenizer, name)
        if value is not None:
            return int(value)
    return 0


@torch.no_grad()
def embed_sequences(
    model: torch.nn.Module,
    tokenizer: Any,
    seqs: Sequence[Sequence[int]],
    pooling: PoolingConfig,
    batch_size: int = 32,
    device: Optional[torch.device] = None,
    desc: str = "embedding",
) -> torch.Tensor:
    """L2-normalised embeddings ``(N, D)`` (float32, CPU) of token-id sequences."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(seqs)), key=lambda i: len(seqs[i]))  # similar lengths: less padding
    out: List[Optional[torch.Tensor]] = [None] * len(seqs)
    for start in tqdm(range(0, len(seqs), batch_size), desc=desc, disable=None):
        idx = order[start : start + batch_size]
        ids, mask = pad_batch([seqs[i] for i in idx], _pad_id(tokenizer))
        with _autocast(device):
            emb = pooled_embeddings(model, ids.to(device), mask.to(device), pooling)
        emb = F.normalize(emb.float(), dim=-1).cpu()
        for row, i in enumerate(idx):
            out[i] = emb[row]
    model.train(was_training)
    return torch.stack(out) if out else torch.zeros((0, 0))


def _autocast(device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


# ------------------------------------------------------------------------------- training


def read_translation_pairs(path: Union[str, Path]) -> List[Tuple[str, str]]:
    """Tab-separated ``text_a<TAB>text_b`` lines (empty lines skipped)."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"translation pairs file {path} not found")
    pairs = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise ValueError(f"{path}:{n}: expected 'text_a<TAB>text_b', got {line!r}")
        pairs.append((parts[0].strip(), parts[1].strip()))
    if len(pairs) < 2:
        raise ValueError(f"{path}: need at least 2 translation pairs, got {len(pairs)}")
    return pairs


def _batch(n: int, cfg: ContrastiveConfig, step: int, salt: int) -> List[int]:
    return batch_indices(n, min(cfg.batch_size, n), step, cfg.seed + salt).tolist()


def _unique_by(keys: Sequence[str], idx: List[int]) -> List[int]:
    """``idx`` without later items whose key repeats (no false in-batch negatives)."""
    seen, out = set(), []
    for i in idx:
        if keys[i] not in seen:
            seen.add(keys[i])
            out.append(i)
    return out


def train_contrastive(
    model: torch.nn.Module,
    tokenizer: Any,
    info: UnitVocabInfo,
    pairs: Sequence[Tuple[Sequence[int], str]],
    pooling: PoolingConfig,
    cfg: ContrastiveConfig,
    translation_pairs: Optional[Sequence[Tuple[str, str]]] = None,
    device: Optional[torch.device] = None,
) -> Tuple[Temperature, Dict[str, Any]]:
    """Train ``model`` (prepared for training: LoRA-wrapped or full) in place.

    Args:
        pairs: ``(units, transcript)`` per utterance (at least 2 distinct transcripts).
        translation_pairs: optional ``(text_a, text_b)`` positives.

    Returns:
        ``(temperature module, log)``; the log has ``train`` entries ``{step, loss, tau}``.
    """
    cfg.validate()
    pooling.validate()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    texts = [t for _, t in pairs]
    if len(set(texts)) < 2:
        raise ValueError("contrastive training needs at least 2 pairs with distinct transcripts")
    speech_ids = [speech_token_ids(tokenizer, info, u) for u, _ in pairs]
    text_ids = text_token_ids(tokenizer, texts)
    tr_a = text_token_ids(tokenizer, [a for a, _ in translation_pairs or []])
    tr_b = text_token_ids(tokenizer, [b for _, b in translation_pairs or []])
    pad = _pad_id(tokenizer)

    temperature = Temperature(cfg.temperature, cfg.learn_temperature, cfg.min_temperature, cfg.max_temperature).to(
        device
    )
    model.to(device).train()
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": params, "weight_decay": cfg.weight_decay}]
    if cfg.learn_temperature:
        groups.append({"params": list(temperature.parameters()), "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr)

    def embed(seqs: List[List[int]]) -> torch.Tensor:
        ids, mask = pad_batch(seqs, pad)
        with _autocast(device):
            return pooled_embeddings(model, ids.to(device), mask.to(device), pooling)

    log: Dict[str, Any] = {"train": [], "pairs": len(pairs), "translation_pairs": len(translation_pairs or [])}
    window: List[float] = []
    start = time.time()
    for step in tqdm(range(cfg.max_steps), desc="contrastive", unit="step", disable=None):
        lr = cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))
        for g in optimizer.param_groups:
            g["lr"] = lr
        idx = _unique_by(texts, _batch(len(pairs), cfg, step, 0))
        tau = temperature()
        loss = torch.zeros((), device=device)
        if len(idx) > 1:  # a batch of one transcript has no negatives
            loss = info_nce(embed([speech_ids[i] for i in idx]), embed([text_ids[i] for i in idx]), tau)
        if tr_a and cfg.translation_weight > 0:
            keys = [a for a, _ in translation_pairs]
            jdx = _unique_by(keys, _batch(len(tr_a), cfg, step, 7919))
            if len(jdx) > 1:
                loss = loss + cfg.translation_weight * info_nce(
                    embed([tr_a[j] for j in jdx]), embed([tr_b[j] for j in jdx]), tau
                )
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {loss.item()}; try a lower --lr")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        window.append(loss.item())
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps:
            mean = sum(window) / len(window)
            log["train"].append(
                {"step": step + 1, "loss": round(mean, 5), "tau": round(float(temperature().detach()), 5)}
            )
            logger.info(
                "step %d/%d: contrastive loss %.4f, tau %.4f, %.2f s/step",
                step + 1,
                cfg.max_steps,
                mean,
                float(temperature().detach()),
                (time.time() - start) / len(window),
            )
            window, start = [], time.time()
    model.eval()
    log["temperature"] = float(temperature().detach())
    return temperature, log


def contrastive_settings(
    info: UnitVocabInfo, pooling: PoolingConfig, temperature: float, cfg: Optional[ContrastiveConfig] = None
) -> Dict[str, Any]:
    """What ``contrastive.json`` holds: enough to embed with the saved model later."""
    out = {"layer": pooling.layer, "pooling": pooling.pooling, "temperature": temperature, "num_units": info.num_units}
    if cfg is not None:
        out["train"] = asdict(cfg)
    return out
