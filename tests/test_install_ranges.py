"""setup.py declares ranges (so a user's in-range torch is kept) and .ci/constraints.txt pins
the exact set CI tests; these checks keep the two consistent and ask pip what it would do."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def _install_requires() -> list[Requirement]:
    for node in ast.parse((ROOT / "setup.py").read_text()).body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "install_requires":
            return [Requirement(r) for r in ast.literal_eval(node.value)]
    raise AssertionError("setup.py has no install_requires list")


def _constraints() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / ".ci" / "constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f".ci/constraints.txt: {line!r} is not an exact pin"
            pins[name.lower().replace("_", "-")] = Version(version)
    return pins


def _norm(name: str) -> str:
    return name.lower().replace("_", "-")


def test_torch_stack_is_a_range_that_admits_two_releases() -> None:
    reqs = {_norm(r.name): r for r in _install_requires()}
    for name in ("torch", "torchaudio"):
        spec = reqs[name].specifier
        assert "==" not in str(spec), f"{name} is pinned ({spec}): installing would replace a user's {name}"
        assert spec.contains("2.10.0") and spec.contains("2.11.0"), f"{name} {spec}"
    assert not reqs["torchaudio"].specifier.contains("2.11.1"), "torchaudio 2.11.1 does not load with torch 2.11"
    for name in ("transformers", "peft", "faiss-cpu"):
        assert any(s.operator == "<" for s in reqs[name].specifier), f"{name} has no upper bound"


def test_constraints_pin_every_requirement_inside_its_range() -> None:
    pins = _constraints()
    for req in _install_requires():
        name = _norm(req.name)
        assert name in pins, f".ci/constraints.txt does not pin {name} (setup.py requires it)"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f".ci/constraints.txt pins {name}=={pins[name]}, outside setup.py's range {req.specifier}"
        )


def _pip_dry_run(tmp_path: Path, *extra: str) -> list[tuple[str, str]]:
    """What pip would install into this venv for setup.py's requirements (+ extra ones)."""
    reqs = tmp_path / "requirements.txt"
    reqs.write_text("\n".join(str(r) for r in _install_requires()) + "\n")
    report = tmp_path / "report.json"
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--quiet",
        "--report",
        str(report),
        "-r",
        str(reqs),
        *extra,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    offline = ("Could not fetch", "NewConnectionError", "No matching distribution", "Could not find a version")
    if proc.returncode != 0 and extra and any(s in proc.stderr for s in offline):
        pytest.skip("the package index is unreachable")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [(i["metadata"]["name"], i["metadata"]["version"]) for i in json.loads(report.read_text())["install"]]


def test_installing_into_this_venv_changes_nothing(tmp_path: Path) -> None:
    """The venv holds an in-range torch: pip keeps it (and everything else)."""
    assert _pip_dry_run(tmp_path) == []


@pytest.mark.network
def test_an_older_in_range_torch_resolves_without_other_changes(tmp_path: Path) -> None:
    """A user's torch 2.10 stack: the plugin's requirements resolve around it; only the torch
    packages (and their CUDA runtime wheels) differ from this venv."""
    changes = _pip_dry_run(tmp_path, "torch==2.10.0", "torchaudio==2.10.0")
    names = {_norm(n) for n, _ in changes}
    assert ("torch", "2.10.0") in changes and ("torchaudio", "2.10.0") in changes
    others = {
        n for n in names if n not in {"torch", "torchaudio", "triton", "cuda-bindings"} and not n.startswith("nvidia-")
    }
    assert not others, f"a torch 2.10 stack would also change {sorted(others)}"
