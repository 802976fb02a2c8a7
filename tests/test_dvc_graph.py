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


def test_no_stage_depends_on_code_it_does_not_run(dvc_yaml="dvc.yaml"):
    """Deps as narrow as the code: a listed module outside a stage's closure would stale it for nothing
    (the data stages do not depend on the models, so a new model does not re-split the data)."""
    extra = []
    for stage, (script, deps) in stage_deps(ROOT / dvc_yaml).items():
        closure = import_closure(script) | {script}
        for dep in deps:
            if dep.is_relative_to(PACKAGE) or dep.is_relative_to(ROOT / "stages"):
                if not any(dep == m or dep in m.parents for m in closure):
                    extra.append(f"{dvc_yaml}: stage {stage} lists {dep.relative_to(ROOT)}, which it does not run")
    assert not extra, "\n".join(extra)
    for stage in ("download", "split"):
        assert not {PACKAGE / "models", PACKAGE / "config.py"} & set(stage_deps(ROOT / dvc_yaml)[stage][1])


def test_every_committed_lock_holds_only_stages_of_dvc_yaml():
    """A stage renamed or folded away (the old train@<pair> layout) leaves no entry that no run will refresh."""
    stages = set(yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"])
    for lock in [ROOT / "dvc.lock", *ROOT.glob("*/dvc.lock")]:
        extra = set(yaml.safe_load(lock.read_text())["stages"]) - stages
        assert not extra, f"{lock.relative_to(ROOT)}: entries of stages dvc.yaml does not have: {sorted(extra)}"


def test_the_report_layout_of_the_code_is_the_one_dvc_yaml_declares():
    """layout.py is where the code finds a training's files; dvc.yaml's outs must name the same folders."""
    from mnistbench import layout

    declared = set()
    for stage in yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"].values():
        for out in stage.get("outs", []) + stage.get("metrics", []):
            declared.add(out if isinstance(out, str) else next(iter(out)))
    assert {f"reports/{folder}" for folder in layout.SUFFIX} <= declared, declared
