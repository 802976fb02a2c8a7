"""The DVC graph is complete: every module a stage imports from src/mnistbench is one of its deps.

The import closure is computed from the code (every `import` statement, at any depth of a module,
since a function-level import runs as surely as a top-level one), not listed by hand."""

from pathlib import Path

import yaml

from conftest import ROOT
from mnistbench.codebase import PACKAGE, import_closure


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
