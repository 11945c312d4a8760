"""JSON Schemas (draft-07) of playbooks and inventories, generated from the step kinds' dataclasses and the loaders'
keys, for editors (yaml-language-server) and CI linters: `remediate schema playbook|inventory` prints them, the
wheel ships them (`remediate/_data/schema/`, written at build time by hatch_build.py). Pure: no file is read.

The loaders stay the judges (they also check what a schema cannot: templates, handler names, file:line); a
schema only says early, in the editor, what they would refuse."""
from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from collections.abc import Mapping
from typing import Any

from ..inputs.inventory import HOST_KEYS
from ..inputs.playbook import PLAY_KEYS, STEP_KEYS, VERIFY_FAILURE_ACTIONS
from . import REGISTRY

DRAFT = "http://json-schema.org/draft-07/schema#"
SCHEMA_ID = "https://remediate.invalid/schema/{kind}.schema.json"
# a Jinja2 template: its value's type is checked after rendering, so a template is accepted where any type is
TEMPLATE: dict[str, Any] = {"type": "string", "pattern": r"\{\{|\{%"}
STRINGS: dict[str, Any] = {"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}
IDENTIFIER = r"^[A-Za-z_][A-Za-z0-9_]*$"
VARIABLES: dict[str, Any] = {"type": "object", "propertyNames": {"pattern": IDENTIFIER},
                             "description": "variables (names are identifiers; values may be templates)"}
EXPRESSION: dict[str, Any] = {"type": ["string", "boolean"], "description": "a Jinja2 expression"}


def _type(hint: Any) -> dict[str, Any]:
    """The JSON Schema of a field type as Step.build coerces it."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return {}
    if origin in (typing.Union, types.UnionType):
        options = [_type(a) for a in args if a is not type(None)]
        if type(None) in args:
            options.append({"type": "null"})
        return {"anyOf": options} if len(options) > 1 else options[0]
    if hint is str:
        return {"type": ["string", "number"]}  # numbers become text
    if hint is bool:
        return {"anyOf": [{"type": "boolean"}, TEMPLATE]}
    if hint is int:
        return {"anyOf": [{"type": "integer"}, TEMPLATE]}
    if hint is float:
        return {"anyOf": [{"type": "number"}, TEMPLATE]}
    if origin is tuple:
        item = _type(args[0]) if args else {}
        return {"anyOf": [{"type": "array", "items": item}, item]} if item else {}
    if origin is Mapping or origin is dict:
        values = _type(args[1]) if len(args) == 2 else {}
        mapping: dict[str, Any] = {"type": "object"}
        if values:
            mapping["additionalProperties"] = values
        return {"anyOf": [mapping, TEMPLATE]}
    return {}


def kind_schema(cls: type) -> dict[str, Any]:
    """One step kind's arguments: every field typed, the required ones, nothing else; its docstring."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required = []
    for f in dataclasses.fields(cls):
        if f.name == "where":
            continue
        properties[f.name] = _type(hints[f.name])
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    doc = inspect.getdoc(cls) or ""
    # not anyOf: a validator then reports the argument that is wrong, not "valid under none of the schemas"
    out: dict[str, Any] = {"type": "object" if required else ["object", "null"], "description": doc,
                           "markdownDescription": doc, "properties": properties, "additionalProperties": False}
    if required:
        out["required"] = required
    return out


def _step() -> dict[str, Any]:
    generic: dict[str, Any] = {
        "name": {"type": ["string", "number"]},
        "when": EXPRESSION, "until": EXPRESSION, "changed_when": EXPRESSION, "failed_when": EXPRESSION,
        "register": {"type": "string", "pattern": IDENTIFIER},
        "notify": STRINGS, "listen": STRINGS, "tags": STRINGS,
        "retries": {"type": "integer", "minimum": 0},
        "delay": {"type": "number", "minimum": 0},
        "ignore_errors": {"type": "boolean"},
        "verify": {"type": "boolean"},
        "loop": {"anyOf": [{"type": "array"}, TEMPLATE]},
    }
    properties = {key: generic.get(key, {}) for key in STEP_KEYS}
    properties.update({kind: {"$ref": f"#/definitions/kind_{kind}"} for kind in sorted(REGISTRY)})
    return {
        "type": "object",
        "description": "a step: `name`, the generic keys, and exactly one step kind",
        "properties": properties,
        "additionalProperties": False,
        "oneOf": [{"required": [kind]} for kind in sorted(REGISTRY)],
    }


def _play() -> dict[str, Any]:
    known: dict[str, Any] = {
        "name": {"type": "string"},
        "hosts": {"type": "string", "description": "a host pattern: all, groups, hosts, wildcards, !exclusions"},
        "vars": VARIABLES, "defaults": VARIABLES,
        "vars_files": STRINGS,
        "steps": {"type": "array", "items": {"$ref": "#/definitions/step"}},
        "handlers": {"type": "array", "items": {"$ref": "#/definitions/step"}},
        "tags": STRINGS,
        "on_verify_failure": {"enum": list(VERIFY_FAILURE_ACTIONS)},
        "secret_vars": STRINGS,
    }
    return {"type": "object", "properties": {key: known.get(key, {}) for key in PLAY_KEYS},
            "additionalProperties": False, "required": ["hosts", "steps"]}


def playbook_schema() -> dict[str, Any]:
    """A playbook: a play, or a list of plays and `import_playbook:` entries."""
    definitions: dict[str, Any] = {f"kind_{kind}": kind_schema(cls) for kind, cls in sorted(REGISTRY.items())}
    definitions["step"] = _step()
    definitions["play"] = _play()
    definitions["import"] = {"type": "object", "properties": {"import_playbook": {"type": "string"}},
                             "required": ["import_playbook"], "additionalProperties": False}
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID.format(kind="playbook"),
        "title": "remediate playbook",
        "definitions": definitions,
        # if/then/else rather than anyOf, so that a mistake is reported where it is
        "if": {"type": "array"},
        "then": {"type": "array", "minItems": 1, "items": {
            "if": {"type": "object", "required": ["import_playbook"]},
            "then": {"$ref": "#/definitions/import"}, "else": {"$ref": "#/definitions/play"}}},
        "else": {"$ref": "#/definitions/play"},
    }


def inventory_schema() -> dict[str, Any]:
    """An inventory: shared vars, hosts, groups (lists, or hosts with group vars), secret_vars."""
    known: dict[str, Any] = {
        "address": {"type": "string"},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "user": {"type": "string"},
        "identity_file": {"type": "string"},
        "known_hosts": {"type": "string"},
        "connection": {"enum": ["ssh", "local"]},
        "vars": VARIABLES,
    }
    host = {"type": ["object", "null"], "properties": {key: known.get(key, {}) for key in HOST_KEYS},
            "additionalProperties": False}
    members = {"type": "array", "items": {"type": "string"}}
    group = {"anyOf": [members, {"type": "object", "properties": {"hosts": members, "vars": VARIABLES},
                                 "additionalProperties": False}]}
    return {
        "$schema": DRAFT,
        "$id": SCHEMA_ID.format(kind="inventory"),
        "title": "remediate inventory",
        "type": "object",
        "properties": {
            "vars": VARIABLES,
            "hosts": {"type": "object", "minProperties": 1, "additionalProperties": host},
            "groups": {"type": "object", "additionalProperties": group},
            "secret_vars": STRINGS,
        },
        "required": ["hosts"],
        "additionalProperties": False,
    }


SCHEMAS = {"playbook": playbook_schema, "inventory": inventory_schema}


def render(kind: str) -> str:
    """The schema as the file the wheel ships (and `remediate schema KIND` prints)."""
    import json

    return json.dumps(SCHEMAS[kind](), indent=2, sort_keys=True) + "\n"
