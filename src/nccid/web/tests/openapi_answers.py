"""Checks an answer of the JSON API against what /api/openapi.json declares for its operation
(status and shape); shared by the portal's and the research API's tests."""

from __future__ import annotations

import re

import jsonschema


def operation(schema: dict, method: str, path: str) -> dict:
    """The schema's operation for ``method`` on ``path`` (its templated address matched)."""
    address = path.split("?")[0]
    for template, operations in schema["paths"].items():
        if method in operations and re.fullmatch(re.sub(r"\{[^}]+\}", "[^/]+", template), address):
            return operations[method]
    raise AssertionError(f"no operation for {method.upper()} {address}")


def undocumented(schema: dict, method: str, path: str, answer) -> str | None:
    """Why ``answer`` is not one the schema declares for the operation, or None."""
    declared = operation(schema, method, path)["responses"].get(str(answer.status_code))
    if declared is None:
        return f"{method.upper()} {path}: {answer.status_code} is not in the schema"
    if not answer["Content-Type"].startswith("application/json"):
        return None if answer.status_code < 400 else f"{method.upper()} {path}: not JSON"
    shape = declared.get("content", {}).get("application/json", {}).get("schema")
    if shape is None:
        return f"{method.upper()} {path}: {answer.status_code} has no schema"
    try:
        jsonschema.validate(answer.json(), {**shape, "components": schema["components"]})
    except jsonschema.ValidationError as exc:
        return f"{method.upper()} {path}: {answer.status_code} {exc.message}"
    return None
