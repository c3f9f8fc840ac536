"""Pre-train a small Llama-style causal LM on text lines (recipe stage 5).

Used where a recipe is given no pretrained LLM: the model trained here is written with
``save_pretrained`` and later stages load it through ``AutoModelForCausalLM.from_pretrained``,
the same path a user's 7B model takes.

The loop is deliberately plain (nanoGPT-like):

* every line becomes ``<s> tokens </s>``; with ``packing`` the lines are concatenated and cut
  into rows of ``seq_len`` tokens (no padding wasted), otherwise one line per row, padded;
* the batch of step ``s`` is a pure function of ``(seed, s)`` (a seeded permutation per epoch),
  so a resumed run sees exactly the batches an uninterrupted one would have seen;
* AdamW (no decay on norms), linear warm-up then cosine decay, gradient clipping;
* dev perplexity per line (``<s> line </s>``, predicted tokens incl. ``</s>``) at step 0,
  every ``eval_every`` steps and at the end, per token and per word (the same total
  log-likelihood over words + ``</s>``, comparable across vocabularies); with ``keep_best``
  the weights of the best evaluation are the ones kept;
* checkpoints hold no pickle: weights and optimizer tensors go to safetensors files, the rest
  (step, log, settings) to JSON.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, load_model, save_file, save_model
from tqdm import tqdm
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerBase

from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_write_text, default_file_modes

logger = logging.getLogger(__name__)

CHECKPOINT_STATE = "trainer_state.json"
_NOT_IN_FINGERPRINT = ("eval_every", "eval_batch_size", "save_every", "log_every")


@dataclass
class LmConfig:
    """Architecture of the Llama-style model."""

    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: Optional[int] = None  # None: = num_heads (no grouped-query attention)
    intermediate_size: Optional[int] = None  # None: 4 * hidden_size
    max_position_embeddings: int = 2048  # RoPE: costs nothing; later stages prepend speech
    rope_theta: float = 10000.0

    def validate(self) -> None:
        kv = self.num_kv_heads or self.num_heads
        for name in ("hidden_size", "num_layers", "num_heads", "max_position_embeddings"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"--hidden_size {self.hidden_size} is not divisible by --num_heads {self.num_heads}")
        if kv <= 0 or self.num_heads % kv:
            raise ValueError(f"--num_heads {self.num_heads} is not divisible by --num_kv_heads {kv}")


@dataclass
class TrainConfig:
    """Optimisation settings."""

    max_steps: int = 500
    batch_size: int = 32
    seq_len: int = 64
    packing: bool = True
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio
    warmup_steps: int = 50
    weight_decay: float = 0.1
    betas: Tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batch_size: int = 64
    save_every: int = 100  # checkpoint period (only with a checkpoint directory)
    log_every: int = 10
    seed: int = 0
    keep_best: bool = True  # end with the weights of the best dev evaluation, not the last

    def validate(self) -> None:
        for name in ("max_steps", "batch_size", "seq_len", "eval_every", "eval_batch_size", "save_every", "log_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.seq_len < 2:
            raise ValueError(f"--seq_len must be at least 2, got {self.seq_len}")
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"need --lr > 0 and 0 <= --min_lr_ratio <= 1 (got {self.lr}, {self.min_lr_ratio})")
        if self.warmup_steps < 0:
            raise ValueError(f"--warmup_steps must be >= 0, got {self.warmup_steps}")


# ---------------------------------------------------------------------------------- model


def build_llama(tokenizer: PreTrainedTokenizerBase, cfg: LmConfig, seed: int = 0) -> LlamaForCausalLM:
    """A freshly initialised ``LlamaForCausalLM`` sized for ``tokenizer`` (tied embeddings)."""
    cfg.validate()
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(tokenizer, name) is None:
            raise ValueError(f"the tokenizer has no {name.replace('_id', '')}")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size or 4 * cfg.hidden_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads or cfg.num_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=True,  # small model: the embedding table is most of it
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)  # the weight init draws from the global generator
    return LlamaForCausalLM(config)


def num_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights are counted once


# ----------------------------------------------------------------------------------- data


def encode_lines(tokenizer: PreTrainedTokenizerBase, texts: Sequence[str]) -> List[List[int]]:
    """``<s> tokens </s>`` for every non-empty line."""
    texts = [t.strip() for t in texts if t.strip()]
    if not texts:
        return []
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [[tokenizer.bos_token_id, *x, tokenizer.eos_token_id] for x in ids]


def padded_rows(lines: List[List[int]], max_len: int, pad_id: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """One line per row (truncated to ``max_len``), right-padded: ``(input_ids, mask)``."""
    lines = [x[:max_len] for x in lines]
    width = max(len(x) for x in lines)
    ids = torch.full((len(lines), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(lines), width), dtype=torch.long)
    for i, x in enumerate(lines):
        ids[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    return ids, mask


def packed_rows(lines: List[List[int]], seq_len: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """All lines concatenated and cut into rows of ``seq_len`` (the ragged tail is dropped,
    unless the whole text is shorter than one row)."""
    stream = torch.tensor([t for x in lines for t in x], dtype=torch.long)
    n = len(stream) // seq_len
    rows = stream[: n * seq_len].view(n, seq_len) if n else stream.view(1, -1)
    return rows, torch.ones_like(rows)


def batch_indices(num_rows: int, batch_size: int, step: int, seed: int) -> torch.Tensor:
    """Rows of the batch at ``step``: epoch ``e`` walks a permutation seeded by ``(seed, e)``."""
    per_epoch = max(1, num_rows // batch_size)  # drop the last partial batch
    epoch, k = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_rows, generator=g)[k * batch_size : (k + 1) * batch_size]


def trim(ids: torch.Tensor, mask: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Drop the columns that are padding in every row."""
    width = int(mask.sum(1).max())
    return ids[:, :width], mask[:, :width]


# ------------------------------------------------------------------------------ evaluation


@torch.no_grad()
def evaluate(
    model: LlamaForCausalLM,
    rows: Tuple[torch.Tensor, torch.Tensor],
    batch_size: int = 64,
    device: Optional[torch.device] = None,
) -> Dict[str, float]:
    """``{"loss": mean NLL per predicted token, "ppl": its exp, "tokens": their count}``."""
    device = device or next(model.parameters()).device
    ids_all, mask_all = rows
    was_training = model.training
    model.eval()
    nll, count = 0.0, 0
    for i in range(0, len(ids_all), batch_size):
        ids, mask = trim(ids_all[i : i + batch_size], mask_all[i : i + batch_size])
        ids, mask = ids.to(device), mask.to(device)
        with _autocast(device):
            logits = model(input_ids=ids, attention_mask=mask).logits
        # predict token t+1 from the prefix up to t; padding is not predicted
        target = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
        nll += F.cross_entropy(
            logits[:, :-1].float().flatten(0, 1),
            target.flatten(),
            ignore_index=-100,
            reduction="sum",
        ).item()
        count += int((target != -100).sum())
    model.train(was_training)
    loss = nll / max(count, 1)
    return {"loss": loss, "ppl": math.exp(min(loss, 50.0)), "tokens": count}


def _autocast(device: torch.device):
    # bf16 on GPUs (no loss scaling needed); plain fp32 on CPU, where bf16 is slow or absent
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


# ---------------------------------------------------------------------------- optimisation


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW; matrices decay, norms and biases (1-D) do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=tuple(cfg.betas),
    )


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return cfg.lr * (cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * cosine)


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(
    ckpt_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    log: Dict[str, Any],
    fingerprint: Dict[str, Any],
    best_state: Optional[Dict[str, torch.Tensor]] = None,
) -> None:
    """Write ``ckpt_dir`` atomically: safetensors for tensors, JSON for everything else."""
    with atomic_dir(ckpt_dir) as tmp:
        save_model(model, str(tmp / "model.safetensors"))  # handles the tied embedding
        if best_state is not None:
            save_file(best_state, str(tmp / "best_model.safetensors"))
        opt_state = optimizer.state_dict()
        tensors, scalars = {}, {}
        for pid, state in opt_state["state"].items():
            for key, value in state.items():
                if torch.is_tensor(value):
                    tensors[f"{pid}.{key}"] = value.detach().cpu().contiguous()
                else:
                    scalars[f"{pid}.{key}"] = value
        save_file(tensors, str(tmp / "optimizer.safetensors"))
        state = {"step": step, "fingerprint": fingerprint, "optimizer_scalars": scalars, "log": log}
        atomic_write_text(tmp / CHECKPOINT_STATE, json.dumps(state, indent=1) + "\n")


def load_checkpoint(
    ckpt_dir: Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    fingerprint: Dict[str, Any],
) -> Optional[Tuple[int, Dict[str, Any], Optional[Dict[str, torch.Tensor]]]]:
    """Restore model and optimizer from ``ckpt_dir``; ``(step, log, best_state)``, or None
    when there is no usable checkpoint (absent, or written with other settings or data)."""
    state_file = ckpt_dir / CHECKPOINT_STATE
    if not state_file.is_file():
        return None
    state = json.loads(state_file.read_text())
    if state.get("fingerprint") != _jsonable(fingerprint):
        logger.warning("%s: checkpoint was written with other settings or data; starting over", ckpt_dir)
        return None
    load_model(model, str(ckpt_dir / "model.safetensors"), strict=True)  # raises on mismatch
    opt_state = optimizer.state_dict()  # param_groups as built now; state from the file
    per_param: Dict[int, Dict[str, Any]] = {}
    for key, value in load_file(str(ckpt_dir / "optimizer.safetensors")).items():
        pid, name = key.split(".", 1)
        per_param.setdefault(int(pid), {})[name] = value
    for key, value in state["optimizer_scalars"].items():
        pid, name = key.split(".", 1)
        per_param.setdefault(int(pid), {})[name] = value
    opt_state["state"] = per_param
    optimizer.load_state_dict(opt_state)
    best_file = ckpt_dir / "best_model.safetensors"
    best_state = load_file(str(best_file)) if best_file.is_file() else None
    return int(state["step"]), state["log"], best_state


def _jsonable(obj: Any) -> Any:
    """``obj`` as it reads back from JSON (tuples become lists)."""
    return json.loads(json.dumps(obj))


# ------------------------------------------------------------------------------- training


def train_causal_lm(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    train_texts: Sequence[str],
    dev_texts: Optional[Sequence[str]],
    cfg: TrainConfig,
    ckpt_dir: Optional[Path] = None,
    fingerprint: Optional[Dict[str, Any]] = None,
    device: Optional[torch.device] = None,
    stop_at_step: Optional[int] = None,
) -> Dict[str, Any]:
    """Train ``model`` in place and return the training log.

    Args:
        model, tokenizer: from :func:`build_llama` and the tokenizer it was sized for.
        train_texts, dev_texts: one sentence per item; empty items are skipped.
        cfg: optimisation settings.
        ckpt_dir: where to keep a resumable checkpoint (every ``save_every`` steps); a
            checkpoint there with the same ``fingerprint`` is resumed from.
        fingerprint: JSON-able description of everything the run depends on (settings, data);
            a checkpoint is only resumed when it matches.
        device: default CUDA when available, else CPU.
        stop_at_step: end this run after that step (checkpointing it) without changing the
            schedule, e.g. for time-limited jobs; a later call resumes.

    Returns:
        ``{"train": [{step, loss, lr}], "dev": [{step, loss, ppl, word_ppl}], "initial_dev_ppl",
        "final_dev_ppl", "selected_step", ...}``: ``final_dev_ppl`` is that of the weights
        ``model`` ends with (step ``selected_step``: the best dev evaluation with
        ``keep_best``, else the last step); ``"finished"`` is False when stopped by
        ``stop_at_step``.
    """
    cfg.validate()
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    # settings that change the trained weights; logging/checkpoint periods may differ on resume
    settings = {k: v for k, v in asdict(cfg).items() if k not in _NOT_IN_FINGERPRINT}
    fingerprint = {"train": settings, **(fingerprint or {})}

    train_lines = encode_lines(tokenizer, train_texts)
    if not train_lines:
        raise ValueError("no non-empty training text")
    max_pos = model.config.max_position_embeddings
    if cfg.seq_len > max_pos:
        raise ValueError(f"--seq_len {cfg.seq_len} exceeds the model's context ({max_pos})")
    if cfg.packing:
        train_rows = packed_rows(train_lines, cfg.seq_len)
    else:
        train_rows = padded_rows(train_lines, cfg.seq_len, tokenizer.pad_token_id)
    dev_rows = None
    dev_lines = encode_lines(tokenizer, dev_texts or [])
    # words + </s> per line: a perplexity comparable across tokenizers/vocabulary sizes
    dev_words = sum(len(t.split()) + 1 for t in dev_texts or [] if t.strip())
    if dev_lines:
        dev_lines.sort(key=len)  # batches of similar length: less padding
        dev_rows = padded_rows(dev_lines, max_pos, tokenizer.pad_token_id)
    n_tokens = sum(len(x) for x in train_lines)
    logger.info(
        "training data: %d lines, %d tokens -> %d rows of <= %d tokens (%s); dev: %d lines",
        len(train_lines),
        n_tokens,
        len(train_rows[0]),
        train_rows[0].shape[1],
        "packed" if cfg.packing else "padded",
        len(dev_lines),
    )

    if cfg.warmup_steps >= cfg.max_steps:
        logger.warning(
            "--warmup_steps %d >= --max_steps %d: the peak --lr is never reached", cfg.warmup_steps, cfg.max_steps
        )
    model.to(device).train()
    optimizer = make_optimizer(model, cfg)
    log: Dict[str, Any] = {"train": [], "dev": []}
    step = 0
    best_state: Optional[Dict[str, torch.Tensor]] = None  # CPU copy of the best weights
    if ckpt_dir is not None:
        resumed = load_checkpoint(ckpt_dir, model, optimizer, fingerprint)
        if resumed is not None:
            step, log, best_state = resumed
            logger.info("resumed from %s at step %d", ckpt_dir, step)
    log.update(
        num_parameters=num_parameters(model),
        vocab_size=len(tokenizer),
        device=str(device),
        train_lines=len(train_lines),
        train_tokens=n_tokens,
        train_rows=len(train_rows[0]),
        dev_lines=len(dev_lines),
    )

    def run_eval(at: int) -> None:
        nonlocal best_state
        if dev_rows is None or any(e["step"] == at for e in log["dev"]):
            return
        result = evaluate(model, dev_rows, cfg.eval_batch_size, device)
        word_ppl = math.exp(min(result["loss"] * result["tokens"] / dev_words, 50.0))
        entry = {
            "step": at,
            "loss": round(result["loss"], 5),
            "ppl": round(result["ppl"], 3),
            "word_ppl": round(word_ppl, 3),
        }
        log["dev"].append(entry)
        logger.info(
            "step %d: dev loss %.4f, perplexity %.2f (per word %.2f)", at, result["loss"], result["ppl"], word_ppl
        )
        # a small corpus is soon over-fitted: remember the weights of the best dev loss
        if cfg.keep_best and ("best" not in log or entry["loss"] < log["best"]["loss"]):
            log["best"] = entry
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    run_eval(step)  # step 0: untrained, about the vocabulary size
    last = min(cfg.max_steps, stop_at_step) if stop_at_step is not None else cfg.max_steps
    start_time, window = time.time(), []
    bar = tqdm(
        total=cfg.max_steps, initial=step, desc="LM pre-training", unit="step", disable=None
    )  # no bar when stderr is not a terminal (logs)
    while step < last:
        idx = batch_indices(len(train_rows[0]), cfg.batch_size, step, cfg.seed)
        ids, mask = trim(train_rows[0][idx], train_rows[1][idx])
        ids, mask = ids.to(device), mask.to(device)
        labels = ids.masked_fill(mask == 0, -100)  # the model shifts labels itself

        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with _autocast(device):
            loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        if not torch.isfinite(loss):
            raise FloatingPointError(f"step {step}: loss is {loss.item()}; try a lower --lr")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        window.append(loss.item())

        if step % cfg.log_every == 0 or step == last:
            mean = sum(window) / len(window)
            log["train"].append({"step": step, "loss": round(mean, 5), "lr": lr})
            bar.set_postfix(loss=f"{mean:.3f}", lr=f"{lr:.2e}")
            logger.info(
                "step %d/%d: train loss %.4f, lr %.2e, %.2f s/step",
                step,
                cfg.max_steps,
                mean,
                lr,
                (time.time() - start_time) / len(window),
            )
            window, start_time = [], time.time()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            run_eval(step)
        if ckpt_dir is not None and (step % cfg.save_every == 0 or step == last):
            save_checkpoint(ckpt_dir, model, optimizer, step, log, fingerprint, best_state)
    bar.close()

    log["finished"] = step >= cfg.max_steps
    log["selected_step"] = step
    if log["finished"] and best_state is not None and log["best"]["step"] != step:
        model.load_state_dict(best_state)
        log["selected_step"] = log["best"]["step"]
        logger.info(
            "keeping the weights of step %d (best dev perplexity %.2f; last %.2f)",
            log["best"]["step"],
            log["best"]["ppl"],
            log["dev"][-1]["ppl"],
        )
    if log["dev"]:
        log["initial_dev_ppl"] = log["dev"][0]["ppl"]
        selected = [e for e in log["dev"] if e["step"] == log["selected_step"]]
        log["final_dev_ppl"] = selected[0]["ppl"] if selected else None
        log["final_dev_word_ppl"] = selected[0]["word_ppl"] if selected else None
    return log


def save_pretrained_dir(
    out_dir: Path,
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerBase,
    json_files: Optional[Dict[str, Any]] = None,
) -> None:
    """Write model + tokenizer (+ extra JSON files) as one Hugging Face directory, atomically.

    The weights are stored as float32 safetensors (transformers 5 writes no pickle).
    """
    model = model.to("cpu").float()
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name, obj in (json_files or {}).items():
            atomic_write_text(tmp / name, json.dumps(obj, indent=1) + "\n")
        default_file_modes(tmp)  # transformers writes the weights owner-only


def remove_checkpoint(ckpt_dir: Optional[Path]) -> None:
    if ckpt_dir is not None and ckpt_dir.exists():
        shutil.rmtree(ckpt_dir)
