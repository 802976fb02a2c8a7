"""Which of the package's files a script or module depends on: the modules it imports, at any depth.

Computed from the code (every `import` statement, also inside functions, since those run as surely), not
listed by hand. A training's record lists this closure's hashes (as information: whether a training is current
is decided by what it computes, identity.py), and tests/test_dvc_graph.py checks that every stage lists its
closure as DVC deps.
"""

from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# What a module runs or reads besides its imports, by path in the package: the report's templates; every model
# module, which the registry imports by walking its folder.
READS = {"reporting.py": ["templates"], "models/__init__.py": ["models"]}


def module_file(dotted: str) -> Path | None:
    """src/mnistbench/a/b.py or src/mnistbench/a/b/__init__.py for 'mnistbench.a.b'; None outside the package."""
    parts = dotted.split(".")
    if parts[0] != "mnistbench":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path) -> set[Path]:
    """The package's modules that `path` imports directly, with the packages they sit in."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__ too
                file = module_file(".".join(parts[:i]))
                if file:
                    found.add(file)
    return found


def import_closure(script: Path) -> set[Path]:
    """The package's files `script` runs or reads, at any depth (not `script` itself)."""
    seen, todo = set(), [script]
    while todo:
        current = todo.pop()
        read = [PACKAGE / r for r in READS.get(current.relative_to(PACKAGE).as_posix(), [])] \
            if current.is_relative_to(PACKAGE) else []
        for found in [*imported_modules(current), *read]:
            if found not in seen:
                seen.add(found)
                if found.suffix == ".py":  # a module read is a module run: follow its imports too
                    todo.append(found)
    return seen


def file_digests(module: Path) -> dict[str, str]:
    """Each file `module` runs or reads (itself included), by its path in the package, with a hash of its bytes."""
    files = sorted({module.resolve(), *import_closure(module.resolve())})
    files = [f2 for f in files for f2 in ([f] if f.is_file() else sorted(f.rglob("*")) if f.is_dir() else [])]
    return {f.relative_to(PACKAGE).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()[:16]
            for f in files if f.is_file() and "__pycache__" not in f.parts}


def digest(files: dict[str, str]) -> str:
    """One hash for `file_digests(...)`: it changes when any code it covers changes, and only then."""
    return hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()[:16]
