"""What a step's output is a function of, beyond its config and inputs: the code it runs and the runtimes it uses.

The project modules come from the static import closure of the step's root modules (every `import` and `from ...
import`, including those inside functions, plus the modules started as child processes through
`pipeline.engine.child.run_module("pipeline.runtimes.tflm_child", ...)`), so no hand-kept list can miss one. The
runtimes are the installed versions of every third-party distribution that closure imports (TensorFlow, NNCF,
OpenVINO, tflite-micro, LiteRT, ...): upgrading one rebuilds exactly the steps that use it.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import platform
import sys
from functools import cache
from importlib import metadata
from pathlib import Path

PROJECT_PACKAGES = {"pipeline", "targets"}  # grows by the package of any plugin fingerprinted (`import_closure`)


@cache
def _package_dir(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)  # a top-level name: found without importing anything
    return Path(spec.origin).parent if spec is not None and spec.origin else None


@cache
def _source(module: str) -> tuple[str, bool] | None:
    """(source path, is a package) of a project module, or None when there is no such module. Located on disk,
    never imported: importing `pipeline.stages.train` to find it would import TensorFlow."""
    top, *rest = module.split(".")
    root = _package_dir(top) if top in PROJECT_PACKAGES else None
    if root is None:
        return None
    folder = root.joinpath(*rest)
    if (folder / "__init__.py").is_file():
        return str(folder / "__init__.py"), True
    if rest and folder.with_suffix(".py").is_file():
        return str(folder.with_suffix(".py")), False
    return None


def _project(name: str) -> bool:
    return name.split(".")[0] in PROJECT_PACKAGES


@cache
def _direct_imports(module: str) -> tuple[frozenset[str], frozenset[str]]:
    """(project modules, third-party top-level names) that `module`'s source imports anywhere."""
    origin, is_package = _source(module)
    tree = ast.parse(Path(origin).read_text(), origin)
    package = module if is_package else module.rpartition(".")[0]
    project: set[str] = set()
    external: set[str] = set()

    def add(name: str) -> None:
        if _project(name):
            project.add(name)
        elif name.split(".")[0] not in sys.stdlib_module_names and name != "__future__":
            external.add(name.split(".")[0])

    typing_only = {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"
        for stmt in node.body
        for inner in ast.walk(stmt)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:  # annotations only: never run
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(parts + ([node.module] if node.module else []))
            add(base)
            for alias in node.names:  # `from pipeline import recipe` imports a module, not a name
                candidate = f"{base}.{alias.name}"
                if _project(candidate) and _source(candidate) is not None:
                    project.add(candidate)
        elif isinstance(node, ast.Call) and _called(node.func) == "run_module" and node.args:
            first = node.args[0]  # a child process runs that module's code for this step
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                if _source(first.value) is not None:
                    project.add(first.value)
                elif not _project(first.value):
                    external.add(first.value.split(".")[0])  # a third-party tool run as a child: its version counts
    return frozenset(project), frozenset(external)


def _called(func: ast.expr) -> str | None:
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None


def import_closure(*roots: str) -> tuple[list[str], list[str]]:
    """(project modules, third-party top-level names) reachable from `roots` through explicit imports.

    A parent package's `__init__` counts only where something imports it by name: counting it for every
    submodule would make a change to `pipeline/data/__init__.py` regenerate the synthetic audio."""
    for root in roots:
        top = root.split(".")[0]
        if top not in PROJECT_PACKAGES and _package_dir(top) is not None:
            PROJECT_PACKAGES.add(top)  # a plugin from another package: its own modules are code, not a runtime
            _source.cache_clear()
        if _source(root) is None:
            raise ValueError(f"cannot fingerprint unknown module {root!r}")
    seen: set[str] = set()
    external: set[str] = set()
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module in seen or _source(module) is None:
            continue
        seen.add(module)
        project, names = _direct_imports(module)
        external |= names
        todo.extend(project - seen)
    return sorted(seen), sorted(external)


@cache
def _distributions() -> dict[str, list[str]]:
    return metadata.packages_distributions()


def runtime_versions(top_level_names: list[str]) -> dict[str, str]:
    """Installed distribution versions for imported top-level names (tflite_micro -> tflite-micro 0.dev...)."""
    out = {"python": platform.python_version()}
    for name in top_level_names:
        for dist in _distributions().get(name, []):
            try:
                out[dist.lower()] = metadata.version(dist)
            except metadata.PackageNotFoundError:
                continue
    return dict(sorted(out.items()))


def fingerprint(*roots: str) -> dict[str, object]:
    """The part of a cache key that covers code and runtimes: a hash of every project module in the import
    closure of `roots`, and the version of every third-party distribution that closure imports."""
    modules, external = import_closure(*roots)
    h = hashlib.sha256()
    for module in modules:
        h.update(module.encode() + b"\0")
        h.update(Path(_source(module)[0]).read_bytes())
    return {"code": h.hexdigest(), "modules": len(modules), "runtimes": runtime_versions(external)}
