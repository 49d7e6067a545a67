"""The refusals in the API's description: what a client gets back when a request is refused.

Every route can be refused (not signed in, a role that may not, something not found, a
conflict, bad input), and the application answers all of these the same way:
`{"error": "what is wrong and what to do"}` (see `_http_error` in tingfeng.web.app). FastAPI
documents only its own validation answer (422 with `detail`), so without this a client
generated from the description, or a fuzzer checking answers against it, would meet
undocumented statuses and bodies everywhere.
"""

from __future__ import annotations

from typing import Any

ERROR = "Error"
VALIDATION = "HTTPValidationError"
METHODS = frozenset({"get", "put", "post", "delete", "patch", "head", "options", "trace"})

_ERROR_SCHEMA: dict[str, Any] = {
    "title": ERROR,
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "title": "Error",
            "description": "What is wrong and what to do, in plain words (some answers carry "
            "a list of problems instead).",
        }
    },
    "description": "A refused request.",
}
_REFUSED = {
    "description": "Refused: not signed in (401), not allowed (403), not found (404), a "
    "conflict (409), too large (413), bad input (422) or too many attempts (429); `error` "
    "says why and what to do.",
    "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR}"}}},
}


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the shared error answer to every operation of an OpenAPI `schema` (in place)."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault(ERROR, _ERROR_SCHEMA)
    error_ref = {"$ref": f"#/components/schemas/{ERROR}"}
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in METHODS or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            responses.setdefault("4XX", _REFUSED)
            invalid = responses.get("422")
            if invalid is None:
                continue
            # A 422 is FastAPI's (`detail`: a list of fields) when the request does not fit
            # the declared types, and ours (`error`) when the values are wrong.
            media = invalid.get("content", {}).get("application/json", {})
            declared = media.get("schema")
            if declared is not None and declared != error_ref:
                media["schema"] = {"anyOf": [declared, error_ref]}
    return schema


CSV = "text/csv; charset=utf-8"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def downloads(*media_types: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route whose 200 may be a file of these types (besides JSON)."""
    binary = {"schema": {"type": "string", "format": "binary"}}
    return {200: {"content": {media: binary for media in media_types}}}
