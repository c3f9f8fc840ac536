"""Silence the noise ESPnet makes at import time on an offline machine.

Importing ``espnet2.tasks.asr`` pulls in ``g2p_en``, which calls ``nltk.download`` for two
corpora (two multi-line urlopen errors when offline), and ESPnet's attention module prints
"Failed to import Flash Attention ..." when ``flash_attn`` is absent. Neither matters for
ASR. We drop exactly those messages and let everything else through.
"""

from __future__ import annotations

import contextlib
import io
import logging
import sys
from typing import Iterator

# Lines (prefixes) known to be harmless; everything else is passed on unchanged.
_HARMLESS_PREFIXES = (
    "Failed to import Flash Attention",
    "[nltk_data]",
)

logger = logging.getLogger(__name__)


def _silent_nltk_download(*args, **kwargs) -> bool:
    logger.debug("skipped nltk.download%s (offline; not needed for ASR)", args)
    return False


@contextlib.contextmanager
def quiet_espnet_import() -> Iterator[None]:
    """Context manager around an ESPnet import: no nltk download attempts, no known noise."""
    nltk, patched = None, None
    try:
        import nltk  # espnet's g2p_en needs it; an optional dependency of ours

        patched = nltk.download
        nltk.download = _silent_nltk_download
    except ImportError:
        pass
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            yield
    finally:
        if patched is not None:
            nltk.download = patched
        for captured, stream in ((out, sys.stdout), (err, sys.stderr)):
            kept = [
                line
                for line in captured.getvalue().splitlines(keepends=True)
                if not line.lstrip().startswith(_HARMLESS_PREFIXES)
            ]
            if kept:
                stream.write("".join(kept))
