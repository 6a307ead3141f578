"""Keep a transform inside its lane, and say clearly when it leaves it.

Two layers. The process layer (bubblewrap or the container: see
`d4c.build.runners` and docs/security.md) is the security boundary. Inside the
worker, a Python audit hook (PEP 578) turns the three mistakes contributors
actually make into one clear message: writing outside the output folder, reading
a dataset file that the recipe does not declare, and opening a network connection.
The hook records the first violation, so a transform that swallows the exception
still fails. The hook is a courtesy, not a wall: native code never reaches it.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Any

# Audit events that change the file system: event -> indexes of the path arguments.
_WRITE_EVENTS = {
    "os.mkdir": (0,), "os.rmdir": (0,), "os.remove": (0,), "os.rename": (0, 1),
    "os.replace": (0, 1), "os.symlink": (1,), "os.link": (1,), "os.truncate": (0,),
    "os.chmod": (0,), "os.chown": (0,), "os.utime": (0,), "shutil.rmtree": (0,),
    "shutil.copyfile": (1,), "shutil.move": (1,),
}
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_NET_EVENTS = {"socket.connect", "socket.getaddrinfo", "socket.gethostbyname", "socket.sendto"}
_DEVICES = ("/dev/null", "/dev/stdout", "/dev/stderr", "/dev/tty", "/dev/urandom", "/dev/random")


class SandboxViolation(PermissionError):
    """A transform did something a reproducible build must not do."""


@dataclass
class Policy:
    writable: list[str]  # folders the transform may write in (its staging output, scratch)
    guarded: list[str]  # folders (the repository) where only `readable` may be read
    readable: list[str]  # declared sources, the transform's own code, the Python install
    active: bool = True
    violations: list[str] = field(default_factory=list)

    def _under(self, path: str, roots: list[str]) -> bool:
        return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)

    def check_path(self, raw: Any, write: bool) -> None:
        if isinstance(raw, int) or raw is None:
            return  # an already-open descriptor
        path = os.path.realpath(os.fsdecode(raw))
        if path in _DEVICES or path.startswith("/proc/self/"):
            return
        if write and not self._under(path, self.writable):
            self.fail(f"the transform wrote outside its output folder: {path} "
                      "(write outputs with ctx.write_* or ctx.output_path)")
        elif not write and self._under(path, self.guarded) and not self._under(path, self.readable):
            self.fail(f"the transform read an undeclared repository file: {path} "
                      "(declare it under `sources:` in recipe.yaml and use ctx.source(name))")

    def fail(self, message: str) -> None:
        self.violations.append(message)
        raise SandboxViolation(message)

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if not self.active:
            return
        if event == "open":
            path, mode, flags = args
            write = any(c in str(mode or "") for c in "wax+") or bool((flags or 0) & _WRITE_FLAGS)
            self.check_path(path, write)
        elif event in _WRITE_EVENTS:
            for i in _WRITE_EVENTS[event]:
                if i < len(args):
                    self.check_path(args[i], write=True)
        elif event in _NET_EVENTS:
            addr = args[1] if event in {"socket.connect", "socket.sendto"} else args[:2]
            target = ":".join(str(a) for a in addr[:2]) if isinstance(addr, tuple) else str(addr)
            self.fail(f"the transform opened a network connection ({event} {target}); "
                      "builds run offline: declare the data as a source in recipe.yaml")


def install(policy: Policy) -> None:
    """Install the hook for the rest of this process (audit hooks cannot be removed)."""
    sys.addaudithook(policy.hook)
