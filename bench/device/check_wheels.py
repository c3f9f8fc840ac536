#!/usr/bin/env python3
"""Check the GPU-machine wheel kit in ``bench/device/wheels`` without a GPU.

1. Tags: every wheel must install on CPython 3.12, manylinux x86_64 (glibc up to 2.35).
2. Requirements: starting from ``espnet`` and ``espnet-llm-plugin``, every ``Requires-Dist``
   (markers evaluated for Python 3.12 on Linux x86_64, with the extras that are asked for) must
   be a wheel of the kit at a matching version, something the GPU machine already has
   (``PREINSTALLED``), or a package deliberately left out (``LEFT_OUT``, with the reason).
   Anything else is reported as MISSING and the exit status is 1.
3. ``--import-test`` (optional, ~20 s of one CPU core): emulates the GPU machine's package set
   with this machine's virtual environment: a directory of symlinks to exactly the installed
   distributions that are in the kit or preinstalled (found through their RECORD files),
   then, in ``python -I -S`` with only that directory as site-packages, imports what
   ``run_gpu_benchmarks.sh`` and the four GPU benchmarks import, and checks that every
   third-party module imported anywhere in ``espnet_llm_plugin/`` and ``bench/`` resolves
   (missing ones are listed with the files that import them; only those on the benchmarks'
   path are errors). The local interpreter is Python 3.11 and its packages are this venv's
   builds of the same versions, so this checks names and import structure, not the cp312
   binaries themselves.

    .venv/bin/python bench/device/check_wheels.py               # tags + requirements
    .venv/bin/python bench/device/check_wheels.py --import-test # + emulated imports
"""

from __future__ import annotations

import argparse
import ast
import email.parser
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, List, Set, Tuple

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

ROOTS = ["espnet", "espnet-llm-plugin"]

# What the GPU machine has (STACK.md: torch 2.11+cu130, torchaudio, transformers 5.17, peft,
# sentencepiece, accelerate, scipy, numba) and, as a proxy for their dependencies, the
# dependency closure of these packages in this project's venv (torch 2.11, transformers 5.24).
PREINSTALLED_ROOTS = ["torch", "torchaudio", "transformers", "peft", "sentencepiece", "accelerate", "scipy", "numba"]
PREINSTALLED = (
    set(PREINSTALLED_ROOTS)
    | {
        "annotated-doc",
        "annotated-types",
        "anyio",
        "click",
        "cuda-bindings",
        "cuda-pathfinder",
        "cuda-toolkit",
        "filelock",
        "fsspec",
        "h11",
        "hf-xet",
        "httpcore2",
        "httpx2",
        "huggingface-hub",
        "idna",
        "jinja2",
        "llvmlite",
        "markdown-it-py",
        "markupsafe",
        "mdurl",
        "mpmath",
        "networkx",
        "numpy",
        "packaging",
        "psutil",
        "pydantic",
        "pydantic-core",
        "pygments",
        "pyyaml",
        "regex",
        "rich",
        "safetensors",
        "setuptools",
        "shellingham",
        "sympy",
        "tokenizers",
        "tqdm",
        "triton",
        "truststore",
        "typer",
        "typing-extensions",
        "typing-inspection",
        # transformers 5.17 (the GPU machine's) uses httpx/httpcore rather than httpx2/httpcore2
        "httpx",
        "httpcore",
        "typer-slim",
    }
    | {
        f"nvidia-{n}"
        for n in (
            "cublas",
            "cuda-cupti",
            "cuda-nvrtc",
            "cuda-runtime",
            "cudnn-cu13",
            "cufft",
            "cufile",
            "curand",
            "cusolver",
            "cusparse",
            "cusparselt-cu13",
            "nccl-cu13",
            "nvjitlink",
            "nvshmem-cu13",
            "nvtx",
        )
    }
)

# Declared dependencies that the kit leaves out on purpose (64 MiB per device call): none of
# them is imported by `import espnet2.tasks.asr, espnet_llm_plugin` or by the GPU benchmarks
# (checked with --import-test, which runs without them).
LEFT_OUT: Dict[str, str] = {
    "matplotlib": "ESPnet trainer attention plots / bench/report.py only (9.4 MiB + 7 MiB of deps)",
    "contourpy": "matplotlib dependency",
    "cycler": "matplotlib dependency",
    "fonttools": "matplotlib dependency",
    "kiwisolver": "matplotlib dependency",
    "pyparsing": "matplotlib dependency",
    "python-dateutil": "matplotlib dependency",
    "pillow": "matplotlib dependency; optional for transformers (images only), 6.8 MiB",
    "tensorboard": "ESPnet trainer logs only (5.3 MiB + grpcio 7 MiB)",
    "tensorboard-data-server": "tensorboard dependency",
    "grpcio": "tensorboard dependency",
    "absl-py": "tensorboard dependency",
    "markdown": "tensorboard dependency",
    "werkzeug": "tensorboard dependency",
    "lightning": "not imported by espnet2.tasks.asr (ESPnet's lightning trainer only)",
    "pytorch-lightning": "lightning dependency",
    "torchmetrics": "lightning dependency",
    "lightning-utilities": "lightning dependency",
    "aiohttp": "fsspec[http] extra, pulled by lightning only",
    "aiohappyeyeballs": "aiohttp dependency",
    "aiosignal": "aiohttp dependency",
    "frozenlist": "aiohttp dependency",
    "multidict": "aiohttp dependency",
    "propcache": "aiohttp dependency",
    "yarl": "aiohttp dependency",
    "pyworld": "TTS pitch features only; source-only C extension (no cp312 wheel can be built here)",
}

# Imports that run_gpu_benchmarks.sh and the four GPU benchmarks need (run_all.py/report.py,
# which need matplotlib, are not run on the device).
SMOKE = """
import os, sys
from espnet_llm_plugin.quiet import quiet_espnet_import
with quiet_espnet_import():
    import espnet2.tasks.asr
import espnet_llm_plugin
"""
BENCH_MODULES = [
    "faiss",
    "peft",
    "espnet.nets.batch_beam_search",
    "espnet.nets.scorer_interface",
    "espnet2.asr.decoder.hugging_face_transformers_decoder",
    "espnet_llm_plugin.asr.adapter",
    "espnet_llm_plugin.core.finetune",
    "espnet_llm_plugin.asr.llm_decoder",
    "espnet_llm_plugin.lm.causal_lm_pretraining",
    "espnet_llm_plugin.lm.tokenizer_training",
    "espnet_llm_plugin.fileio.atomic",
    "espnet_llm_plugin.retrieval.datastore",
    "espnet_llm_plugin.retrieval.torch_search",
    "espnet_llm_plugin.retrieval.knnlm_scorer",
    "espnet_llm_plugin.retrieval.document_store",
    "espnet_llm_plugin.retrieval.hf_lm_scorer",
    "espnet_llm_plugin.retrieval.key_encoder",
    "tokenizers",
    "safetensors",
]
BENCH_SCRIPTS = ["common.py", "llm_train_step.py", "llm_decoding_rtf.py", "datastore_search.py", "knnlm_decoding.py"]

MARKER_ENV = {
    "python_version": "3.12",
    "python_full_version": "3.12.3",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "os_name": "posix",
    "platform_release": "",
    "platform_version": "",
    "implementation_version": "3.12.3",
}


def target_tags() -> Set[Tuple[str, str, str]]:
    from packaging import tags

    plats = [f"manylinux_2_{m}_x86_64" for m in range(35, 4, -1)]
    plats += ["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]
    out = set()
    for t in tags.cpython_tags(python_version=(3, 12), abis=["cp312"], platforms=plats):
        out.add((t.interpreter, t.abi, t.platform))
    for t in tags.compatible_tags(python_version=(3, 12), interpreter="cp312", platforms=plats):
        out.add((t.interpreter, t.abi, t.platform))
    return out


def read_wheels(wheel_dir: Path) -> Dict[str, dict]:
    from packaging.utils import canonicalize_name, parse_wheel_filename

    kit: Dict[str, dict] = {}
    for whl in sorted(wheel_dir.glob("*.whl")):
        name, version, _, tagset = parse_wheel_filename(whl.name)
        with zipfile.ZipFile(whl) as z:
            meta_name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            meta = email.parser.Parser().parsestr(z.read(meta_name).decode("utf-8", "replace"))
        kit[canonicalize_name(name)] = {
            "file": whl.name,
            "version": str(version),
            "size": whl.stat().st_size,
            "tags": {(t.interpreter, t.abi, t.platform) for t in tagset},
            "requires": meta.get_all("Requires-Dist") or [],
        }
    return kit


def check_requirements(kit: Dict[str, dict]) -> Tuple[List[str], List[str], Set[str]]:
    """Walk Requires-Dist from ROOTS; returns (errors, notes, reached kit names)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
    from packaging.version import Version

    errors, notes, reached = [], [], set()
    stack = [(r, frozenset()) for r in ROOTS]
    seen = set()
    while stack:
        name, extras = stack.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        info = kit.get(name)
        if info is None:
            errors.append(f"root {name}: no wheel in the kit")
            continue
        reached.add(name)
        for line in info["requires"]:
            req = Requirement(line)
            if req.marker is not None and not any(
                req.marker.evaluate(dict(MARKER_ENV, extra=e)) for e in ("", *extras)
            ):
                continue
            dep = canonicalize_name(req.name)
            where = f"{name} requires {line.split(';')[0].strip()}"
            if dep in kit:
                v = Version(kit[dep]["version"])
                if req.specifier and not req.specifier.contains(v, prereleases=True):
                    errors.append(f"VERSION {where}: kit has {kit[dep]['version']}")
                stack.append((dep, frozenset(canonicalize_name(e) for e in req.extras)))
            elif dep in PREINSTALLED:
                if dep in ("torch", "torchaudio", "transformers", "sentencepiece", "peft") and req.specifier:
                    notes.append(
                        f"preinstalled pin: {where} (GPU machine: torch/torchaudio 2.11.0, "
                        "transformers 5.17, its own peft/sentencepiece; installed with --no-deps)"
                    )
            elif dep in LEFT_OUT:
                notes.append(f"left out: {where} -- {LEFT_OUT[dep]}")
            else:
                errors.append(f"MISSING {where}")
    return errors, sorted(set(notes)), reached


def overlay_site(names: Set[str], dest: Path) -> List[str]:
    """Symlink the top-level entries of the installed distributions ``names`` into ``dest``."""
    import importlib.metadata as md

    from packaging.utils import canonicalize_name

    found = []
    site_paths = [p for p in sys.path if p.rstrip("/").endswith(("site-packages", "dist-packages"))]
    for dist in md.distributions(path=site_paths):
        name = canonicalize_name(dist.metadata["Name"])
        if name not in names or name in found:
            continue
        found.append(name)
        base = Path(dist.locate_file("")).resolve()
        tops = {Path(f).parts[0] for f in (dist.files or []) if not str(f).startswith("..")}
        for top in tops:
            src, dst = base / top, dest / top
            if src.exists() and not dst.exists():
                dst.symlink_to(src)
    return found


def third_party_imports() -> Dict[str, Set[str]]:
    std = set(sys.stdlib_module_names) | {"common", "report"}
    out: Dict[str, Set[str]] = {}
    files = list((REPO / "espnet_llm_plugin").rglob("*.py")) + list((REPO / "bench").glob("*.py"))
    for p in files:
        for node in ast.walk(ast.parse(p.read_text())):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                mods = [node.module]
            for m in mods:
                top = m.split(".")[0]
                if top not in std:
                    out.setdefault(top, set()).add(str(p.relative_to(REPO)))
    return out


def import_test(kit: Dict[str, dict]) -> List[str]:
    errors = []
    with tempfile.TemporaryDirectory(prefix="gpu_kit_site_") as tmp:
        site_dir = Path(tmp)
        wanted = set(kit) | PREINSTALLED
        found = overlay_site(wanted, site_dir)
        absent = sorted(set(kit) - set(found))
        if absent:
            print(f"  note: not installed in this venv, so not emulated: {absent}")
        imports = third_party_imports()
        bench_files = {f"bench/{s}" for s in BENCH_SCRIPTS}
        code = (
            f"import site, sys, importlib, importlib.util\nsite.addsitedir({str(site_dir)!r})\n"
            + SMOKE
            + f"for m in {BENCH_MODULES!r}:\n    importlib.import_module(m)\n"
            "from transformers import LlamaForCausalLM, AutoModelForCausalLM, AutoTokenizer\n"
            f"tops = {sorted(imports)!r}\n"
            "print('UNRESOLVED', [t for t in tops if importlib.util.find_spec(t) is None])\n"
            "print('LOADED', sorted({m.split('.')[0] for m in sys.modules}))\n"
        )
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONNOUSERSITE="1")
        env.pop("PYTHONPATH", None)
        proc = subprocess.run(
            [sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, env=env, cwd=tmp, timeout=600
        )
        if proc.returncode:
            errors.append("IMPORT FAILED in the emulated GPU package set:\n" + proc.stderr[-3000:])
            return errors
        unresolved: List[str] = []
        for line in proc.stdout.splitlines():
            if line.startswith("UNRESOLVED"):
                unresolved = ast.literal_eval(line[len("UNRESOLVED ") :])
        print(
            "  imports OK: espnet2.tasks.asr, espnet_llm_plugin, faiss, peft, transformers Llama, "
            f"{len(BENCH_MODULES)} benchmark modules"
        )
        for top in unresolved:
            users = sorted(imports[top])
            on_path = sorted(set(users) & bench_files)
            msg = f"module {top!r} (imported by {', '.join(users[:4])}{' ...' if len(users) > 4 else ''})"
            if on_path:
                errors.append(f"UNRESOLVED {msg}")
            else:
                print(f"  note: not in the kit, off the GPU benchmarks' path: {msg}")
    return errors


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wheels", type=Path, default=HERE / "wheels", help="wheel directory (default: %(default)s)")
    p.add_argument(
        "--import-test",
        action="store_true",
        help="also import everything the GPU run needs from an emulated package set (~20 s)",
    )
    args = p.parse_args(argv)
    kit = read_wheels(args.wheels)
    if not kit:
        print(f"no wheels in {args.wheels}: run bench/device/fetch_wheels.sh first", file=sys.stderr)
        return 1
    errors: List[str] = []
    tags = target_tags()
    total = 0
    for name, info in sorted(kit.items(), key=lambda kv: -kv[1]["size"]):
        total += info["size"]
        ok = bool(info["tags"] & tags)
        if not ok:
            errors.append(f"TAG {info['file']}: not installable on cp312 manylinux x86_64")
    print(f"{len(kit)} wheels, {total / 2**20:.1f} MiB in {args.wheels}")
    overlap = sorted(set(kit) & PREINSTALLED)
    if overlap:
        errors.append(f"PREINSTALLED packages in the kit (would shadow the GPU machine's): {overlap}")
    req_errors, notes, reached = check_requirements(kit)
    errors += req_errors
    for n in notes:
        print("  " + n)
    unreached = sorted(set(kit) - reached)
    if unreached:
        print(f"  note: in the kit but not required from {ROOTS}: {unreached}")
    if args.import_test:
        errors += import_test(kit)
    for e in errors:
        print(e)
    print("OK" if not errors else f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
