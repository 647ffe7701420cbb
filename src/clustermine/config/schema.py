"""The config schema: the schema file's structure with the plugin catalog's names and
parameters filled in, and a validator that fills in defaults (as Snakemake's own does)."""

from __future__ import annotations

import copy
import os
from typing import Any, Mapping

import yaml

from clustermine import catalog
from clustermine.config.errors import ConfigError

# Keys of a config entry that belong to the workflow, not to the plugin.
ENTRY_KEYS = {"score": {"labels": {"$ref": "#/definitions/slug"}}}


def plugin_branches(kind: str) -> list[dict[str, Any]]:
    """One ``if {selector: name} then {its keys}`` branch per plugin of ``kind``, from the
    catalog: a misspelt parameter is then named when the workflow starts."""
    selector = catalog.SELECTOR_KEYS[kind]
    branches = []
    for name, plugin in catalog.REGISTRIES[kind].items():
        then = plugin.schema()
        then["properties"] = {selector: {}, **ENTRY_KEYS.get(kind, {}), **then["properties"]}
        then["additionalProperties"] = False
        branches.append({"if": {"properties": {selector: {"const": name}}}, "then": then})
    return branches


def config_schema(base: Mapping[str, Any]) -> dict[str, Any]:
    """The schema file's schema with the catalog's plugin names and parameters filled in."""
    from clustermine.prompts import PROMPT_SETS
    from clustermine.public_sets import PUBLIC_SETS

    schema = copy.deepcopy(dict(base))
    schema["definitions"]["prompt_set"] = {"type": "string", "enum": sorted(PROMPT_SETS)}
    schema["definitions"]["public_set"] = {"type": "string", "enum": sorted(PUBLIC_SETS)}
    for kind, section in catalog.SECTIONS.items():
        entry = schema["properties"][section]["additionalProperties"]
        selector = catalog.SELECTOR_KEYS[kind]
        entry["properties"][selector] = {
            "type": "string",
            "enum": sorted(catalog.REGISTRIES[kind]),
            "description": f"a {kind} declared in clustermine.catalog",
        }
        entry["allOf"] = [*entry.get("allOf", []), *plugin_branches(kind)]
    return schema


def _validator_with_defaults(schema: Mapping[str, Any]):
    """A Draft 2020-12 validator that also fills in the ``default`` of absent properties
    (as Snakemake's own ``validate`` does)."""
    import jsonschema

    base = jsonschema.Draft202012Validator

    def set_defaults(validator, properties, instance, schema):
        if isinstance(instance, dict):
            for key, sub in properties.items():
                if isinstance(sub, dict) and "default" in sub and key not in instance:
                    instance[key] = copy.deepcopy(sub["default"])
        yield from base.VALIDATORS["properties"](validator, properties, instance, schema)

    cls = jsonschema.validators.extend(base, {"properties": set_defaults})
    return cls(schema)


def validate_config(config: dict[str, Any], schema_path: str | os.PathLike) -> None:
    """Check ``config`` against the schema file plus the catalog; fill in defaults."""
    with open(schema_path, encoding="utf-8") as f:
        base = yaml.safe_load(f)
    validator = _validator_with_defaults(config_schema(base))
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        messages = []
        for err in errors[:10]:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            messages.append(f"  {where}: {_best_message(err)}")
        raise ConfigError(
            f"config: {len(errors)} problem(s) against {schema_path} (keys are explained in "
            "config/README.md):\n" + "\n".join(messages)
        )


def _best_message(err) -> str:
    """The most specific message of a validation error (if/then branches nest theirs)."""
    while err.context:
        err = max(err.context, key=lambda e: len(e.absolute_path))
    return err.message
