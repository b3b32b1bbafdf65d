"""Contract compatibility: what changed between two JSON Schemas of the same event version, and
which of those changes would break someone (ADR 0020).

An event schema has two sides. *Producers* (and every event already stored in the stream, which
a replay re-reads) must keep validating: a change that **narrows** what is valid (a property
newly required, a type or enum value removed, a bound tightened, `additionalProperties` turned
false) breaks them. *Readers* were written against the old schema: a change that **widens** what
they may receive (a property removed or no longer required, a type or enum value added, a bound
loosened) breaks them. Within a version only two changes are compatible: a new optional property
(readers ignore properties they do not know) and documentation (`title`, `description`...).

Pure: `compare(old, new)` takes two schemas as parsed JSON and returns the changes found.

Limits, on purpose (the schemas we write use a small part of JSON Schema):
- keywords understood: `type`, `enum`, `const`, `properties`, `required`, `additionalProperties`,
  `items`, `anyOf`/`oneOf`/`allOf` (branches compared by position), `$ref` to the schema's own
  `#/$defs/...` (or `#/definitions/...`), `format`, `pattern`, the numeric, length and item-count
  bounds, `multipleOf`, `uniqueItems`. Any other keyword that differs is reported as breaking,
  so the checker errs towards refusing;
- it compares structure, not meaning: an equivalent rewrite (`"type": ["string", "null"]` versus
  `anyOf` of a string and a null, reordered `anyOf` branches) is reported as a change;
- `$ref` siblings are merged over the target, remote `$ref`s are compared as strings only,
  `patternProperties`, `if`/`then`/`else`, `dependentRequired` and `not` are not analysed
  (a difference in them is reported as an unsupported keyword change).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Breaks = Literal["readers", "producers", "both"]

# Annotations: documentation for people, no effect on what validates.
_ANNOTATIONS = frozenset(
    {"title", "description", "$comment", "examples", "default", "deprecated", "readOnly", "writeOnly", "$id", "$anchor"}
)
# Compared where they apply, not keyword by keyword.
_STRUCTURAL = frozenset(
    {"type", "enum", "const", "properties", "required", "additionalProperties", "items", "anyOf", "oneOf", "allOf"}
)
_LOWER_BOUNDS = ("minimum", "exclusiveMinimum", "minLength", "minItems", "minProperties")
_UPPER_BOUNDS = ("maximum", "exclusiveMaximum", "maxLength", "maxItems", "maxProperties")
_EXACT = ("format", "pattern", "multipleOf", "uniqueItems", "$schema")
_HANDLED = _ANNOTATIONS | _STRUCTURAL | frozenset(_LOWER_BOUNDS + _UPPER_BOUNDS + _EXACT) | {"$defs", "definitions"}


@dataclass(frozen=True, slots=True)
class Change:
    """One difference. `path` is where it applies in an event payload (`$.entries[].amount`);
    `breaks` says who it breaks, None when it is compatible."""

    path: str
    kind: str
    detail: str
    breaks: Breaks | None

    @property
    def breaking(self) -> bool:
        return self.breaks is not None

    def __str__(self) -> str:
        who = f"BREAKS {self.breaks}" if self.breaks else "compatible"
        return f"{self.path}: {self.kind} ({self.detail}) — {who}"


def compare(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    """Every difference between two schemas of one event version, breaking or not, sorted."""
    walker = _Walker(old, new)
    return sorted(set(walker.node("$", old, new)), key=lambda c: (c.path, c.kind, c.detail, c.breaks or ""))


def breaking_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    return [c for c in compare(old, new) if c.breaking]


def schema_digest(schema: Mapping[str, Any]) -> str:
    """sha256 of the schema's canonical JSON (sorted keys, no spaces): reformatting a file does not
    change it, any change of content does. What `RELEASED.json` locks."""
    canonical = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class _Walker:
    def __init__(self, old_root: Mapping[str, Any], new_root: Mapping[str, Any]) -> None:
        self._roots = (old_root, new_root)
        self._open: set[tuple[str, str]] = set()  # pairs of $refs being compared (cycle guard)

    def node(self, path: str, old: Any, new: Any) -> Iterator[Change]:
        old, old_ref = self._resolve(0, old)
        new, new_ref = self._resolve(1, new)
        key = (old_ref, new_ref)
        if not old_ref and not new_ref:
            yield from self._compare(path, old, new)
        elif key not in self._open:  # a recursive definition is compared once, not forever
            self._open.add(key)
            try:
                yield from self._compare(path, old, new)
            finally:
                self._open.discard(key)

    def _compare(self, path: str, old: Any, new: Any) -> Iterator[Change]:
        if not isinstance(old, Mapping) or not isinstance(new, Mapping):  # `true`, `false`, or not a schema
            if old != new:
                yield Change(path, "schema_changed", f"{_short(old)} -> {_short(new)}", "both")
            return
        yield from self._types(path, old, new)
        yield from self._values(path, old, new)
        yield from self._bounds(path, old, new)
        yield from self._exact(path, old, new)
        yield from self._object(path, old, new)
        if "items" in old or "items" in new:
            yield from self._optional_schema(f"{path}[]", old.get("items"), new.get("items"), "items")
        for keyword in ("anyOf", "oneOf", "allOf"):
            yield from self._branches(path, keyword, old.get(keyword), new.get(keyword))
        for keyword in sorted((set(old) | set(new)) - _HANDLED):
            if old.get(keyword) != new.get(keyword):
                yield Change(path, "unsupported_keyword_changed", keyword, "both")

    def _resolve(self, side: int, schema: Any) -> tuple[Any, str]:
        """Follow local `$ref`s; sibling keywords are merged over the target."""
        ref = ""
        for _ in range(32):
            if not isinstance(schema, Mapping) or "$ref" not in schema:
                break
            ref = str(schema["$ref"])
            target = self._lookup(self._roots[side], ref)
            if target is None:  # remote or dangling: compared as a plain keyword
                return schema, ref
            schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        return schema, ref

    @staticmethod
    def _lookup(root: Mapping[str, Any], ref: str) -> Any:
        if not ref.startswith("#/"):
            return None
        target: Any = root
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(target, Mapping) or part not in target:
                return None
            target = target[part]
        return target

    def _types(self, path: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
        before, after = _type_set(old), _type_set(new)
        if before == after:
            return
        if before is None:
            yield Change(path, "type_narrowed", f"any -> {_names(after)}", "producers")
        elif after is None:
            yield Change(path, "type_widened", f"{_names(before)} -> any", "readers")
        else:
            if before - after:
                yield Change(path, "type_narrowed", f"{_names(before)} -> {_names(after)}", "producers")
            if after - before:
                yield Change(path, "type_widened", f"{_names(before)} -> {_names(after)}", "readers")

    @staticmethod
    def _values(path: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
        if old.get("const", _MISSING) != new.get("const", _MISSING):
            yield Change(path, "const_changed", f"{_short(old.get('const'))} -> {_short(new.get('const'))}", "both")
        if "enum" not in old and "enum" not in new:
            return
        if "enum" not in new:
            yield Change(path, "enum_removed", "any value is now allowed", "readers")
            return
        if "enum" not in old:
            yield Change(path, "enum_added", f"only {_short(new['enum'])} is now allowed", "producers")
            return
        before, after = [_canon(v) for v in old["enum"]], [_canon(v) for v in new["enum"]]
        if removed := [v for v in before if v not in after]:
            yield Change(path, "enum_value_removed", ", ".join(removed), "producers")
        if added := [v for v in after if v not in before]:
            yield Change(path, "enum_value_added", ", ".join(added), "readers")

    @staticmethod
    def _bounds(path: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
        for keyword in _LOWER_BOUNDS + _UPPER_BOUNDS:
            before, after = old.get(keyword), new.get(keyword)
            if before == after:
                continue
            if before is None:
                kind, tighter = f"{keyword}_added", True
            elif after is None:
                kind, tighter = f"{keyword}_removed", False
            else:
                kind = f"{keyword}_{'raised' if after > before else 'lowered'}"
                tighter = (after > before) == (keyword in _LOWER_BOUNDS)
            yield Change(path, kind, f"{before} -> {after}", "producers" if tighter else "readers")

    @staticmethod
    def _exact(path: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
        for keyword in _EXACT:
            before, after = old.get(keyword), new.get(keyword)
            if before == after:
                continue
            breaks: Breaks
            if before is None:
                kind, breaks = f"{keyword}_added", "producers"
            elif after is None:
                kind, breaks = f"{keyword}_removed", "readers"
            else:
                kind, breaks = f"{keyword}_changed", "both"
            yield Change(path, kind, f"{_short(before)} -> {_short(after)}", breaks)

    def _object(self, path: str, old: Mapping[str, Any], new: Mapping[str, Any]) -> Iterator[Change]:
        old_props: Mapping[str, Any] = old.get("properties") or {}
        new_props: Mapping[str, Any] = new.get("properties") or {}
        old_required, new_required = set(old.get("required") or ()), set(new.get("required") or ())
        for name in sorted(set(old_props) | set(new_props) | old_required | new_required):
            where = f"{path}.{name}"
            if name in old_props and name not in new_props:
                yield Change(where, "property_removed", "its readers lose it, its type is no longer checked", "readers")
            elif name in new_props and name not in old_props:
                if name in new_required:
                    yield Change(
                        where, "property_added_required", "payloads without it no longer validate", "producers"
                    )
                else:
                    yield Change(where, "property_added", "optional: readers ignore what they do not know", None)
            elif name in old_props:
                yield from self.node(where, old_props[name], new_props[name])
            if name in new_required and name not in old_required and (name in old_props or name not in new_props):
                yield Change(where, "property_newly_required", "payloads without it fail", "producers")
            if name in old_required and name not in new_required:
                yield Change(where, "property_no_longer_required", "readers may not find it", "readers")
        yield from self._additional(path, old.get("additionalProperties"), new.get("additionalProperties"))

    def _additional(self, path: str, old: Any, new: Any) -> Iterator[Change]:
        closed_before, closed_after = old is False, new is False
        if closed_after and not closed_before:
            yield Change(path, "additional_properties_closed", "payloads with extra properties fail", "producers")
        elif closed_before and not closed_after:
            yield Change(path, "additional_properties_opened", "readers ignore what they do not know", None)
        elif isinstance(old, Mapping) or isinstance(new, Mapping):
            yield from self._optional_schema(f"{path}{{*}}", old, new, "additionalProperties")

    def _optional_schema(self, path: str, old: Any, new: Any, keyword: str) -> Iterator[Change]:
        if old is None and new is None:
            return
        if old is None or old is True:
            yield Change(path, f"{keyword}_constrained", "it was unconstrained", "producers")
        elif new is None or new is True:
            yield Change(path, f"{keyword}_unconstrained", "it is no longer checked", "readers")
        else:
            yield from self.node(path, old, new)

    def _branches(self, path: str, keyword: str, old: Any, new: Any) -> Iterator[Change]:
        if old is None and new is None:
            return
        if old is None or new is None:
            yield Change(path, f"{keyword}_{'added' if old is None else 'removed'}", keyword, "both")
            return
        if len(old) != len(new):
            yield Change(path, f"{keyword}_branches_changed", f"{len(old)} -> {len(new)} branches", "both")
            return
        for i, (before, after) in enumerate(zip(old, new, strict=True)):
            yield from self.node(f"{path}<{keyword}[{i}]>", before, after)


class _Missing:
    def __repr__(self) -> str:
        return "(none)"


_MISSING = _Missing()


def _type_set(schema: Mapping[str, Any]) -> frozenset[str] | None:
    declared = schema.get("type")
    if declared is None:
        return None
    return frozenset([declared] if isinstance(declared, str) else declared)


def _names(types: frozenset[str] | None) -> str:
    return "any" if types is None else "|".join(sorted(types))


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _short(value: Any) -> str:
    text = _canon(value) if not isinstance(value, _Missing) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
