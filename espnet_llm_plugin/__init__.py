"""espnet-llm-plugin: large-language-model components for ESPnet.

Importing this package is cheap (no torch, no espnet). Call :func:`register` to add our
components to ESPnet's ``ClassChoices`` before an ESPnet task parser is built; our CLIs
(``python -m espnet_llm_plugin.bin.asr_train`` ...) do this for you.
"""

__version__ = "0.1.0"


def register() -> list:
    """Add every component of :mod:`espnet_llm_plugin.registry` to ESPnet (idempotent)."""
    from espnet_llm_plugin.registry import register as _register

    return _register()


__all__ = ["__version__", "register"]
