"""The released event contracts: one JSON Schema document per event type and version, checked
in under the owning app's `schemas/` folder (`<type>.v<version>.json`), and the check that keeps the
code to them (`manage.py check_event_contracts`, run by `make test` before pytest).

A released version may only grow optional fields, since events of it are already in the
topics and consumers of every age must keep reading them. The check compares each
version's schema, generated from its pydantic model, with the released document and
reports, naming the event, version and field:
- a field removed;
- a field whose type changed;
- a new field that is required (it has no default);
- any other edit of a released version (a limit, a default, a field becoming required...).
Adding a field with a default is compatible: `--write` records it in the document. A new
version (a new model in `EVENT_TYPES`, with an upcaster from the one before) has no document
yet: `--write` creates it. `--write` never records an incompatible change.

Titles and descriptions are documentation, not contract: they may change freely.
"""

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka_bridge.contracts import EVENT_TYPES, SCHEMA_DIRS

JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

# Keywords that carry no contract, and those this module walks into instead of comparing.
_DOCUMENTATION = {"title", "description", "examples", "$schema"}
_STRUCTURE = {"type", "properties", "required", "items", "anyOf", "$ref", "$defs"}

Schema = dict[str, Any]


def payload_json_schema(event_type: str, version: int) -> Schema:
    """The JSON Schema of one version's payload, generated from its pydantic model."""
    model = EVENT_TYPES[event_type].versions[version]
    generated = model.model_json_schema()
    generated.pop("title", None)  # the class name: named after the event instead
    return {"$schema": JSON_SCHEMA_DIALECT, "title": f"{event_type} v{version}", **generated}


def schema_file(event_type: str, version: int, directory: Path | None = None) -> Path:
    """The released document of one version: in `directory` if given, else in the folder
    its app registered the type with."""
    folder = directory if directory is not None else SCHEMA_DIRS[event_type]
    return folder / f"{event_type}.v{version}.json"


def schema_dirs(directory: Path | None = None) -> list[Path]:
    """The folders released documents live in: `directory`, or every app's."""
    return [directory] if directory is not None else sorted(set(SCHEMA_DIRS.values()))


def schema_render(schema: Schema) -> str:
    """The document as checked in: stable key order, one trailing newline."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


@dataclass(frozen=True)
class SchemaChange:
    """One difference between a released schema and the code's."""

    field: str  # dotted path: "total", "items[].sku", "shipping_address.city"
    problem: str  # what changed, as a sentence fragment
    compatible: bool = False

    def describe(self, event_type: str, version: int) -> str:
        where = f"field '{self.field}'" if self.field else "payload"
        return f"{event_type} v{version}: {where} {self.problem}"


def schema_changes(released: Schema, current: Schema) -> list[SchemaChange]:
    """Every difference that matters between two schemas of one version, compatible ones
    (an optional field added, documentation) included."""
    changes = list(_node_changes(released, current, "", released, current))
    if _documentation(released) != _documentation(current) and not changes:
        changes.append(SchemaChange("", "documentation changed", compatible=True))
    return changes


def _documentation(node: Any) -> Any:
    return json.dumps(node, sort_keys=True)


def _resolve(node: Schema, root: Schema) -> Schema:
    """Follow local `$ref`s (`#/$defs/Name`) so that nested models compare by content."""
    while "$ref" in node:
        path = node["$ref"].removeprefix("#/").split("/")
        target: Any = root
        for part in path:
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type_name(node: Schema, root: Schema) -> str:
    node = _resolve(node, root)
    if "anyOf" in node:
        return " | ".join(sorted({_type_name(branch, root) for branch in node["anyOf"]}))
    kind = node.get("type")
    if isinstance(kind, list):
        return " | ".join(sorted(kind))
    if kind == "array":
        return f"array of {_type_name(node.get('items', {}), root)}"
    if kind is None:
        return "enum" if "enum" in node or "const" in node else "any"
    return str(kind)


def _node_changes(
    old: Schema, new: Schema, path: str, old_root: Schema, new_root: Schema
) -> Iterator[SchemaChange]:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    old_type, new_type = _type_name(old, old_root), _type_name(new, new_root)
    if old_type != new_type:
        yield SchemaChange(path, f"type changed from {old_type} to {new_type}")
        return
    if "anyOf" in old:  # same set of branch types: compare branch by branch
        new_branches = {_type_name(b, new_root): b for b in new["anyOf"]}
        for branch in old["anyOf"]:
            twin = new_branches.get(_type_name(branch, old_root))
            if twin is not None:
                yield from _node_changes(branch, twin, path, old_root, new_root)
    if "items" in old or "items" in new:
        yield from _node_changes(
            old.get("items", {}), new.get("items", {}), f"{path}[]", old_root, new_root
        )
    if "properties" in old or "properties" in new:
        yield from _object_changes(old, new, path, old_root, new_root)
    for keyword in sorted((old.keys() | new.keys()) - _DOCUMENTATION - _STRUCTURE):
        if old.get(keyword) != new.get(keyword):
            yield SchemaChange(
                path,
                f"edited after release: {keyword} {_shown(old, keyword)} → "
                f"{_shown(new, keyword)}; release a new version instead",
            )


def _shown(node: Schema, keyword: str) -> str:
    return json.dumps(node[keyword]) if keyword in node else "(none)"


def _object_changes(
    old: Schema, new: Schema, path: str, old_root: Schema, new_root: Schema
) -> Iterator[SchemaChange]:
    old_fields, new_fields = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    prefix = f"{path}." if path else ""
    for name, schema in old_fields.items():
        if name not in new_fields:
            yield SchemaChange(f"{prefix}{name}", "removed")
            continue
        yield from _node_changes(schema, new_fields[name], f"{prefix}{name}", old_root, new_root)
        if name in new_required and name not in old_required:
            yield SchemaChange(f"{prefix}{name}", "edited after release: now required")
        elif name in old_required and name not in new_required:
            yield SchemaChange(f"{prefix}{name}", "edited after release: no longer required")
    for name in new_fields.keys() - old_fields.keys():
        if name in new_required:
            yield SchemaChange(f"{prefix}{name}", "added as required without a default")
        else:
            yield SchemaChange(f"{prefix}{name}", "added with a default", compatible=True)


@dataclass(frozen=True)
class ContractProblem:
    """A line of the check's report; `writable` ones are fixed by `--write`."""

    line: str
    writable: bool = False


def contracts_check(directory: Path | None = None) -> list[ContractProblem]:
    """Compare every event type and version in the code with its released document (in
    `directory` if given, else in each app's `schemas/`)."""
    problems: list[ContractProblem] = []
    expected: set[Path] = set()
    for name, event_type in sorted(EVENT_TYPES.items()):
        for version in sorted(event_type.versions):
            path = schema_file(name, version, directory)
            expected.add(path)
            current = payload_json_schema(name, version)
            if not path.exists():
                problems.append(
                    ContractProblem(f"{name} v{version}: new version, not released yet", True)
                )
                continue
            released = json.loads(path.read_text())
            changes = schema_changes(released, current)
            breaking = [change for change in changes if not change.compatible]
            problems += [ContractProblem(change.describe(name, version)) for change in breaking]
            if changes and not breaking:
                summary = "; ".join(change.describe(name, version) for change in changes)
                problems.append(ContractProblem(f"{summary} (compatible, not recorded)", True))
            elif not changes and path.read_text() != schema_render(current):
                # Same contract, other formatting: recorded anyway so the file is exact.
                problems.append(ContractProblem(f"{name} v{version}: document reformatted", True))
    released_files = (path for folder in schema_dirs(directory) for path in folder.glob("*.json"))
    for path in sorted(released_files):
        if path not in expected:
            name, _, version = path.stem.rpartition(".v")
            problems.append(ContractProblem(f"{name} v{version}: released, but gone from the code"))
    return problems


def contracts_write(directory: Path | None = None) -> list[Path]:
    """Write the document of every version that is new or changed compatibly; never one
    with an incompatible change (check first). Returns the files written."""
    written = []
    for name, event_type in sorted(EVENT_TYPES.items()):
        for version in sorted(event_type.versions):
            path = schema_file(name, version, directory)
            current = payload_json_schema(name, version)
            if path.exists():
                if any(
                    not c.compatible for c in schema_changes(json.loads(path.read_text()), current)
                ):
                    continue
                if path.read_text() == schema_render(current):
                    continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(schema_render(current))
            written.append(path)
    return written
