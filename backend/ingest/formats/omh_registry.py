"""The offline registry of the vendored Open mHealth / IEEE 1752 schemas (`omh_schemas/`,
see its README for source, versions and licence): which file answers a schema id or a
`$ref`, and a validator per schema. Nothing is ever fetched at run time."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, Final, NamedTuple

import jsonschema
from jsonschema.exceptions import ValidationError, best_match
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

SCHEMA_DIR: Final = Path(__file__).parent / "omh_schemas"
TEST_DATA_DIR: Final = SCHEMA_DIR / "test-data"

# The base URIs the upstream validator maps each namespace folder to (test-data/README.md
# in openmhealth/schemas); the schemas' own `$id`s and absolute `$ref`s use them too.
NAMESPACE_BASES: Final[Mapping[str, str]] = {
    "omh": "https://w3id.org/openmhealth/schemas/omh/",
    "ieee": "https://w3id.org/ieee/ieee-1752-schema/",
    "granola": "https://w3id.org/openmhealth/schemas/granola/",
}
DATA_POINT_SCHEMA: Final = NAMESPACE_BASES["omh"] + "data-point-1.0.json"

_FILE_NAME = re.compile(r"^(?P<name>[a-z0-9-]+?)-(?P<major>\d+)\.(?P<minor>\d+|x)\.json$")
# IEEE 1752.1 files name their `$id` (and omh 4.x files some `$ref`s) without a version.
_UNVERSIONED = re.compile(r"^(?P<name>[a-z0-9-]+)\.json$")
_VERSION = re.compile(r"^(?P<major>\d+)\.(?P<minor>\d+)$")
_SCHEMA_ID = re.compile(r"^(?P<ns>[a-z0-9]+):(?P<name>[a-z0-9-]+):(?P<version>\d+\.\d+)$")


class SchemaId(NamedTuple):
    namespace: str
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.namespace}:{self.name}:{self.version}"


def parse_schema_id(text: str) -> SchemaId:
    """`omh:heart-rate:2.0` -> SchemaId; ValueError with what is expected otherwise."""
    match = _SCHEMA_ID.match(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a schema id like omh:heart-rate:2.0")
    return SchemaId(match["ns"], match["name"], match["version"])


@cache
def _vendored(namespace: str) -> Mapping[tuple[str, int], Mapping[int, Path]]:
    """(name, major) -> {minor: file} for one namespace folder (read once)."""
    found: dict[tuple[str, int], dict[int, Path]] = {}
    for path in sorted((SCHEMA_DIR / namespace).glob("*.json")):
        match = _FILE_NAME.match(path.name)
        if match is None or match["minor"] == "x":
            continue
        key = (match["name"], int(match["major"]))
        found.setdefault(key, {})[int(match["minor"])] = path
    return found


def _pick_minor(minors: Mapping[int, Path], wanted: int | None) -> Path | None:
    # The version asked for when we hold it; else the newest minor above it: minor
    # versions only add to a schema (the upstream validator checks that 1.0 data passes
    # 1.1). `None` (a `name-M.x.json` alias) means the newest.
    if wanted is not None and wanted in minors:
        return minors[wanted]
    usable = [m for m in minors if wanted is None or m >= wanted]
    return minors[max(usable)] if usable else None


def _resolve_file(uri: str) -> Path | None:
    """The vendored file that answers a `$ref` to `uri`, if any.

    Upstream, `name-1.x.json` is a symbolic link to the newest 1.y file (links are not
    vendored); an IEEE `name.json` is the newest release of that schema."""
    for namespace, base in NAMESPACE_BASES.items():
        if not uri.startswith(base):
            continue
        tail = uri.removeprefix(base)
        held = _vendored(namespace)
        if (bare := _UNVERSIONED.match(tail)) is not None:
            majors = [major for (name, major) in held if name == bare["name"]]
            return _pick_minor(held[(bare["name"], max(majors))], None) if majors else None
        match = _FILE_NAME.match(tail)
        if match is None:
            return None
        minors = held.get((match["name"], int(match["major"])), {})
        return _pick_minor(minors, None if match["minor"] == "x" else int(match["minor"]))
    return None


def _retrieve(uri: str) -> Resource[Any]:
    path = _resolve_file(uri)
    if path is None:
        # Raised instead of fetching: a schema we did not vendor is a packaging bug.
        raise NoSuchResource(ref=uri)  # type: ignore[call-arg]  # attrs-made __init__
    return Resource.from_contents(json.loads(path.read_text(encoding="utf-8")))


@cache
def schema_registry() -> Registry[Any]:
    """Every vendored schema under its canonical URI, crawled so inner `$id`s resolve."""
    resources: list[tuple[str, Resource[Any]]] = []
    for namespace, base in NAMESPACE_BASES.items():
        for path in sorted((SCHEMA_DIR / namespace).glob("*.json")):
            contents = json.loads(path.read_text(encoding="utf-8"))
            resources.append((base + path.name, Resource.from_contents(contents)))
    registry: Registry[Any] = Registry(retrieve=_retrieve)  # type: ignore[call-arg]
    return registry.with_resources(resources).crawl()


@cache
def validator(uri: str) -> Any:
    """A validator for the schema at `uri`, in that schema's own draft, checking formats
    (the upstream test suite relies on `date-time` being checked)."""
    target = schema_registry().resolver().lookup(uri).contents
    cls = jsonschema.validators.validator_for(target)
    return cls({"$ref": uri}, registry=schema_registry(), format_checker=cls.FORMAT_CHECKER)


def body_schema_uri(schema: SchemaId) -> str | None:
    """The vendored schema for a schema id, or None if we hold none."""
    match = _VERSION.match(schema.version)
    if schema.namespace not in NAMESPACE_BASES or match is None:
        return None
    minors = _vendored(schema.namespace).get((schema.name, int(match["major"])), {})
    path = _pick_minor(minors, int(match["minor"]))
    return None if path is None else NAMESPACE_BASES[schema.namespace] + path.name


def schema_error(uri: str, instance: object) -> ValidationError | None:
    """The most telling of the errors, as jsonschema ranks them (deepest, most specific)."""
    error: ValidationError | None = best_match(validator(uri).iter_errors(instance))
    return error


def _json_path(prefix: str, path: Iterable[str | int]) -> str:
    text = prefix
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text


def error_field(prefix: str, error: ValidationError) -> str:
    field = _json_path(prefix, error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        # The path of a missing property is its parent; name the property itself.
        missing = [p for p in error.validator_value if p not in error.instance]
        if missing:
            field += f".{missing[0]}"
    return field or prefix or "(body)"
