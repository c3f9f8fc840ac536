"""espnet-llm-plugin: large-language-model components for ESPnet.

Importing this package is cheap (no torch, no espnet). Call :func:`register` to add our
components to ESPnet's ``ClassChoices`` before an ESPnet task parser is built; our CLIs
(``python -m espnet_llm_plugin.bin.asr_train`` ...) do this for you, and so does importing
:class:`Speech2Text` (loaded on first access):

    from espnet_llm_plugin import Speech2Text
    speech2text = Speech2Text.from_packed("asr_pack.zip")
    print(speech2text("utt.wav")[0].text)
"""

from typing import Any

__version__ = "0.1.0"


def register() -> list:
    """Add every component of :mod:`espnet_llm_plugin.registry` to ESPnet (idempotent)."""
    from espnet_llm_plugin.registry import register as _register

    return _register()


def __getattr__(name: str) -> Any:
    # lazy: ``import espnet_llm_plugin`` stays cheap; the API imports torch and espnet
    if name == "Speech2Text":
        from espnet_llm_plugin.decoding.speech2text import Speech2Text

        return Speech2Text
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Speech2Text", "__version__", "register"]
