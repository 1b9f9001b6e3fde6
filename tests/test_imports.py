"""The package's import graph is acyclic, so no import order in any `__init__.py` matters.

Edges: every `import tfm_fuse...` / `from tfm_fuse... import` (module level or inside a
function), and to the packages that contain the imported module, when they do not contain the
importer too: `tfm_fuse.complexity` importing `tfm_fuse.pruning.wrapper` first runs
`tfm_fuse/pruning/__init__.py` and all it imports (a package containing the importer is already
being imported when the importer runs).
"""

import ast
from pathlib import Path


ROOT = Path(__file__).parents[1]
PACKAGES = {"tfm_fuse": ROOT / "tfm_fuse", "tfm_fuse.callbacks": ROOT / "callbacks",
            "tfm_fuse.converters": ROOT / "converters"}


def modules() -> dict[str, Path]:
    found = {}
    for package, folder in PACKAGES.items():
        for path in folder.rglob("*.py"):
            parts = [p for p in path.relative_to(folder).with_suffix("").parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def import_graph() -> dict[str, set[str]]:
    mods = modules()

    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    def packages(name: str) -> set[str]:
        out, parent = set(), name.rpartition(".")[0]
        while parent:
            out.add(parent)
            parent = parent.rpartition(".")[0]
        return out

    graph = {m: set() for m in mods}
    for name, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            for target in targets:
                if target.startswith("tfm_fuse") and resolve(target):
                    imported = resolve(target)
                    graph[name] |= {imported} | (packages(imported) - packages(name))
        graph[name] -= {name, None}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_import_graph_is_acyclic():
    graph = import_graph()
    assert "tfm_fuse.pruning.wrapper" in graph and "tfm_fuse.callbacks.fupruner" in graph
    assert cycles(graph) == []


def test_the_core_imports_none_of_the_application():
    """`tfm_fuse/app/` (CLI, demo, latency, the demo's model, the shipped data) sits on top of
    the library: nothing outside it imports it (module level or inside a function)."""
    graph = import_graph()
    assert "tfm_fuse.app.cli" in graph and "tfm_fuse.app.data" in graph
    def in_app(name: str) -> bool:
        return name == "tfm_fuse.app" or name.startswith("tfm_fuse.app.")

    core = {m: deps for m, deps in graph.items() if not in_app(m)}
    leaks = {m: sorted(d for d in deps if in_app(d)) for m, deps in core.items()}
    assert {m: d for m, d in leaks.items() if d} == {}


def test_the_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_shadowed_by_a_function_of_the_same_name():
    """`import tfm_fuse.pruning.x as m` gives the module, not a function its package exports."""
    import importlib

    shadowed = []
    for name in modules():
        package, _, leaf = name.rpartition(".")
        if not package:
            continue
        attribute = getattr(importlib.import_module(package), leaf, None)
        if attribute is not None and not isinstance(attribute, type(importlib)):
            shadowed.append(name)
    assert not shadowed, shadowed


def test_module_file_names_are_unique():
    """One `fupruner.py`: the callback; the mask math lives in `pruning/updater.py`."""
    from collections import Counter

    names = Counter(path.name for path in modules().values() if path.name != "__init__.py")
    assert [n for n, count in names.items() if count > 1] == []


def test_importing_tfm_fuse_changes_no_process_state():
    """No TensorFlow, no redirected file descriptor, no environment change at `import
    tfm_fuse` (even when the process is called `tfm-fuse`); names import on first use."""
    import subprocess
    import sys

    code = ("import os, sys; sys.argv[0] = 'tfm-fuse'; env = dict(os.environ); "
            "fd = os.readlink('/proc/self/fd/2'); import tfm_fuse, tfm_fuse.app.cli; "
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules; "
            "assert os.readlink('/proc/self/fd/2') == fd and dict(os.environ) == env; "
            "assert sys.stderr is sys.__stderr__; "
            "assert callable(tfm_fuse.fuse) and 'keras' in sys.modules; print('ok')")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "ok", proc.stderr


def test_a_masked_model_loads_in_a_fresh_process(tmp_path):
    """`import keras, tfm_fuse` then `keras.models.load_model`: the wrapper class is registered
    although tfm_fuse imports its names lazily."""
    import subprocess
    import sys

    import tfm_fuse

    masked = tfm_fuse.prune(tfm_fuse.app.models.residual_cnn(input_shape=(16, 16, 1), widths=(8,)),
                            method="fupruner", macs=0.3)
    masked.save(tmp_path / "masked.keras")
    code = ("import keras, tfm_fuse; m = keras.models.load_model(%r); "
            "print(type(m.layers[1]).__name__)" % str(tmp_path / "masked.keras"))
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "PruneWrapper", proc.stderr[-2000:]
