"""Reading params.yaml: the files (a variant's overlay changes the keys it names, key by key), and the
messages of a failed validation, each naming its key. The schema itself is in config.py; a stage that needs
only some sections (download, split) validates just those, so it does not depend on the models' code."""

from __future__ import annotations

import difflib
from pathlib import Path
from types import SimpleNamespace

import yaml
from pydantic import BaseModel, ValidationError

from mnistbench.errors import ParamsError


def unknown(what: str, found: str, known: list[str]) -> str:
    close = difflib.get_close_matches(found, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"unknown {what} '{found}': expected one of {', '.join(known)}{hint}"


def check_known(names, known, what: str):
    """A validator's check that every name in `names` is one of `known` (a registry, the datasets)."""
    for name in names:
        if name not in known:
            raise ValueError(unknown(what, name, list(known)))
    return names


def _schema_at(schema: type[BaseModel], loc: tuple) -> type[BaseModel]:
    """The pydantic class that owns the key at `loc`, for suggesting the nearest key."""
    for part in loc:
        field = schema.model_fields.get(part) if isinstance(part, str) else None
        annotation = getattr(field, "annotation", None)
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return schema
        schema = annotation
    return schema


def describe(err: ValidationError, schema: type[BaseModel], prefix: str = "") -> str:
    """One line per failed key: `key: what was wrong (found ...)`."""
    lines = []
    for e in err.errors():
        key = prefix + ".".join(str(p) for p in e["loc"])
        if e["type"] == "extra_forbidden":
            owner = _schema_at(schema, e["loc"][:-1])
            lines.append(f"{key}: {unknown('key', str(e['loc'][-1]), list(owner.model_fields))}")
        else:
            msg = e["msg"].removeprefix("Value error, ")
            found = "" if isinstance(e.get("input"), dict) else f" (found {e.get('input')!r})"
            lines.append(f"{key}: {msg}{found}")
    return "\n".join(lines)


def read_yaml(path: Path, what: str = "the pipeline's parameters") -> dict:
    """A YAML file holding `what` (for the messages), as a mapping."""
    if not path.is_file():
        found = "a folder, not a file" if path.is_dir() else "file not found"
        raise ParamsError(f"{path}: {found}; expected {what} in YAML")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as err:
        raise ParamsError(f"{path}: not UTF-8 text (byte 0x{err.object[err.start]:02x} at offset {err.start}); "
                          f"expected {what} in UTF-8 YAML") from None
    except yaml.YAMLError as err:
        raise ParamsError(f"{path}: not valid YAML: {err}") from None
    if raw is not None and not isinstance(raw, dict):
        raise ParamsError(f"{path}: expected a mapping of sections at the top level, found {type(raw).__name__}")
    return raw or {}


def merge(base: dict, changes: dict) -> dict:
    """`base` with `changes` applied key by key at every depth; a list or a value replaces what it names."""
    merged = dict(base)
    for key, value in changes.items():
        both_mappings = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = merge(merged[key], value) if both_mappings else value
    return merged


def read_params(*paths: str | Path) -> tuple[dict, str]:
    """params.yaml (or several files, each later one changing the keys it names), and how to name the source."""
    paths = [Path(p) for p in paths] or [Path("params.yaml")]
    raw: dict = {}
    for path in paths:
        raw = merge(raw, read_yaml(path))
    return raw, " + ".join(map(str, paths))


def load_sections(paths, **schemas: type[BaseModel]) -> SimpleNamespace:
    """Only the named sections of the params files, each validated by its schema: load_sections(p, data=DataParams)."""
    raw, source = read_params(*paths)
    sections, problems = {}, []
    for name, schema in schemas.items():
        if not isinstance(raw.get(name), dict):
            problems.append(f"{name}: expected a section (a mapping of keys), found {raw.get(name)!r}")
            continue
        try:
            sections[name] = schema(**raw[name])
        except ValidationError as err:
            problems.append(describe(err, schema, prefix=f"{name}."))
    if problems:
        raise ParamsError(f"{source}: invalid parameters\n" + "\n".join(problems))
    return SimpleNamespace(**sections)
