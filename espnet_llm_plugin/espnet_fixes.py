"""Narrow fixes for ESPnet behaviour that breaks on data this plugin trains with, or that is unsafe.

Each fix wraps one ESPnet function (or one name an ESPnet module looks up), keeps its result
wherever ESPnet's own code works, and is applied once (idempotent) when our task module is
imported (``espnet_llm_plugin.tasks.llm_asr``, which every CLI that trains or decodes imports,
also in spawned DDP workers).

* Validation batches made only of non-speech segments (empty transcripts) make
  ``ErrorCalculator.calculate_cer/calculate_wer`` divide by zero reference characters.
  An error rate is undefined there: we report ``None``, which ESPnet's reporter skips.

* Checkpoint files: ESPnet reads ``.pth`` files with ``torch.load(weights_only=False)``, i.e.
  unpickles arbitrary objects, so a crafted file runs code when it is read: ``--resume``
  (``Trainer.resume``), ``--init_param`` (``load_pretrained_model``), decoding and feature
  extraction (``AbsTask.build_model_from_file``) and n-best averaging. And it writes
  ``checkpoint.pth`` and ``<N>epoch.pth`` in place, so a full disk or a kill leaves a truncated
  file that the next ``--resume`` fails on with a zip-reader error. In exactly the four ESPnet
  modules that read or write checkpoints (:data:`CHECKPOINT_MODULES`), the module-level name
  ``torch`` is replaced by a stand-in whose ``load`` is :func:`load_checkpoint` (always
  ``weights_only=True``, clear errors naming the file) and whose ``save`` is
  :func:`save_checkpoint` (temp file + rename); every other attribute is torch's own. torch
  itself, and every other module, are untouched.
"""

from __future__ import annotations

import datetime
import functools
import importlib
import os
import pickle
import re
import types
import zipfile
from pathlib import Path
from typing import Any, List, Optional

import numpy as np
import torch
from espnet.nets.e2e_asr_common import ErrorCalculator

from espnet_llm_plugin.fileio.atomic import atomic_path

_APPLIED = False

# ESPnet modules whose ``torch.load``/``torch.save`` calls read or write checkpoint files
CHECKPOINT_MODULES = (
    "espnet2.tasks.abs_task",  # build_model_from_file (decoding, LM, features)
    "espnet2.train.trainer",  # resume (checkpoint.pth) and the per-epoch saves
    "espnet2.main_funcs.average_nbest_models",  # reads epoch files, writes the average
    "espnet2.torch_utils.load_pretrained_model",  # --init_param
)


class CheckpointLoadError(ValueError):
    """A checkpoint file that cannot be loaded (truncated, or not safe to unpickle)."""


class UnsafeCheckpointError(CheckpointLoadError):
    """A checkpoint holding objects that unpickling would construct or call (code from the file)."""


def _none_on_empty_references(method):
    @functools.wraps(method)
    def wrapper(self, seqs_hat, seqs_true):
        if all(len(ref.replace(" ", "")) == 0 for ref in seqs_true):
            return None
        return method(self, seqs_hat, seqs_true)

    wrapper.__espnet_llm_plugin_fix__ = True
    return wrapper


def checkpoint_safe_globals() -> List[Any]:
    """Non-tensor types ESPnet's ``checkpoint.pth`` holds, allowed on top of torch's own list.

    The reporter's statistics are numpy scalars (``numpy.dtype`` + ``multiarray.scalar``, which
    only rebuild a number from bytes) and ``datetime.timedelta`` values; none can call code.
    """
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    allowed: List[Any] = [core.multiarray.scalar, np.dtype, datetime.timedelta]
    dtypes = getattr(np, "dtypes", None)  # numpy >= 1.25 pickles dtypes by class
    if dtypes is not None:
        for kind in (
            np.bool_,
            np.int8,
            np.int16,
            np.int32,
            np.int64,
            np.uint8,
            np.uint16,
            np.uint32,
            np.uint64,
            np.float16,
            np.float32,
            np.float64,
            np.complex64,
            np.complex128,
        ):
            allowed.append(type(np.dtype(kind)))
    return allowed


def _damage(f: Any) -> Optional[str]:
    """What is wrong with the file at path ``f`` on sight, or None (a file object: None).

    torch writes zip archives (``PK``) whose directory is at the end, so a write cut short
    leaves a zip start without that directory; older torch wrote a pickle (``\\x80``).
    """
    if not isinstance(f, (str, os.PathLike)):
        return None
    path = Path(f)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(4)
    except OSError:
        return None
    if size == 0:
        return "truncated checkpoint (an empty file): its writing was cut short (a full disk, or a killed process)"
    if head == b"PK\x03\x04" and not zipfile.is_zipfile(path):
        return (
            f"truncated or corrupt checkpoint ({size} bytes, not a complete PyTorch archive): its "
            f"writing was cut short (a full disk, or a killed process)"
        )
    if head[:1] not in (b"P", b"\x80"):
        return f"not a PyTorch checkpoint (a {size}-byte file that is neither a zip archive nor a pickle)"
    return None


def _damage_error(f: Any, damage: str) -> CheckpointLoadError:
    path = Path(f)
    msg = f"{path}: {damage}"
    if path.name == "checkpoint.pth":
        msg += (
            f". --resume cannot continue from it: remove it to train again from the start "
            f"(--init_param {path.parent}/<N>epoch.pth starts from a complete epoch's weights)"
        )
    return CheckpointLoadError(msg)


def load_checkpoint(f: Any, map_location: Any = None, **kwargs: Any) -> Any:
    """``torch.load(f, map_location, weights_only=True)`` with clear errors naming ``f``.

    A ``weights_only`` argument is ignored: the load is always weights-only (tensors, plain
    containers, numbers, strings and :func:`checkpoint_safe_globals`).

    Raises:
        UnsafeCheckpointError: the file holds other objects (it could run code when unpickled).
        CheckpointLoadError: the file is empty, a truncated archive, or no checkpoint at all.
    """
    kwargs.pop("weights_only", None)
    try:
        with torch.serialization.safe_globals(checkpoint_safe_globals()):
            return torch.load(f, map_location=map_location, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        damage = _damage(f)
        if damage is not None:
            raise _damage_error(f, damage) from e
        found = re.search(r"WeightsUnpickler error: ([^\n]*?)(?: was not an allowed global.*)?$", str(e), re.M)
        if found is None:
            raise CheckpointLoadError(f"{f}: not a readable PyTorch checkpoint ({str(e).strip()[:200]})") from e
        raise UnsafeCheckpointError(
            f"{f}: refused to load: the file holds Python objects beyond tensors and plain "
            f"containers ({found.group(1)}); unpickling them would run code from the file. "
            f"Checkpoints written by ESPnet or espnet-llm-plugin never need that: do not use a file "
            f"of unknown origin; a trusted one can be re-saved as a plain state dict of tensors"
        ) from e
    except (RuntimeError, EOFError, OSError, KeyError, ValueError) as e:  # torch's readers: any of these
        damage = _damage(f)
        if damage is not None:
            raise _damage_error(f, damage) from e
        raise


def save_checkpoint(obj: Any, f: Any, *args: Any, **kwargs: Any) -> None:
    """``torch.save``, written to a temp sibling and renamed into place when complete when
    ``f`` is a path (a file object is written as given)."""
    if isinstance(f, (str, os.PathLike)):
        with atomic_path(f) as tmp:
            torch.save(obj, tmp, *args, **kwargs)
    else:
        torch.save(obj, f, *args, **kwargs)


class _CheckpointTorch(types.ModuleType):
    """``torch`` as ESPnet's checkpoint modules see it: ``load``/``save`` replaced, all else torch."""

    def __init__(self) -> None:
        super().__init__("torch", __doc__)
        self.load = load_checkpoint
        self.save = save_checkpoint

    def __getattr__(self, name: str) -> Any:
        return getattr(torch, name)


_CHECKPOINT_TORCH = _CheckpointTorch()


def apply_espnet_fixes() -> None:
    global _APPLIED
    if _APPLIED:
        return

    for name in ("calculate_cer", "calculate_wer"):
        method = getattr(ErrorCalculator, name)
        if not getattr(method, "__espnet_llm_plugin_fix__", False):
            setattr(ErrorCalculator, name, _none_on_empty_references(method))
    for name in CHECKPOINT_MODULES:
        module = importlib.import_module(name)
        if getattr(module, "torch", None) is torch:
            module.torch = _CHECKPOINT_TORCH
    _APPLIED = True
