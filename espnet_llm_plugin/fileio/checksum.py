"""Content hashes of files (manifests of prepared models, datastores, training inputs)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Union


def sha256_file(path: Union[str, Path]) -> str:
    """Hex sha256 of a file's bytes, read in 4 MiB blocks (a 14 GB model never sits in memory)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()
