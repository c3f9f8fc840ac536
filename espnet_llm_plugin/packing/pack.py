"""Pack a trained model: an experiment's config + checkpoint -> a pack (see :mod:`.layout`).

Every string of ``config.yaml`` and of the decode config that names an existing file or
directory is handled by what it is:

* a directory holding model weights (``decoder_conf.llm_path``, an SSL encoder's path,
  ``hf_lm_path``, a kNN-LM key encoder) is a **base model**: not copied, but referenced in
  ``pack.json`` by name, content hash (:func:`~espnet_llm_plugin.core.base_weights.base_content_hash`),
  the ``prepare_pretrained`` name when it came from the catalog, and its licence; the value
  becomes ``bases/<name>``, which unpacking links to the base found on the other machine.
  ``bpemodel`` naming such a directory (``token_type: hugging_face``) is its tokenizer:
  the tokenizer files are copied to ``tokenizer/``.
* ``knnlm_datastore`` (decode config): the datastore's manifest is copied to ``datastore/``
  (the whole datastore with ``include_datastore``).
* any other file or directory is copied to ``assets/``.
* keys used only by training (data lists, shape files, output_dir, init_param) keep their
  value relative to the recipe directory, or only the file name: provenance, not used.

The checkpoint's trained parameters are written as safetensors; the base reference inside it
(``<prefix>frozen_base.path``) is rewritten to the pack-relative base link.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import shlex
import shutil
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

from espnet_llm_plugin import __version__
from espnet_llm_plugin.core.base_weights import (
    MANIFEST as BASE_MANIFEST,
)
from espnet_llm_plugin.core.base_weights import (
    PATH_KEY,
    SHA256_KEY,
    WEIGHT_SUFFIXES,
    _bytes_to_tensor,
    base_content_hash,
    checkpoint_base_reference,
)
from espnet_llm_plugin.espnet_fixes import load_checkpoint
from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_path, atomic_write_text
from espnet_llm_plugin.packing import layout
from espnet_llm_plugin.packing.layout import PackError
from espnet_llm_plugin.packing.model_card import model_card
from espnet_llm_plugin.pretrained.catalog import CATALOG
from espnet_llm_plugin.retrieval.datastore import read_manifest

logger = logging.getLogger(__name__)

# config.yaml keys that only training reads: their paths are kept as provenance, not packed
TRAINING_ONLY_KEYS = frozenset(
    {
        "config",
        "output_dir",
        "train_shape_file",
        "valid_shape_file",
        "train_data_path_and_name_and_type",
        "valid_data_path_and_name_and_type",
        "init_param",
        "pretrain_path",
        "noise_scp",
        "rir_scp",
        "deepspeed_config",
        "wandb_project",
        "wandb_name",
    }
)
# keys whose strings are never paths (ESPnet's criteria name the "valid" split, a dir in recipes)
NON_PATH_KEYS = frozenset(
    {"best_model_criterion", "val_scheduler_criterion", "early_stopping_criterion", "required", "version"}
)
DATASTORE_KEY = "knnlm_datastore"


def _looks_like_path(value: str) -> bool:
    """A directory path (with a separator) or a file name with a suffix (``tokens.txt``)."""
    return os.sep in value or "/" in value or (Path(value).suffix != "" and " " not in value)


DATASTORE_MANIFEST = "manifest.json"


def _has_weights(d: Path) -> bool:
    return d.is_dir() and any(p.is_file() and p.name.endswith(WEIGHT_SUFFIXES) for p in d.iterdir())


def _catalog_entry(base_dir: Path) -> Dict[str, Any]:
    """``prepare_pretrained`` name, licence and origin of a prepared base, from its manifest."""
    info: Dict[str, Any] = {"prepare_pretrained": None, "licence": None, "origin": None}
    try:
        manifest = json.loads((base_dir / BASE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return info
    name = manifest.get("name") if isinstance(manifest, dict) else None
    if name in CATALOG:
        spec = CATALOG[name]
        info.update(prepare_pretrained=name, licence=spec.licence, origin=spec.origin)
    elif isinstance(manifest, dict):
        info.update(licence=manifest.get("licence"), origin=manifest.get("origin"))
    return info


class _Packer:
    """Copies what the configs name into the pack directory ``out`` and rewrites the paths."""

    def __init__(self, out: Path, root: Path, include_datastore: bool):
        self.out = out
        self.root = root
        self.include_datastore = include_datastore
        self.bases: Dict[str, Dict[str, Any]] = {}  # resolved dir -> pack.json entry
        self.assets: Dict[str, str] = {}  # resolved path -> pack-relative path
        self.machine_paths = {str(root)}
        self.datastore: Optional[Dict[str, Any]] = None

    def _abs(self, value: str) -> Path:
        p = Path(value)
        return (p if p.is_absolute() else self.root / p).resolve()

    def relative(self, value: str) -> str:
        """A training-only path: relative to the recipe directory, else the file name."""
        p = self._abs(value)
        try:
            return p.relative_to(self.root).as_posix()
        except ValueError:
            return p.name

    # ---------------------------------------------------------------- bases, assets
    def base(self, d: Path, key: str) -> str:
        """Reference the base model directory ``d``; returns its pack-relative link."""
        entry = self.bases.get(str(d))
        if entry is None:
            names = {e["name"] for e in self.bases.values()}
            name, i = d.name, 2
            while name in names:
                name, i = f"{d.name}_{i}", i + 1
            entry = {
                "name": name,
                "link": f"{layout.BASES}/{name}",
                "sha256": base_content_hash(d),
                "keys": [],
                **_catalog_entry(d),
            }
            self.bases[str(d)] = entry
            self.machine_paths.add(str(d))
            logger.info("base model %s (%s): referenced by hash %s", name, d, entry["sha256"][:12])
        entry["keys"].append(key)
        return entry["link"]

    def asset(self, p: Path, key: str, dest: Optional[str] = None) -> str:
        """Copy the file or directory ``p`` into the pack; returns its pack-relative path."""
        if str(p) in self.assets:
            return self.assets[str(p)]
        rel = dest or f"{layout.ASSETS}/{p.name}"
        n = 2
        while (self.out / rel).exists():
            rel, n = f"{layout.ASSETS}/{n}_{p.name}", n + 1
        target = self.out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if p.is_dir():
            shutil.copytree(p, target, symlinks=False)
        else:
            shutil.copyfile(p, target)
        self.assets[str(p)] = rel
        self.machine_paths.add(str(p.parent))
        logger.info("%s: %s -> %s", key, p, rel)
        return rel

    def tokenizer(self, d: Path, key: str) -> str:
        """The tokenizer files of model directory ``d`` (everything but weights) -> tokenizer/."""
        if str(d) in self.assets:
            return self.assets[str(d)]
        target = self.out / layout.TOKENIZER
        target.mkdir(parents=True, exist_ok=True)
        for p in sorted(d.iterdir()):
            if (
                p.is_file()
                and not p.name.endswith(WEIGHT_SUFFIXES)
                and p.name != BASE_MANIFEST
                and not p.name.endswith(".index.json")
            ):
                shutil.copyfile(p, target / p.name)
        self.assets[str(d)] = layout.TOKENIZER
        self.machine_paths.add(str(d))
        return layout.TOKENIZER

    def datastore_dir(self, d: Path, key: str) -> str:
        """A kNN-LM datastore: its manifest (machine paths reduced to names), and with
        ``include_datastore`` its other files."""
        manifest = read_manifest(d)
        target = self.out / layout.DATASTORE
        target.mkdir(parents=True, exist_ok=True)
        if self.include_datastore:
            for p in sorted(d.iterdir()):
                if p.is_file() and p.name != DATASTORE_MANIFEST:
                    shutil.copyfile(p, target / p.name)
        atomic_write_text(
            target / DATASTORE_MANIFEST, json.dumps(self._scrub(manifest), indent=2, sort_keys=True) + "\n"
        )
        self.machine_paths.add(str(d))
        self.datastore = {
            "dir": layout.DATASTORE,
            "included": self.include_datastore,
            "entries": manifest.get("count"),
            "key_encoder": self._scrub(manifest["key_encoder"]),
        }
        return layout.DATASTORE

    def _scrub(self, value: Any) -> Any:
        """Absolute paths inside a copied JSON document reduced to relative ones / names."""
        if isinstance(value, dict):
            return {k: self._scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._scrub(v) for v in value]
        if isinstance(value, str) and os.path.isabs(value):
            return self.relative(value)
        return value

    # ---------------------------------------------------------------- config values
    def rewrite(self, value: Any, key: str, where: str) -> Any:
        """``value`` of config key ``key`` (dotted) with every path made pack-relative."""
        top = key.split(".")[0]
        if isinstance(value, dict):
            return {k: self.rewrite(v, f"{key}.{k}" if key else str(k), where) for k, v in value.items()}
        if isinstance(value, list):
            return [self.rewrite(v, key, where) for v in value]
        if not isinstance(value, str) or not value:
            return value
        if top in TRAINING_ONLY_KEYS:
            if os.sep in value or os.path.isabs(value):
                return self.relative(value)
            return value
        if top in NON_PATH_KEYS or not _looks_like_path(value):
            return value  # a name or symbol ("valid", "</s>"), even where a file of that name exists
        p = self._abs(value)
        if key == DATASTORE_KEY:
            if not p.is_dir():
                raise PackError(f"{where}: {key} = {value}: datastore directory not found")
            return self.datastore_dir(p, key)
        if p.is_dir() and _has_weights(p):
            return self.tokenizer(p, key) if top == "bpemodel" else self.base(p, key)
        if p.exists():
            return self.asset(p, key)
        if os.path.isabs(value):
            raise PackError(f"{where}: {key} = {value} does not exist on this machine: cannot pack what it names")
        return value


def _token_list(config: Dict[str, Any], root: Path, where: str) -> List[str]:
    tokens = config.get("token_list")
    if isinstance(tokens, list):
        return [str(t) for t in tokens]
    if isinstance(tokens, str):
        p = Path(tokens) if os.path.isabs(tokens) else root / tokens
        if p.is_file():
            return [line.rstrip("\n") for line in p.read_text(encoding="utf-8").splitlines()]
    raise PackError(f"{where}: token_list is neither a list nor a readable file ({tokens!r})")


def _load_state(model_file: Path) -> Dict[str, Any]:
    state = load_checkpoint(model_file, map_location="cpu")
    if isinstance(state, dict) and "module" in state and isinstance(state["module"], dict):
        state = state["module"]  # a deepspeed checkpoint, as ESPnet reads it
    if not isinstance(state, dict) or "model" in state and "optimizers" in state:
        raise PackError(
            f"{model_file}: not a model state dict (a training checkpoint.pth? pack an "
            f"epoch or averaged file such as valid.acc.ave.pth)"
        )
    return state


def _rewrite_base_references(state: Dict[str, Any], packer: _Packer, model_file: Path) -> None:
    """Point each frozen-base reference in the checkpoint at its pack-relative base link."""
    for key in [k for k in state if k.endswith(PATH_KEY)]:
        prefix = key[: -len(PATH_KEY)]
        sha, path = checkpoint_base_reference(state, prefix)
        d = packer._abs(path)
        entry = packer.bases.get(str(d))
        if entry is None:
            entry = next((e for e in packer.bases.values() if e["sha256"] == sha), None)
        if entry is None:
            raise PackError(
                f"{model_file}: {prefix}{SHA256_KEY} refers to the base model {path}, which "
                f"config.yaml does not name: cannot say where unpacking finds it"
            )
        if entry["sha256"] != sha:
            raise PackError(
                f"{model_file} was trained on base {path} (sha256 {sha}), but {entry['link']} "
                f"({d}) now holds weights with sha256 {entry['sha256']}: the pack would not load"
            )
        state[key] = _bytes_to_tensor(entry["link"].encode("utf-8"))


def _write_archive(src: Path, out: Path) -> None:
    """``src``'s files as the archive ``out`` (members relative to ``src``), atomically."""
    files = sorted(p for p in src.rglob("*") if p.is_file())
    with atomic_path(out) as tmp:
        if str(out).endswith(".zip"):
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
                for p in files:
                    z.write(p, p.relative_to(src).as_posix())
        else:
            mode = "w:gz" if str(out).endswith((".tar.gz", ".tgz")) else "w"
            with tarfile.open(tmp, mode) as t:
                for p in files:
                    t.add(p, p.relative_to(src).as_posix(), recursive=False)


def pack_model(
    asr_train_config: Union[str, Path],
    asr_model_file: Union[str, Path],
    out: Union[str, Path],
    decode_config: Union[str, Path, None] = None,
    decode_options: Optional[Dict[str, Any]] = None,
    results: Sequence[Union[str, Path]] = (),
    include_datastore: bool = False,
    root: Union[str, Path, None] = None,
    title: str = "",
    data_description: str = "",
) -> Path:
    """Write the pack of a trained model to ``out`` (a directory, or a .zip/.tar/.tar.gz file).

    Args:
        asr_train_config: the experiment's ``config.yaml``.
        asr_model_file: the checkpoint to pack (an epoch or averaged file).
        decode_config: the decode YAML that produced the results (ESPnet's and our options).
        decode_options: options given on the command line besides it (they win).
        results: ``RESULTS.md`` and score files/directories to include under ``results/``.
        include_datastore: copy a kNN-LM datastore whole, not only its manifest.
        root: the directory relative paths in the configs start from (the recipe directory,
            where training ran); default: the current directory.
        title, data_description: for the model card.

    Returns:
        ``out``.

    Raises:
        PackError: something named cannot be packed (naming the key or file).
    """
    root = Path(root or os.getcwd()).resolve()
    config_path, model_file, out = Path(asr_train_config), Path(asr_model_file), Path(out)
    for p in (config_path, model_file):
        if not p.is_file():
            raise PackError(f"{p}: file not found")
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    if not isinstance(config, dict):
        raise PackError(f"{config_path}: not a YAML mapping")
    decode: Dict[str, Any] = {}
    if decode_config:
        loaded = yaml.safe_load(Path(decode_config).read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise PackError(f"{decode_config}: not a YAML mapping")
        decode.update(loaded)
    decode.update(decode_options or {})

    with tempfile.TemporaryDirectory(prefix=".pack_", dir=out.parent if out.parent.is_dir() else None) as tmp:
        work = Path(tmp) / "pack"
        work.mkdir()
        packer = _Packer(work, root, include_datastore)
        # directories of this machine that must not appear in the pack (checked at the end)
        packer.machine_paths.update(
            {
                str(config_path.resolve().parent),
                str(config_path.resolve().parent.parent),
                str(model_file.resolve().parent),
            }
        )
        packer.machine_paths.update(str(Path(r).resolve().parent) for r in results)
        tokens = _token_list(config, root, str(config_path))
        body = {k: v for k, v in config.items() if k != "token_list"}
        body = packer.rewrite(body, "", str(config_path))
        body["token_list"] = layout.TOKENS
        atomic_write_text(work / layout.TOKENS, "\n".join(tokens) + "\n")
        atomic_write_text(work / layout.CONFIG, yaml.safe_dump(body, sort_keys=False, allow_unicode=True))
        if decode:
            if (
                decode.get("knnlm_datastore")
                and decode.get("knnlm_query", "lm") == "lm"
                and not decode.get("knnlm_lm_path")
            ):
                # the key encoder the datastore names becomes an explicit, referenced base

                ds = packer._abs(str(decode["knnlm_datastore"]))
                decode["knnlm_lm_path"] = read_manifest(ds)["key_encoder"].get("model_path", "")
            decode = packer.rewrite(decode, "", str(decode_config or "decode options"))
            atomic_write_text(work / layout.DECODE, yaml.safe_dump(decode, sort_keys=False))

        state = _load_state(model_file)
        _rewrite_base_references(state, packer, model_file)
        layout.save_weights(state, work / layout.WEIGHTS)

        result_files = _copy_results(results, work, root, packer)
        meta = {
            "format": layout.FORMAT,
            "version": layout.VERSION,
            "plugin_version": __version__,
            "espnet_version": str(config.get("version", "")),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "model": {
                "config": layout.CONFIG,
                "weights": layout.WEIGHTS,
                "token_list": layout.TOKENS,
                "packed_from": model_file.name,
                "num_tensors": len(state),
                "num_parameters": int(
                    sum(v.numel() for k, v in state.items() if not k.endswith((PATH_KEY, SHA256_KEY)))
                ),
            },
            "bases": sorted(packer.bases.values(), key=lambda e: e["name"]),
            "decode_config": layout.DECODE if decode else None,
            "datastore": packer.datastore,
            "results": result_files,
        }
        card = model_card(meta, body, decode, work, title=title, data_description=data_description)
        atomic_write_text(work / layout.CARD, card)
        meta["files"] = layout.file_checksums(work)
        layout.write_meta(work, meta)
        layout.check_no_machine_paths(work, packer.machine_paths)

        if layout.is_archive(out):
            _write_archive(work, out)
        else:
            with atomic_dir(out) as d:
                for p in work.iterdir():
                    shutil.move(str(p), str(d / p.name))
    logger.info("packed %s -> %s", model_file, out)
    return out


def _copy_results(results: Sequence[Union[str, Path]], work: Path, root: Path, packer: _Packer) -> List[str]:
    """Copy result files/dirs under ``results/``, machine paths in them made relative."""
    out: List[str] = []
    for item in results:
        src = Path(item)
        if not src.exists():
            raise PackError(f"results: {src} not found (run the scoring stage first)")
        src = src.resolve()
        rel = packer.relative(str(src))
        files = [src] if src.is_file() else sorted(p for p in src.rglob("*") if p.is_file())
        for f in files:
            dest_rel = (
                f"{layout.RESULTS}/{rel}" if f == src else f"{layout.RESULTS}/{rel}/{f.relative_to(src).as_posix()}"
            )
            dest = work / dest_rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if f.suffix in layout.TEXT_SUFFIXES:
                text = f.read_text(encoding="utf-8", errors="replace")
                if f.suffix == ".json":
                    try:
                        text = json.dumps(packer._scrub(json.loads(text)), indent=2) + "\n"
                    except ValueError:
                        pass
                for d in sorted(packer.machine_paths | {str(root)}, key=len, reverse=True):
                    text = text.replace(d + os.sep, "")  # paths in the text: relative to where they were
                atomic_write_text(dest, text)
            else:
                shutil.copyfile(f, dest)
            out.append(dest_rel)
    return out


def parse_decode_args(args: str) -> Dict[str, Any]:
    """Decode options given as command-line text (``"--beam_size 5 --knnlm_weight=0.3"``, the
    recipe's ``inference_args``) -> ``{key: value}`` with YAML-typed values.

    Raises:
        PackError: a word that is not ``--key value`` / ``--key=value``.
    """
    words, out, i = shlex.split(args or ""), {}, 0
    while i < len(words):
        w = words[i]
        if not w.startswith("--") or len(w) < 3:
            raise PackError(f"decode options: expected --key value, got {w!r} in {args!r}")
        if "=" in w:
            key, raw = w[2:].split("=", 1)
            i += 1
        else:
            if i + 1 >= len(words):
                raise PackError(f"decode options: {w} needs a value")
            key, raw = w[2:], words[i + 1]
            i += 2
        out[key] = yaml.safe_load(raw) if raw != "" else ""
    return out


__all__ = ["TRAINING_ONLY_KEYS", "pack_model", "parse_decode_args"]
