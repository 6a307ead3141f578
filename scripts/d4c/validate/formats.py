"""Output formats for findings: text for people, GitHub annotations for CI, JSON for tools."""
from __future__ import annotations

import json
from collections.abc import Sequence

from d4c import ci
from d4c.redact import redact
from d4c.validate.lints import Finding


def text(findings: Sequence[Finding]) -> str:
    lines = [f"{f.path}:{f.line}:{f.col}: {f.lint} {f.message}"
             + (" (warning)" if f.severity == "warning" else "") for f in findings]
    return "".join(redact(line) + "\n" for line in lines)


def github(findings: Sequence[Finding]) -> str:
    lines = [ci.annotation(f.severity, f.message, file=f.path, line=f.line, col=f.col, title=f.lint)
             for f in findings]
    return "".join(line + "\n" for line in lines)


def as_json(findings: Sequence[Finding]) -> str:
    rows = [{"path": f.path, "line": f.line, "col": f.col, "id": f.lint, "severity": f.severity,
             "message": redact(f.message)} for f in findings]
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"


FORMATS = {"text": text, "github": github, "json": as_json}


def step_summary(findings: Sequence[Finding], docs_url: str | None = None, limit: int = 500) -> str:
    """Markdown for GITHUB_STEP_SUMMARY: GitHub shows only ~10 annotations of each kind
    per step, the summary lists them all (capped well under its 1 MiB limit)."""
    errors = sum(f.severity == "error" for f in findings)
    head = [f"### d4c validate: {errors} error(s), {len(findings) - errors} warning(s)", ""]
    if not findings:
        return "\n".join([*head, "All recipes are valid.", ""])
    rows = ["| where | id | severity | message |", "|---|---|---|---|"]
    for f in findings[:limit]:
        msg = redact(f.message).replace("|", "\\|")
        lint = f"[{f.lint}]({docs_url}#{f.lint.lower()})" if docs_url else f.lint
        rows.append(f"| `{f.path}:{f.line}:{f.col}` | {lint} | {f.severity} | {msg} |")
    more = ["", f"... and {len(findings) - limit} more."] if len(findings) > limit else []
    return "\n".join([*head, *rows, *more, ""])
