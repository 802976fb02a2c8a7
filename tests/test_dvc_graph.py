"""The DVC graph is complete: every module a stage imports from src/mnistbench is one of its deps.

The import closure is computed from the code (every `import` statement, at any depth of a module,
since a function-level import runs as surely as a top-level one), not listed by hand."""

import ast
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

PACKAGE = ROOT / "src" / "mnistbench"


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


# Files a module reads at run time besides code: they decide its output as much as its code does.
READS = {"reporting.py": ["templates"]}


def import_closure(script: Path) -> set[Path]:
    seen, todo = set(), [script]
    while todo:
        for module in imported_modules(todo.pop()):
            if module not in seen:
                seen.add(module)
                todo.append(module)
    return seen | {PACKAGE / data for module in seen for data in READS.get(module.name, [])}


def stage_deps(dvc_yaml: Path) -> dict[str, tuple[Path, list[Path]]]:
    """stage name -> (its script, its deps), paths resolved against the dvc.yaml's folder."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    out = {}
    for name, stage in stages.items():
        script = next(word for word in stage["cmd"].split() if word.endswith(".py"))
        deps = [(dvc_yaml.parent / d).resolve() for d in stage.get("deps", []) if isinstance(d, str)]
        out[name] = ((dvc_yaml.parent / script).resolve(), deps)
    return out


def covered(module: Path, deps: list[Path]) -> bool:
    return any(module == dep or dep in module.parents for dep in deps)


def test_every_imported_module_is_a_dependency_of_its_stage(dvc_yaml="dvc.yaml"):
    missing = []
    for stage, (script, deps) in stage_deps(ROOT / dvc_yaml).items():
        assert script in deps, f"{dvc_yaml}: stage {stage} does not depend on its own script {script.name}"
        for module in sorted(import_closure(script)):
            if not covered(module, deps):
                missing.append(f"{dvc_yaml}: stage {stage} imports {module.relative_to(ROOT)} but does not list it in deps")
    assert not missing, "\n".join(missing)


def test_the_closure_follows_imports_inside_functions(tmp_path):
    script = tmp_path / "stage.py"
    script.write_text("def main():\n    from mnistbench.reporting import write_report\n")
    closure = {p.relative_to(PACKAGE).as_posix() for p in import_closure(script)}
    assert {"__init__.py", "reporting.py", "files.py", "writeup.py"} <= closure
    assert "augment.py" in {p.name for p in import_closure(ROOT / "stages" / "train.py")}
