"""Which torch device a ``--device`` option means: one rule for every CLI and library class."""

import re

import torch

_EXPLICIT = re.compile(r"^(cpu|cuda(:\d+)?)$")


class DeviceError(ValueError):
    """A device name that is malformed or names hardware this machine does not have."""


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` -> ``cuda`` when a GPU is present, else ``cpu``; ``cpu``, ``cuda`` and
    ``cuda:N`` as given. Asking for CUDA without a GPU is an error, not a silent CPU run."""
    name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not _EXPLICIT.match(name):
        raise DeviceError(f"--device must be auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceError(f"--device {name}: no CUDA device is available")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    return torch.device(name)


def setup_torch(device: str = "auto", num_threads: int = 0) -> torch.device:
    """A CLI's ``--num_threads`` (0: torch's default) and ``--device`` applied: the device."""
    if num_threads > 0:
        torch.set_num_threads(num_threads)
    return resolve_device(device)
