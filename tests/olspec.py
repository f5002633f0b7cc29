"""Checks an event against the official OpenLineage JSON schemas kept in ../shared
(and our own facet's schema shipped in the package): the event, and every facet against
the schema its ``_schemaURL`` names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from referencing import Registry, Resource

ROOT = Path(__file__).resolve().parent.parent
SPEC_DIR = ROOT.parent / "shared" / "openlineage-spec"
OUR_FACETS = ROOT / "otel_sqla_lineage" / "facets"


def _registry() -> Registry:
    if not (SPEC_DIR / "OpenLineage.json").exists():
        pytest.fail(f"the OpenLineage JSON schemas are expected in {SPEC_DIR}", pytrace=False)
    resources = []
    for path in [SPEC_DIR / "OpenLineage.json", *SPEC_DIR.glob("facets/*.json"),
                 *OUR_FACETS.glob("*.json")]:
        contents = json.loads(path.read_text())
        resources.append((contents["$id"], Resource.from_contents(contents)))
    return Registry().with_resources(resources)


_REGISTRY: Registry | None = None


def validate_event(event: dict[str, Any]) -> None:
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = _registry()
    validator = jsonschema.Draft202012Validator(
        {"$ref": event["schemaURL"]}, registry=_REGISTRY,
        format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(event)
    for facet in _facets(event):
        jsonschema.Draft202012Validator(
            {"$ref": facet["_schemaURL"]}, registry=_REGISTRY
        ).validate(facet)


def _facets(event: dict[str, Any]) -> list[dict[str, Any]]:
    if "dataset" in event:  # a static DatasetEvent
        return list(event["dataset"]["facets"].values())
    out = list(event["run"]["facets"].values()) + list(event["job"]["facets"].values())
    for dataset in event["inputs"] + event["outputs"]:
        out += list(dataset["facets"].values())
        out += list(dataset.get("inputFacets", {}).values())
        out += list(dataset.get("outputFacets", {}).values())
    return out
