"""The experiment file's schema: every key, with its type, default, unit and help, in one place.

A :class:`Key` describes one key of an experiment file; a section's keys are its
``keys``, a list's entries have ``keys`` too, and ``workloads:`` entries add the keys of
their ``type:`` (``variants``). The catalog of the core sections is
:mod:`simcore.config.schema_keys`; each workload kind's keys are in
:mod:`workloads.schema`, and ``workloads.registry.experiment_schema()`` puts them together.

The parsers take their allowed keys from this catalog (:func:`names`, :func:`required`,
:func:`ordered_fields`), so a key cannot be accepted without being documented; the tests
check that every documented default is what parsing a file without the key gives. From
the same catalog come ``allocsim describe``, the README's reference section and the JSON
Schema editors use (:func:`json_schema`).

Paths into the catalog are spelled as error messages spell key paths, with ``[]`` for
"any entry of a list" and ``[type=KIND]`` for the entries of one workload kind:
``machine.nodes[].memory``, ``workloads[type=synthetic].rate`` (:func:`flatten`).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

JSON_SCHEMA_DIALECT = "http://json-schema.org/draft-07/schema#"


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED: Any = _Required()
"""The default of a key that must be given."""


@dataclass(frozen=True)
class Derived:
    """A default that is not one value to write: derived, or "the key is absent"."""

    text: str


@dataclass(frozen=True)
class Type:
    """A value's type: its words, its JSON Schema, its unit and its form.

    ``form`` is ``value`` (a scalar, or a value whose alternative forms are in the key's
    ``keys``), ``mapping`` (a section: exactly its ``keys``) or ``list`` (entries with the
    key's ``keys``, or its ``variants``).
    """

    text: str
    json: Mapping[str, Any]
    unit: str = ""
    form: str = "value"


@dataclass(frozen=True)
class Key:
    """One key of an experiment file.

    Attributes:
        name: The YAML key.
        type: Its :class:`Type`.
        help: One line on what it is.
        default: The value assumed when it is absent, as YAML spells it; REQUIRED; or
            a :class:`Derived` text.
        keys: A mapping's keys, a list entry's keys, or the keys of a value's mapping
            form (``lifetime: {lognormal: {...}}``).
        variants: For a list of workloads: kind -> that kind's entry keys.
        example: A valid value of a required key (for docs and tests).
        json_extra: More JSON Schema for this key's mapping (``anyOf`` required keys).
        open_keys: A mapping whose keys are free (``sweep.grid``'s key paths).
    """

    name: str
    type: Type
    help: str
    default: object = REQUIRED
    keys: tuple[Key, ...] = ()
    variants: tuple[tuple[str, str, tuple[Key, ...]], ...] = ()
    example: object = None
    json_extra: Mapping[str, Any] = field(default_factory=dict)
    open_keys: bool = False

    @property
    def required(self) -> bool:
        """Whether the key must be given."""
        return self.default is REQUIRED


# ---------------------------------------------------------------- types

_NUMBER_RE = r"[+-]?[0-9]+(\.[0-9]*)?"
BOOL = Type("true|false", {"type": "boolean"})
STRING = Type("string", {"type": "string"})
NUMBER = Type("number", {"type": "number"})
FRACTION = Type("fraction 0..1", {"type": "number", "minimum": 0, "maximum": 1})
SIZE = Type("size", {"anyOf": [{"type": "integer", "minimum": 0},
                               {"type": "string",
                                "pattern": rf"^\s*{_NUMBER_RE}\s*[A-Za-z]*\s*$"}]},
            "bytes: 64MiB, 4GiB, 4k, 1GB, 512pages or a byte count")
DURATION = Type("duration", {"type": "string", "pattern": rf"^\s*{_NUMBER_RE}\s*[a-zµ]+\s*$"},
                "10ms, 2.5s, 100us, 50ns, 1min, 1h")
RATE = Type("rate", {"anyOf": [{"type": "number", "minimum": 0},
                               {"type": "string", "pattern":
                                r"^\s*[+-]?[0-9.]+([eE][+-]?[0-9]+)?\s*(/\s*[a-zµ]+)?\s*$"}]},
            "events per second: 200/s, 5/ms or a number")
GFP = Type("gfp flags", {"type": "string", "pattern": r"^[A-Za-z0-9_| ]+$"},
           "kernel spelling: GFP_KERNEL|__GFP_COMP")
MAPPING = Type("mapping", {"type": "object"}, form="mapping")


def integer(lo: int | None = None, hi: int | None = None, unit: str = "") -> Type:
    """An integer in ``lo..hi`` (None: unbounded)."""
    json: dict[str, Any] = {"type": "integer"}
    if lo is not None:
        json["minimum"] = lo
    if hi is not None:
        json["maximum"] = hi
    if lo is not None and hi is not None:
        text = f"integer {lo}..{hi}"
    else:
        text = "integer" + (f" >= {lo}" if lo is not None else "") + (
            f" <= {hi}" if hi is not None else "")
    return Type(text, json, unit)


def choice(*values: object) -> Type:
    """One of ``values``."""
    return Type(" | ".join(str(v) for v in values), {"enum": list(values)})


def nullable(t: Type) -> Type:
    """``t`` or ``null``."""
    return Type(f"{t.text} or null", {"anyOf": [dict(t.json), {"type": "null"}]}, t.unit)


def list_of(t: Type, min_len: int = 0, max_len: int | None = None) -> Type:
    """A list of ``t`` values."""
    json: dict[str, Any] = {"type": "array", "items": dict(t.json)}
    if min_len:
        json["minItems"] = min_len
    if max_len is not None:
        json["maxItems"] = max_len
    return Type(f"list of {t.text}", json, t.unit)


def one_of(text: str, *alternatives: Type, unit: str = "") -> Type:
    """A value of any of the ``alternatives`` (a key's ``keys`` add its mapping form)."""
    units = unit or "; ".join(a.unit for a in alternatives if a.unit)
    return Type(text, {"anyOf": [dict(a.json) for a in alternatives]}, units)


def entries(text: str, min_len: int = 0, max_len: int | None = None) -> Type:
    """A list of mappings, each with the key's ``keys`` (or one of its ``variants``)."""
    json: dict[str, Any] = {"type": "array"}
    if min_len:
        json["minItems"] = min_len
    if max_len is not None:
        json["maxItems"] = max_len
    return Type(text, json, form="list")


# ---------------------------------------------------------------- reading the catalog


def names(keys: tuple[Key, ...]) -> tuple[str, ...]:
    """The YAML names of ``keys``, in catalog order: a parser's allowed keys."""
    return tuple(k.name for k in keys)


def required(keys: tuple[Key, ...]) -> tuple[str, ...]:
    """The names of the required ``keys``."""
    return tuple(k.name for k in keys if k.required)


def key_named(keys: tuple[Key, ...], name: str) -> Key:
    """The key called ``name`` (KeyError if there is none)."""
    for k in keys:
        if k.name == name:
            return k
    raise KeyError(name)


def ordered_fields(keys: tuple[Key, ...], readers: Mapping[str, Any]) -> dict[str, Any]:
    """``readers`` (YAML key -> reader) in catalog order, checked to be exactly ``keys``.

    A section's parser builds its fields with this, so that a key it reads but the
    catalog lacks (or the reverse) fails at import, not in a user's file.

    Raises:
        ValueError: The reader keys are not the catalog's.
    """
    if set(readers) != set(names(keys)):
        raise ValueError(f"parser keys {sorted(readers)} are not the schema's "
                         f"{sorted(names(keys))}")
    return {name: readers[name] for name in names(keys)}


def flatten(key: Key, path: str = "") -> Iterator[tuple[str, Key]]:
    """Every ``(path, key)`` below ``key`` (itself first unless ``path`` is empty)."""
    if path:
        yield path, key
    sep = "[]." if key.type.form == "list" else "."
    for sub in key.keys:
        yield from flatten(sub, f"{path}{sep}{sub.name}" if path else sub.name)
    for kind, text, kind_keys in key.variants:
        kind_path = f"{path}[type={kind}]"
        yield from flatten(Key(kind, MAPPING, text, Derived("-"), kind_keys), kind_path)


# ---------------------------------------------------------------- JSON Schema


def _object(keys: tuple[Key, ...], extra: Mapping[str, Any], help_text: str = "",
            closed: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object",
                           "properties": {k.name: key_json(k) for k in keys}}
    if help_text:
        out["description"] = help_text
    if closed:
        out["additionalProperties"] = False
    need = required(keys)
    if need:
        out["required"] = list(need)
    out.update(extra)
    return out


def key_json(key: Key) -> dict[str, Any]:
    """The JSON Schema (draft 07) of one key's value."""
    desc = key.help + ("" if not key.type.unit else f" Written as: {key.type.unit}.")
    if key.open_keys:
        out: dict[str, Any] = {**key.type.json, "description": desc}
    elif key.type.form == "mapping":
        out = _object(key.keys, key.json_extra, desc)
    elif key.type.form == "list":
        out = {**key.type.json, "description": desc}
        if key.variants:
            common = {k.name: key_json(k) for k in key.keys}
            out["items"] = {"type": "object", "required": list(required(key.keys)), "oneOf": [
                {**_object(key.keys + kind_keys, {}),
                 "properties": {**common, "type": {"const": kind},
                                **{k.name: key_json(k) for k in kind_keys}}}
                for kind, _, kind_keys in key.variants]}
        else:
            out["items"] = _object(key.keys, key.json_extra)
    elif key.keys:
        alternatives = [*key.type.json.get("anyOf", [dict(key.type.json)]),
                        _object(key.keys, {"maxProperties": 1, **key.json_extra})]
        out = {"anyOf": alternatives, "description": desc}
    else:
        out = {**key.type.json, "description": desc}
    if not key.required and not isinstance(key.default, Derived):
        out["default"] = key.default
    return out


def json_schema(root: Key) -> dict[str, Any]:
    """The JSON Schema of a whole experiment file (``allocsim describe --json-schema``)."""
    out = _object(root.keys, root.json_extra, root.help)
    return {"$schema": JSON_SCHEMA_DIALECT, "title": "allocsim experiment", **out}


# ---------------------------------------------------------------- looking keys up


def _bare(path: str) -> str:
    return path.replace("[]", "")


def _under(path: str, query: str) -> bool:
    return path == query or path.startswith((query + ".", query + "["))


def _spellings(root: Key) -> dict[str, str]:
    """Other ways to name a workload kind: ``workloads.synthetic``, ``workloads[synthetic]``."""
    out = {}
    for path, key in flatten(root):
        for kind, _, _ in key.variants:
            for alias in (f"{path}.{kind}", f"{path}[{kind}]", f"{path}[].{kind}"):
                out[alias] = f"{path}[type={kind}]"
    return out


def select(root: Key, query: str) -> list[tuple[str, Key]]:
    """The keys at and below the key path ``query``; every key for an empty one.

    ``query`` is e.g. ``machine.nodes``, ``workloads[0].rate`` or ``workloads.synthetic``.

    A list index (``[0]``) and ``[]`` may be given or left out; a key that several
    workload kinds have (``workloads[].rate``) is given for each of them.

    Raises:
        LookupError: No key has that path; its message is the nearest valid path.
    """
    flat = list(flatten(root))
    q = re.sub(r"\[\d+\]", "[]", query.strip().strip("."))
    if not q:
        return flat
    for alias, path in _spellings(root).items():
        if _under(q, alias):
            q = path + q[len(alias):]
    found = [(p, k) for p, k in flat if _under(_bare(p), _bare(q))]
    if not found:  # a key of several kinds: workloads.rate -> workloads[type=*].rate
        for p, k in flat:
            if k.variants and _bare(q).startswith(_bare(p) + "."):
                rest = _bare(q)[len(_bare(p)):]
                found += [(path, key) for path, key in flat if any(
                    _under(_bare(path), f"{p}[type={kind}]{rest}") for kind, _, _ in k.variants)]
    if not found:
        raise LookupError(nearest_path(root, q))
    return found


def nearest_path(root: Key, query: str) -> str:
    """The valid key path most like ``query`` (by the whole path, then its last key)."""
    paths = [p for p, _ in flatten(root)]
    near = difflib.get_close_matches(query, paths + list(_spellings(root)), n=1, cutoff=0.6)
    if near:
        return near[0]
    last = re.split(r"[.\[\]]", query.rstrip("]"))[-1]
    by_name = {p.rsplit(".", 1)[-1]: p for p in reversed(paths)}
    near = difflib.get_close_matches(last, list(by_name), n=1, cutoff=0.0)
    return by_name[near[0]] if near else paths[0]
