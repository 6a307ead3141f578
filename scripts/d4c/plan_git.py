"""Read-only access to one repository's objects, for `d4c plan`: blobs by id from the one
`git ls-tree -r` of a commit, read through batched `git cat-file` (never the work tree).
"""
from __future__ import annotations

import subprocess
from pathlib import Path

from d4c.errors import D4CError

EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"  # git's well-known empty tree


class Git:
    """Read-only access to one repository's objects."""

    def __init__(self, root: Path):
        self.root = root
        self._batch: subprocess.Popen[bytes] | None = None
        self._blobs: dict[str, bytes] = {}
        # commit -> path -> blob id, from the one `ls-tree` per commit: `git cat-file` finds a
        # blob by id at once, while `<commit>:<path>` walks the tree for every spec (quadratic
        # over datasets/: 65 s for 30k blobs against 0.2 s by id).
        self._oids: dict[str, dict[str, str]] = {}

    def close(self) -> None:
        if self._batch is not None:
            self._batch.communicate()
            self._batch = None

    def run(self, *args: str) -> bytes:
        proc = subprocess.run(["git", *args], cwd=self.root, capture_output=True, check=False)
        if proc.returncode != 0:
            err = proc.stderr.decode(errors="replace").strip().splitlines()
            raise D4CError(f"git {' '.join(args[:2])} failed: {err[-1] if err else proc.returncode}")
        return proc.stdout

    def commit(self, ref: str) -> str:
        proc = subprocess.run(
            ["git", "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            cwd=self.root, capture_output=True, text=True, check=False,
        )
        if proc.returncode != 0:
            raise D4CError(
                f"unknown git ref {ref!r} in {self.root}",
                hint="fetch enough history (actions/checkout with fetch-depth: 0) or check the ref",
            )
        return proc.stdout.strip()

    def files(self, commit: str) -> set[str]:
        if commit not in self._oids:
            oids: dict[str, str] = {}
            for entry in self.run("ls-tree", "-r", "-z", commit).decode().split("\0"):
                meta, _, path = entry.partition("\t")
                fields = meta.split()
                if len(fields) == 3 and fields[1] == "blob":
                    oids[path] = fields[2]
            self._oids[commit] = oids
        return set(self._oids[commit])

    def _spec(self, commit: str, path: str) -> str:
        """What to ask `git cat-file` for: the blob id when the tree was listed."""
        return self._oids.get(commit, {}).get(path) or f"{commit}:{path}"

    def read(self, commit: str, path: str) -> bytes:
        """One blob, through a single `git cat-file --batch` (one process, not one per file)."""
        spec = f"{commit}:{path}"
        if spec in self._blobs:
            return self._blobs[spec]
        if "\n" in spec:  # the batch protocol is line-based
            return self.run("cat-file", "blob", spec)
        ask = self._spec(commit, path)
        if self._batch is None:
            self._batch = subprocess.Popen(["git", "cat-file", "--batch"], cwd=self.root,
                                           stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self._batch.stdin is not None and self._batch.stdout is not None
        self._batch.stdin.write(ask.encode() + b"\n")
        self._batch.stdin.flush()
        header = self._batch.stdout.readline().split()
        if len(header) != 3 or header[1] != b"blob":
            raise D4CError(f"git cannot read {spec} ({b' '.join(header[1:]).decode() or 'no answer'})")
        data = self._batch.stdout.read(int(header[2]))
        self._batch.stdout.read(1)  # the newline after each object
        self._blobs[spec] = data
        return data

    def cached(self, commit: str, path: str) -> bytes | None:
        """A blob `preload` or `read` already holds (None: not read yet)."""
        return self._blobs.get(f"{commit}:{path}")

    def preload(self, commit: str, paths: list[str]) -> None:
        """Read many blobs with one `git cat-file --batch` run (recipes, transforms, helpers)."""
        specs = [f"{commit}:{p}" for p in paths if "\n" not in p]
        if not specs:
            return
        asks = [self._spec(commit, p) for p in paths if "\n" not in p]
        out = subprocess.run(["git", "cat-file", "--batch"], cwd=self.root, check=False,
                             input="".join(f"{a}\n" for a in asks).encode(), capture_output=True).stdout
        pos = 0
        for spec in specs:
            end = out.index(b"\n", pos)
            header = out[pos:end].split()
            pos = end + 1
            if len(header) == 3 and header[1] == b"blob":
                size = int(header[2])
                self._blobs[spec] = out[pos:pos + size]
                pos += size + 1

    def changes(self, base: str | None, head: str) -> list[tuple[str, str]]:
        """(status letter, path) for base...head (None: from nothing); renames are delete + add."""
        span = [f"{base}...{head}"] if base else [EMPTY_TREE, head]
        out = self.run("diff", "--name-status", "-z", "--no-renames", *span)
        parts = out.decode().split("\0")
        return [(parts[i][:1], parts[i + 1]) for i in range(0, len(parts) - 1, 2)]
