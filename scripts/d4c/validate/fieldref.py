"""The recipe field reference, generated from the schema's descriptions into the
contributor guide between two markers (so prose and reference live in one page)."""
from __future__ import annotations

from typing import Any

from d4c.errors import D4CError

START = "<!-- fields:start (generated from schemas/recipe.schema.json by `make docs`) -->"
END = "<!-- fields:end -->"


def _type(node: dict[str, Any]) -> str:
    if "enum" in node:
        return " \\| ".join(f"`{v}`" for v in node["enum"])
    if "type" not in node and "anyOf" in node:
        return " or ".join(f"`{n['const']}`" if "const" in n else _type(n) for n in node["anyOf"])
    kind = node.get("type", "any")
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    return {"object": "mapping", "string": "text", "integer": "integer", "number": "number",
            "boolean": "true/false"}.get(kind, kind)


def _rows(node: dict[str, Any], prefix: str) -> list[str]:
    rows = []
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        desc = child.get("description", "").replace("|", "\\|")
        req = "yes" if name in required else ""
        rows.append(f"| `{path}` | {_type(child)} | {req} | {desc} |")
        target = child.get("items", {}) if child.get("type") == "array" else child
        if target.get("properties"):
            rows += _rows(target, f"{path}[]." if child.get("type") == "array" else f"{path}.")
    return rows


def render(schema: dict[str, Any]) -> str:
    head = ["| field | type | required | description |", "|---|---|---|---|"]
    return "\n".join([START, "", *head, *_rows(schema, ""), "", END])


def splice(page: str, schema: dict[str, Any]) -> str:
    """`page` with the generated block replaced (the markers must be present)."""
    start, end = page.find(START), page.find(END)
    if start < 0 or end < start:
        raise D4CError("the page has no generated field block",
                       hint=f"add the two marker lines {START!r} and {END!r}")
    return page[:start] + render(schema) + page[end + len(END):]
