"""A frozen pretrained base + a trainable delta: checkpoints that store only what was trained.

A module that wraps a pretrained model (the LLM of ``LlmDecoder``, the SSL model of
``HfSpeechEncoder``) loads its base weights from a local directory at construction, and under
``finetune: frozen`` or ``lora`` never changes them. ESPnet's trainer saves ``model.state_dict()``
every epoch, which would copy the whole base into each ``<N>epoch.pth`` (540 MB for a 135M
LLM, 14 GB for a 7B one). :func:`track_frozen_base` installs two hooks on such a module:

* ``state_dict()`` leaves out the base parameters that are frozen (``requires_grad`` False at
  save time) and adds a reference to the base instead: ``<prefix>frozen_base.sha256`` (the
  content hash of the base's weight files, :func:`base_content_hash`, taken when the hooks are
  installed, i.e. right after the base was loaded) and
  ``<prefix>frozen_base.path`` (the directory it was loaded from). Everything trained (LoRA,
  heads, adapters, unfrozen base parameters) is saved as before. With nothing frozen
  (``finetune: full``) the state dict is exactly torch's.
* ``load_state_dict()`` consumes that reference: it refuses a checkpoint whose base hash differs
  from the base this module loaded (:class:`BaseMismatchError`), then fills the omitted keys
  with the module's own base tensors, so ``strict=True`` loading (ESPnet's ``--resume``,
  ``--init_param``) passes. A checkpoint without a reference (full fine-tuning, or written
  before this module existed) loads exactly as before.

The reference is stored as float64 tensors of byte values (0..255): ESPnet's
``average_nbest_models`` sums every entry over the n-best epoch files and divides float tensors
by n (integer tensors are only summed: an integer reference would come out n times itself);
sums of small integers in float64 are exact, so the average is the reference itself. Tensors
also keep the files loadable with ``torch.load(weights_only=True)``.

The base set (which parameters count as base) is fixed when the hooks are installed: the
parameters of the wrapped pretrained module that are frozen right after construction. Adapters
added later (LoRA layers are trainable, cross-attention blocks are created afterwards) and
parameters a user freezes later (ESPnet's ``--freeze_param``) are not base and are always saved.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, FrozenSet, List, Optional, Tuple, Union

import torch

from espnet_llm_plugin.fileio.checksum import sha256_file

logger = logging.getLogger(__name__)

# Top-level files of a Hugging Face directory that hold weights (from_pretrained reads these).
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")
# Written by ``prepare_pretrained`` (espnet_llm_plugin.pretrained): ``{"files": {name: {"sha256",
# "size"}}}``. Named here, not imported, so that core/ does not depend on a method package.
MANIFEST = "pretrained_manifest.json"
SHA256_KEY = "frozen_base.sha256"
PATH_KEY = "frozen_base.path"

Signature = Tuple[Tuple[str, int, int], ...]  # (file name, size, mtime_ns) per weight file

# (resolved directory, signature) -> hex digest: a base is hashed once per process
_HASH_CACHE: Dict[Tuple[str, Signature], str] = {}


class BaseMismatchError(ValueError):
    """A checkpoint was trained on another base than the one this model loaded."""


def weight_files(base_dir: Union[str, Path]) -> List[Path]:
    """The weight files directly in ``base_dir``, sorted by name.

    Raises:
        ValueError: the directory has none.
    """
    d = Path(base_dir)
    files = (
        sorted((p for p in d.iterdir() if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES)), key=lambda p: p.name)
        if d.is_dir()
        else []
    )
    if not files:
        raise ValueError(
            f"{d}: no weight files ({', '.join('*' + s for s in WEIGHT_SUFFIXES)}) to hash; "
            f"expected a directory written by save_pretrained"
        )
    return files


def _signature(files: List[Path]) -> Signature:
    out = []
    for p in files:
        st = p.stat()
        out.append((p.name, int(st.st_size), int(st.st_mtime_ns)))
    return tuple(out)


def _recorded_hashes(d: Path) -> Dict[str, Tuple[str, int, int]]:
    """``{file name: (sha256, size, manifest mtime_ns)}`` from the manifest, or ``{}``."""
    path = d / MANIFEST
    if not path.is_file():
        return {}
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        mtime = path.stat().st_mtime_ns
        return {name: (str(e["sha256"]), int(e["size"]), mtime) for name, e in files.items()}
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        logger.warning("%s: unreadable (%s); hashing the weight files instead", path, e)
        return {}


def base_content_hash(base_dir: Union[str, Path]) -> str:
    """sha256 over the weight files of a model directory (hex), computed once per process.

    The digest is the sha256 of the lines ``"<file name>\\t<sha256 of the file>\\n"`` over the
    weight files (:func:`weight_files`) in name order, so renaming or re-sharding changes it and
    the order of the directory listing does not. A file's own sha256 is taken from
    ``pretrained_manifest.json`` when the manifest lists it with the file's size and the file is
    not newer than the manifest (``prepare_pretrained`` writes the manifest after the weights);
    otherwise the file is read. A 7B model is therefore not re-read on every load.
    """
    d = Path(base_dir)
    files = weight_files(d)
    signature = _signature(files)
    manifest = [d / MANIFEST] if (d / MANIFEST).is_file() else []
    key = (str(d.resolve()), signature + _signature(manifest))
    cached = _HASH_CACHE.get(key)
    if cached is not None:
        return cached
    recorded = _recorded_hashes(d)
    total = hashlib.sha256()
    for p, (name, size, mtime) in zip(files, signature):
        entry = recorded.get(name)
        if entry is not None and entry[1] == size and mtime <= entry[2]:
            digest = entry[0]
        else:
            logger.info("hashing %s (%.1f MB; once per process)", p, size / 1e6)
            digest = sha256_file(p)
        total.update(f"{name}\t{digest}\n".encode("utf-8"))
    _HASH_CACHE[key] = total.hexdigest()
    return _HASH_CACHE[key]


def _bytes_to_tensor(data: bytes) -> torch.Tensor:
    return torch.tensor(list(data), dtype=torch.float64)


def _tensor_to_bytes(value: Any, key: str) -> bytes:
    """Inverse of :func:`_bytes_to_tensor`; refuses anything that is not a byte string."""
    if not isinstance(value, torch.Tensor) or value.dim() != 1:
        raise ValueError(
            f"checkpoint entry {key}: expected a 1-D tensor of byte values, got "
            f"{type(value).__name__}{tuple(getattr(value, 'shape', ()))}"
        )
    values = value.detach().to("cpu", torch.float64)
    if not bool(((values >= 0) & (values <= 255) & (values == values.round())).all()):
        raise ValueError(
            f"checkpoint entry {key} is not a base reference (values other than bytes 0..255): "
            f"was it averaged over checkpoints of different base models?"
        )
    return bytes(int(v) for v in values.tolist())


class FrozenBase:
    """The hooks of one module whose frozen base parameters are referenced, not saved.

    Args:
        base_dir: the directory the base weights were loaded from.
        names: parameter names (relative to the hooked module) that are base parameters.
        where: the config key of ``base_dir``, for messages (``decoder_conf.llm_path``).
    """

    def __init__(self, base_dir: Union[str, Path], names: FrozenSet[str], where: str):
        self.base_dir = str(base_dir)
        self.names = frozenset(names)
        self.where = where
        # hashed now, right after the base was loaded: the reference describes the weights in
        # memory even if the directory changes later (free with a manifest; else once per
        # process, from the page cache the loading just filled). Nothing frozen: on demand.
        self._sha256: Optional[str] = base_content_hash(base_dir) if self.names else None
        self._handles: List[Any] = []

    @property
    def sha256(self) -> str:
        """Content hash (hex) of the base weight files as they were when the base was loaded."""
        if self._sha256 is None:
            self._sha256 = base_content_hash(self.base_dir)
        return self._sha256

    def omitted_keys(self, module: torch.nn.Module) -> List[str]:
        """Names of the base parameters a ``state_dict()`` of ``module`` leaves out now."""
        return [
            n for n, p in module.named_parameters(remove_duplicate=False) if n in self.names and not p.requires_grad
        ]

    # ------------------------------------------------------------------ hooks
    def on_state_dict(
        self, module: torch.nn.Module, state_dict: Dict[str, Any], prefix: str, local_metadata: Dict[str, Any]
    ) -> None:
        """``state_dict`` post-hook: drop frozen base parameters, add the base reference."""
        omitted = [prefix + n for n in self.omitted_keys(module)]
        omitted = [k for k in omitted if k in state_dict]
        if not omitted:
            return  # nothing frozen: torch's state dict, no reference
        for key in omitted:
            del state_dict[key]
        state_dict[prefix + SHA256_KEY] = _bytes_to_tensor(bytes.fromhex(self.sha256))
        state_dict[prefix + PATH_KEY] = _bytes_to_tensor(self.base_dir.encode("utf-8"))

    def on_load(
        self,
        module: torch.nn.Module,
        state_dict: Dict[str, Any],
        prefix: str,
        local_metadata: Dict[str, Any],
        strict: bool,
        missing_keys: List[str],
        unexpected_keys: List[str],
        error_msgs: List[str],
    ) -> None:
        """``load_state_dict`` pre-hook: check the base reference, fill the omitted keys.

        Runs before this module and its children read ``state_dict`` (torch hands the
        children the entries of this dict), so the filled keys reach the LLM's layers.
        """
        sha_t = state_dict.pop(prefix + SHA256_KEY, None)
        path_t = state_dict.pop(prefix + PATH_KEY, None)
        if sha_t is None and path_t is None:
            return  # a full checkpoint: every key is in it
        if sha_t is None or path_t is None:
            present, absent = (PATH_KEY, SHA256_KEY) if sha_t is None else (SHA256_KEY, PATH_KEY)
            raise ValueError(f"checkpoint has {prefix}{present} but not {prefix}{absent}: an incomplete base reference")
        saved = _tensor_to_bytes(sha_t, prefix + SHA256_KEY).hex()
        saved_path = _tensor_to_bytes(path_t, prefix + PATH_KEY).decode("utf-8", errors="replace")
        current = self.sha256
        if saved != current:
            raise BaseMismatchError(
                f"{self.where}: the checkpoint stores only the parameters trained on top of the "
                f"base model {saved_path} (weights sha256 {saved}), but {self.where} = "
                f"{self.base_dir} holds weights with sha256 {current}. Point {self.where} in "
                f"config.yaml at the base the checkpoint was trained with, unchanged (or load a "
                f"checkpoint trained on this base)."
            )
        for name, param in module.named_parameters(remove_duplicate=False):
            if name in self.names:
                # the module's own tensor: copy_ onto itself is a no-op, even for 7B weights
                state_dict.setdefault(prefix + name, param)

    def remove(self) -> None:
        """Remove the hooks: ``state_dict`` / ``load_state_dict`` behave as torch's again."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()


def track_frozen_base(
    module: torch.nn.Module,
    base: torch.nn.Module,
    base_dir: Union[str, Path],
    where: str,
) -> FrozenBase:
    """Make ``module``'s checkpoints store its trained parameters and a reference to ``base``.

    Call once, at the end of ``module.__init__``, after the fine-tuning scheme froze the base.

    Args:
        module: the module whose ``state_dict`` / ``load_state_dict`` are hooked (the ESPnet
            decoder or encoder).
        base: the pretrained model inside ``module`` (peft-wrapped or not) loaded from
            ``base_dir``; its parameters that are frozen now form the base set.
        base_dir: the local directory the base was loaded from.
        where: the config key naming ``base_dir`` (``decoder_conf.llm_path``), for messages.

    Returns:
        The :class:`FrozenBase` (also ``module._frozen_base``).
    """
    frozen = {id(p) for p in base.parameters() if not p.requires_grad}
    names = frozenset(n for n, p in module.named_parameters(remove_duplicate=False) if id(p) in frozen)
    tracker = FrozenBase(base_dir, names, where)
    # partials, not bound methods: torch marks the hook objects (a method takes no attributes)
    tracker._handles.append(module.register_state_dict_post_hook(functools.partial(FrozenBase.on_state_dict, tracker)))
    tracker._handles.append(module.register_load_state_dict_pre_hook(functools.partial(FrozenBase.on_load, tracker)))
    module._frozen_base = tracker
    logger.info(
        "%s: checkpoints store the trained parameters and a reference to %s (%d frozen base parameters left out)",
        where,
        base_dir,
        len(names),
    )
    return tracker


def checkpoint_base_reference(state_dict: Dict[str, Any], prefix: str = "") -> Optional[Tuple[str, str]]:
    """``(sha256 hex, base path)`` of the base reference at ``prefix`` in a state dict, or None."""
    sha_t, path_t = state_dict.get(prefix + SHA256_KEY), state_dict.get(prefix + PATH_KEY)
    if sha_t is None or path_t is None:
        return None
    return (
        _tensor_to_bytes(sha_t, prefix + SHA256_KEY).hex(),
        _tensor_to_bytes(path_t, prefix + PATH_KEY).decode("utf-8", errors="replace"),
    )


__all__ = [
    "BaseMismatchError",
    "FrozenBase",
    "MANIFEST",
    "PATH_KEY",
    "SHA256_KEY",
    "base_content_hash",
    "checkpoint_base_reference",
    "track_frozen_base",
    "weight_files",
]
