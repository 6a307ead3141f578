"""The resource limits of one build: defaults that fit a CI runner, per-recipe overrides.

A recipe may raise or lower them under `limits:` (the schema checks the forms); the
caps here stop a recipe from asking for more than any runner we support can give.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from d4c.errors import D4CError

GIB = 2**30
_UNITS = {"s": 1, "m": 60, "h": 3600, "MiB": 2**20, "GiB": GIB, "TiB": 2**40}


@dataclass(frozen=True)
class Limits:
    wall_time: int = 2 * 3600  # seconds: well inside a 6-hour hosted CI job
    memory: int = 8 * GIB  # bytes of address space, and the size of the tmpfs /tmp
    processes: int = 512  # processes and threads of the build's user
    output_size: int = 20 * GIB  # bytes in the output folder, all files together

    def describe(self) -> str:
        return (f"wall time {human(self.wall_time, 's')}, memory {human(self.memory, 'B')}, "
                f"{self.processes} processes, output {human(self.output_size, 'B')}")


DEFAULTS = Limits()
# The most a recipe may ask for: a self-hosted runner's 5-day job, a large machine.
CAPS = Limits(wall_time=5 * 24 * 3600, memory=2**40, processes=65536, output_size=16 * 2**40)


def human(value: int, kind: str) -> str:
    """3600 s -> "1h", 8 GiB -> "8 GiB": the units a recipe is written in."""
    units = ("h", "m", "s") if kind == "s" else ("TiB", "GiB", "MiB")
    for unit in units:
        if value % _UNITS[unit] == 0 and value >= _UNITS[unit]:
            n = value // _UNITS[unit]
            return f"{n}{unit}" if kind == "s" else f"{n} {unit}"
    return f"{value} {'s' if kind == 's' else 'bytes'}"


def _parse(value: Any, pattern: str, field: str) -> int:
    m = re.fullmatch(pattern, str(value).strip())
    if not m or isinstance(value, bool):
        raise D4CError(f"limits.{field}: {value!r} is not a valid value",
                       hint="see `limits` in docs/contributing.md (e.g. wall_time: 90m, memory: 8GiB)")
    return int(m.group(1)) * _UNITS[m.group(2)]


def from_recipe(data: dict[str, Any]) -> Limits:
    """The recipe's limits over the defaults, or one clear error (past a cap, a bad form)."""
    raw = data.get("limits") or {}
    if not isinstance(raw, dict):
        raise D4CError("limits: must be a mapping", hint="run `d4c validate`")
    size = r"([1-9][0-9]*) ?(MiB|GiB|TiB)"
    values = {
        "wall_time": _parse(raw["wall_time"], r"([1-9][0-9]*)(s|m|h)", "wall_time") if "wall_time" in raw else None,
        "memory": _parse(raw["memory"], size, "memory") if "memory" in raw else None,
        "output_size": _parse(raw["output_size"], size, "output_size") if "output_size" in raw else None,
        "processes": raw.get("processes"),
    }
    if values["processes"] is not None and (not isinstance(values["processes"], int)
                                            or isinstance(values["processes"], bool) or values["processes"] < 8):
        raise D4CError(f"limits.processes: {values['processes']!r} is not an integer of at least 8")
    chosen = {k: v for k, v in values.items() if v is not None}
    for key, value in chosen.items():
        cap = getattr(CAPS, key)
        if value > cap:
            kind = "s" if key == "wall_time" else "B"
            shown = str(cap) if key == "processes" else human(cap, kind)
            raise D4CError(f"limits.{key}: more than the most a build may use ({shown})",
                           hint="split the build (see docs/security.md, limits)")
    return Limits(**{**DEFAULTS.__dict__, **chosen})
