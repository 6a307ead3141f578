"""The command-line tools a build environment puts on PATH, and their versions as they report them.

A command transform runs whatever `ogr2ogr`, `gdal_translate` or `tippecanoe` the environment
has (docker/gdal.Dockerfile pins them), and their versions reach its bytes, so the manifest
records them (`environment.tools`) beside the Python packages. The worker asks inside the
build, on the build's own PATH, never the host that starts it; a tool that is not there is
left out. Each probe knows how to ask one program; what is recorded is what the program says.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable

TIMEOUT = 20  # seconds a version question may take; a tool that hangs is recorded as unknown
UNKNOWN = "unknown"


def _gdalinfo(ask: Callable[[str], str]) -> dict[str, str]:
    """GDAL from `--version` ("GDAL 3.6.2, released 2023/01/02"); the PROJ and GEOS that this
    GDAL runs with from `--build` (PROJ_RUNTIME_VERSION=9.1.1, GEOS_VERSION=3.11.1-CAPI-1.17.1)."""
    found = {"gdal": _match(r"^GDAL (\S+?),", ask("--version"))}
    build = ask("--build")
    for key, pattern in (("proj", r"^PROJ_RUNTIME_VERSION=(\S+)"), ("geos", r"^GEOS_VERSION=([^-\s]+)")):
        value = _match(pattern, build)
        if value != UNKNOWN:
            found[key] = value
    return found


def _tippecanoe(ask: Callable[[str], str]) -> dict[str, str]:
    return {"tippecanoe": _match(r"^tippecanoe v?(\S+)", ask("--version"))}


# program on PATH -> how to read the versions it reports (manifest key -> version)
PROBES: dict[str, Callable[[Callable[[str], str]], dict[str, str]]] = {
    "gdalinfo": _gdalinfo,
    "tippecanoe": _tippecanoe,
}


def _match(pattern: str, text: str) -> str:
    m = re.search(pattern, text, re.MULTILINE)
    return m.group(1) if m else UNKNOWN


def _asker(program: str) -> Callable[[str], str]:
    def ask(flag: str) -> str:
        try:
            proc = subprocess.run([program, flag], stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return proc.stdout + proc.stderr  # tippecanoe answers on stderr

    return ask


def versions(path: str | None = None) -> dict[str, str]:
    """{"gdal": "3.6.2", "proj": "9.1.1", "geos": "3.11.1", "tippecanoe": "2.72.0"}, or the part
    of it that this PATH (default: this process's) holds."""
    search = path if path is not None else os.environ.get("PATH", os.defpath)
    found: dict[str, str] = {}
    for program, probe in PROBES.items():
        where = shutil.which(program, path=search)
        if where:
            found.update(probe(_asker(where)))
    return dict(sorted(found.items()))
