"""The one table of our ESPnet components, and ``register()`` that adds them to ESPnet.

ESPnet2 tasks choose components by name through module-level ``ClassChoices`` objects
(``espnet2.tasks.asr.decoder_choices`` ...). Their ``.classes`` is a plain dict, and
``build_model`` reads those module-level objects, so adding our classes there makes them
selectable from any ESPnet YAML config (``decoder: llm``).

Timing matters: register before an ESPnet task parser is built (argparse freezes
``choices`` then) and in every process that builds a model. Our CLIs and
:mod:`espnet_llm_plugin.tasks.llm_asr` (imported by spawned DDP workers) do it for you.

The table holds import paths, not classes, so listing it imports neither torch nor espnet.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

from espnet_llm_plugin.quiet import quiet_espnet_import


@dataclass(frozen=True)
class Component:
    """One registered component.

    Attributes:
        choice: ESPnet ``ClassChoices`` name in the task module, e.g. ``"postencoder"``
            (the object is ``espnet2.tasks.asr.postencoder_choices``).
        name: the key users write in YAML (lower case), e.g. ``conv1d_mlp_adapter``.
        target: ``"module.path:ClassName"`` of our implementation.
        summary: one line for ``list_components``.
    """

    choice: str
    name: str
    target: str
    summary: str

    def load(self) -> type:
        module_name, _, attr = self.target.partition(":")
        return getattr(importlib.import_module(module_name), attr)


# ESPnet task module -> our components for it. Later capabilities add rows here.
COMPONENTS: Dict[str, Tuple[Component, ...]] = {
    "espnet2.tasks.asr": (
        Component(
            choice="encoder",
            name="hf_speech",
            target="espnet_llm_plugin.asr.hf_speech_encoder:HfSpeechEncoder",
            summary="Hugging Face HuBERT/wav2vec2/WavLM encoder (local path or config), chosen layer, frozen/lora/full",
        ),
        Component(
            choice="encoder",
            name="hf_whisper",
            target="espnet_llm_plugin.asr.whisper_encoder:HfWhisperEncoder",
            summary="encoder of a Hugging Face Whisper model (local path): log-mel in torch, "
            "no 30 s padding, chosen layer, frozen/lora/full",
        ),
        Component(
            choice="model",
            name="llm_asr",
            target="espnet_llm_plugin.asr.llm_asr_model:LlmASRModel",
            summary="ESPnetASRModel + matching loss aligning adapter outputs with LLM text embeddings",
        ),
        Component(
            choice="decoder",
            name="llm",
            target="espnet_llm_plugin.asr.llm_decoder:LlmDecoder",
            summary="decoder-only Hugging Face causal LM over [prompt][speech][text], "
            "KV-cached batch scorer, frozen/lora/full",
        ),
        Component(
            choice="frontend",
            name="discrete_units",
            target="espnet_llm_plugin.frontend.discrete_units:DiscreteUnitsFrontend",
            summary="waveform -> k-means units of fbank/HuBERT/ESPnet-encoder features -> unit embeddings (or ids)",
        ),
        Component(
            choice="decoder",
            name="llm_xattn",
            target="espnet_llm_plugin.asr.llm_xattn_decoder:LlmXattnDecoder",
            summary="llm decoder + value encoder over retrieved passages and tanh-gated "
            "cross-attention blocks (data entry 'context')",
        ),
        Component(
            choice="postencoder",
            name="conv1d_mlp_adapter",
            target="espnet_llm_plugin.asr.adapter:Conv1dMlpAdapter",
            summary="Conv1d downsampling + MLP projecting encoder frames to an LLM's width",
        ),
    ),
}


class RegistryClashError(RuntimeError):
    """Raised when one of our names is already taken by a different ESPnet class."""


def components(task_module: Optional[str] = None) -> List[Tuple[str, Component]]:
    """All ``(task_module, component)`` rows, optionally for one task module."""
    return [
        (module, comp)
        for module, comps in COMPONENTS.items()
        if task_module is None or module == task_module
        for comp in comps
    ]


def _choices_object(task: object, comp: Component, task_module: str):
    attr = f"{comp.choice}_choices"
    choices = getattr(task, attr, None)
    if choices is None or not hasattr(choices, "classes"):
        raise RegistryClashError(
            f"{task_module} has no ClassChoices '{attr}' for component '{comp.name}' "
            f"({comp.target}); is the installed espnet the tested release?"
        )
    return choices


def register_components(task_module: str, comps: Iterable[Component]) -> List[Tuple[str, str]]:
    """Add ``comps`` to the ``ClassChoices`` of ``task_module``.

    Idempotent: a name already bound to the same class is left alone. A name bound to a
    different class (ESPnet's own or another plugin's) raises :class:`RegistryClashError`
    and nothing of this call is added, so a clash never leaves ESPnet half-patched.

    Returns:
        ``[(choice, name)]`` newly added by this call.
    """
    with quiet_espnet_import():
        task = importlib.import_module(task_module)
    plan = []
    for comp in comps:
        if comp.name != comp.name.lower() or comp.name in ("none", "nil", "null"):
            raise ValueError(f"component name must be lower case and not reserved: {comp.name!r}")
        choices = _choices_object(task, comp, task_module)
        cls = comp.load()
        existing = choices.classes.get(comp.name)
        if existing is cls:
            continue
        if existing is not None:
            raise RegistryClashError(
                f"'{comp.name}' is already a {comp.choice} choice in {task_module} "
                f"({existing.__module__}.{existing.__qualname__}); refusing to replace it "
                f"with {comp.target}"
            )
        if choices.base_type is not None and not issubclass(cls, choices.base_type):
            raise TypeError(f"{comp.target} must subclass {choices.base_type.__name__} to be an ESPnet {comp.choice}")
        plan.append((choices, comp, cls))
    # second pass: all checks passed, now mutate
    for choices, comp, cls in plan:
        choices.classes[comp.name] = cls
    return [(comp.choice, comp.name) for _, comp, _ in plan]


def register() -> List[Tuple[str, str]]:
    """Register every component of :data:`COMPONENTS` (idempotent)."""
    added = []
    for task_module, comps in COMPONENTS.items():
        added += register_components(task_module, comps)
    return added
