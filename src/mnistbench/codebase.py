"""Which of the package's files a script or module depends on: the modules it imports, at any depth.

Computed from the code (every `import` statement, also inside functions, since those run as surely), not
listed by hand. The train stage's fingerprints hash this closure, and tests/test_dvc_graph.py checks that
every stage lists its closure as DVC deps.
"""

from __future__ import annotations

import ast
import hashlib
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
# Files a module reads at run time besides code: they decide its output as much as its code does.
READS = {"reporting.py": ["templates"]}


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
        for module in imported_modules(todo.pop()):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen | {PACKAGE / data for module in seen for data in READS.get(module.name, [])}


def digest(module: Path) -> str:
    """A hash of `module` and its closure: it changes when any code it runs changes, and only then."""
    files = sorted({module.resolve(), *import_closure(module.resolve())})
    files = sorted(f2 for f in files for f2 in ([f] if f.is_file() else sorted(f.rglob("*")) if f.is_dir() else []))
    return hashlib.sha256(b"".join(f.relative_to(PACKAGE).as_posix().encode() + f.read_bytes()
                                   for f in files if f.is_file())).hexdigest()[:16]
