"""Narrow fixes for ESPnet behaviour that breaks on data this plugin trains with.

Each fix wraps one ESPnet function, keeps its result wherever ESPnet's own code works,
and is applied once (idempotent) when our task module is imported.

* Validation batches made only of non-speech segments (empty transcripts) make
  ``ErrorCalculator.calculate_cer/calculate_wer`` divide by zero reference characters.
  An error rate is undefined there: we report ``None``, which ESPnet's reporter skips.
"""

from __future__ import annotations

import functools

_APPLIED = False


def _none_on_empty_references(method):
    @functools.wraps(method)
    def wrapper(self, seqs_hat, seqs_true):
        if all(len(ref.replace(" ", "")) == 0 for ref in seqs_true):
            return None
        return method(self, seqs_hat, seqs_true)

    wrapper.__espnet_llm_plugin_fix__ = True
    return wrapper


def apply_espnet_fixes() -> None:
    global _APPLIED
    if _APPLIED:
        return
    from espnet.nets.e2e_asr_common import ErrorCalculator

    for name in ("calculate_cer", "calculate_wer"):
        method = getattr(ErrorCalculator, name)
        if not getattr(method, "__espnet_llm_plugin_fix__", False):
            setattr(ErrorCalculator, name, _none_on_empty_references(method))
    _APPLIED = True
