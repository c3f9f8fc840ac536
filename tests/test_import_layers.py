"""The package's layering: no import cycle between its subpackages, function-local imports included.

``core`` (LLM loading, fine-tuning modes, KV cache, unit tokens, text form and framing) and the
small shared modules depend on no method package; method packages (``asr``, ``retrieval``,
``rescoring``, ``mmlm``, ...) may use each other only without a cycle, and ``bin`` is on top.
A function-local import counts like a module-level one: hiding a cycle inside a function still
makes the packages inseparable.

Outside ``bin/``, imports sit at module level; a function-local one is kept only for an optional
dependency or a documented laziness (``LOCAL_IMPORTS_KEPT``). ``bin/`` imports its library call
inside ``main`` so that ``--help`` answers before torch loads (tests/bin/test_cli_help.py).
"""

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Set

PACKAGE = Path(__file__).resolve().parents[1] / "espnet_llm_plugin"
# the bottom layer: these may import only each other and third-party code
FOUNDATION = {"core", "fileio"}


def package_of(module: str) -> str:
    """``espnet_llm_plugin.asr.adapter`` -> ``asr``; a top-level module is its own unit."""
    return module.split(".")[1]


def import_graph() -> Dict[str, Dict[str, List[str]]]:
    """unit -> imported unit -> ['file:line', ...] over every import statement (any depth)."""
    graph: Dict[str, Dict[str, List[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        unit = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [node.module]
                if node.module == "espnet_llm_plugin":  # from espnet_llm_plugin import asr
                    targets = [f"espnet_llm_plugin.{a.name}" for a in node.names]
            for t in targets:
                if t.startswith("espnet_llm_plugin.") and package_of(t) != unit:
                    graph[unit][package_of(t)].append(f"{rel}:{node.lineno}")
    return graph


def cycles(graph: Dict[str, Dict[str, List[str]]]) -> List[List[str]]:
    """Strongly connected components with more than one unit (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    out: List[List[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(set(graph) | {w for ws in graph.values() for w in ws}):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycle_between_subpackages():
    graph = import_graph()
    found = cycles(graph)
    detail = []
    for comp in found:
        for a in comp:
            for b in comp:
                if b in graph.get(a, {}):
                    detail.append(f"  {a} -> {b}: {', '.join(graph[a][b][:4])}")
    assert not found, "import cycles between subpackages:\n" + "\n".join(detail)


def test_foundation_depends_on_no_method_package():
    graph = import_graph()
    allowed = FOUNDATION | {"__init__", "__version__", "quiet"}
    bad = [
        f"{unit} -> {dep}: {', '.join(where[:3])}"
        for unit in FOUNDATION
        for dep, where in graph.get(unit, {}).items()
        if dep not in allowed
    ]
    assert not bad, "core/fileio import method packages:\n" + "\n".join(bad)


def test_the_checker_sees_a_function_local_cycle(tmp_path, monkeypatch):
    pkg = tmp_path / "espnet_llm_plugin"
    for name, body in {
        "a/__init__.py": "",
        "a/x.py": "def f():\n    from espnet_llm_plugin.b import y\n",
        "b/__init__.py": "",
        "b/y.py": "import espnet_llm_plugin.a.x\n",
    }.items():
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text(body)
    monkeypatch.setattr(__import__(__name__), "PACKAGE", pkg)
    assert cycles(import_graph()) == [["a", "b"]]


# (file under espnet_llm_plugin/, imported module) -> why that import stays inside a function
LOCAL_IMPORTS_KEPT = {
    ("__init__.py", "espnet_llm_plugin.registry"): "`import espnet_llm_plugin` stays cheap (no torch, no espnet)",
    ("__init__.py", "espnet_llm_plugin.decoding.speech2text"): "the lazy `Speech2Text` attribute, likewise",
    ("core/framing.py", "jinja2"): "optional (chat templates only); framing imports nothing heavy",
    ("decoding/speech2text.py", "espnet_model_zoo.downloader"): "optional: only for model-zoo names",
    ("fileio/audio.py", "soxr"): "optional: only when audio must be resampled",
    ("frontend/unit_features.py", "espnet2.tasks.asr"): "ESPnet's task module (seconds, and noisy at import: "
    "imported inside quiet_espnet_import) only for espnet_asr features",
    ("pretrained/ctranslate2_whisper.py", "ctranslate2"): "optional: the [pretrained] extra",
    ("quiet.py", "nltk"): "optional: patched only when ESPnet pulls it in",
}


def function_local_imports(package: Path) -> List[tuple]:
    """``(file, module, line)`` of every import inside a function, outside ``bin/``."""
    found = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("bin/"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    found += [(rel, a.name, node.lineno) for a in node.names]
                elif isinstance(node, ast.ImportFrom):
                    found.append((rel, "." * node.level + (node.module or ""), node.lineno))
    return sorted(set(found))


def test_function_local_imports_only_where_a_reason_is_written():
    found = function_local_imports(PACKAGE)
    unexpected = [f"{rel}:{line} imports {mod}" for rel, mod, line in found if (rel, mod) not in LOCAL_IMPORTS_KEPT]
    assert not unexpected, "move these imports to module level (or say why not):\n" + "\n".join(unexpected)
    stale = set(LOCAL_IMPORTS_KEPT) - {(rel, mod) for rel, mod, _ in found}
    assert not stale, f"no longer function-local, drop from LOCAL_IMPORTS_KEPT: {sorted(stale)}"


def test_the_local_import_check_sees_a_nested_import(tmp_path):
    (tmp_path / "m.py").write_text("import os\n\nclass C:\n    def f(self):\n        from json import dumps\n")
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "cli.py").write_text("def main():\n    import torch\n")
    assert function_local_imports(tmp_path) == [("m.py", "json", 5)]
