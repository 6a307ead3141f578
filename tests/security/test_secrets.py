"""A transform cannot read a secret of the host: credentials, the repository, other datasets.

The canary fixture plants one secret in every credential variable of the d4c
process, in ~/.aws/credentials and ~/.netrc, in the repository's .git/config and
in another dataset's folder. The attack reads every /proc/*/environ, each host
file directly and through every /proc/<pid>/root and /proc/<pid>/cwd, lists the
host folders, and walks the whole file system it can see keeping anything that
looks like a secret; it writes all of it into its outputs and its log. From the
host: the canary is in no output, no manifest, no log line, no file the build made.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from .conftest import Canary
from .helpers import (
    OTHER,
    REPORTING_TRANSFORM,
    add_dataset,
    assert_absent,
    attack_source,
    read_report,
    results,
    run_build,
    tree_bytes,
    tree_hashes,
)

READ_ATTACK = '''
SEARCH = [b"d4c-" + b"canary", b"aws_secret_access_key", b"x-access-token"]


def show(data):
    return data.replace(b"\\0", b"\\n").decode("utf-8", "replace")


# 1. The environment and command line of every process this sandbox can see, and its own.
seen = pids()
report("pids visible", seen)
for pid in [*seen, "self", CONFIG["host_pid"]]:
    for name in ("environ", "cmdline"):
        data, how = raw_read(f"/proc/{pid}/{name}")
        report(f"read /proc/{pid}/{name}", how if data is None else how + "\\n" + show(data))
report("own os.environ", json.dumps(dict(os.environ), sort_keys=True))

# 2. Host files by their host path, directly and through every process's root and cwd.
for path in CONFIG["host_files"]:
    for variant in via_other_processes(path):
        data, how = raw_read(variant)
        report(f"read {variant}", how if data is None else how + "\\n" + show(data))
for folder in CONFIG["host_dirs"]:
    for variant in via_other_processes(folder):
        try:
            report(f"list {variant}", sorted(os.listdir(variant)))
        except OSError as exc:
            report(f"list {variant}", "refused " + errno.errorcode.get(exc.errno, str(exc.errno)))

# 3. Everything visible: walk the file system, read each file, keep whatever looks secret.
skip = ("/proc", "/sys", "/dev", "/usr")
walked = 0
for dirpath, dirnames, filenames in os.walk("/"):
    dirnames[:] = [d for d in dirnames if not os.path.join(dirpath, d).startswith(skip)
                   and "site-packages" not in d and not d.startswith("python3")]
    for name in filenames:
        path = os.path.join(dirpath, name)
        try:
            if not os.path.isfile(path) or os.path.getsize(path) > (4 << 20):
                continue
        except OSError:
            continue
        data, how = raw_read(path, 4 << 20)
        if data is None:
            continue
        walked += 1
        if any(s in data.lower() for s in SEARCH):
            report(f"found {path}", show(data))
report("files read in the walk", walked)
'''


def read_attack(repo: Path, canary: Canary, name: str) -> str:
    config = {
        "host_pid": os.getpid(),
        "host_files": [str(canary.aws_credentials), str(canary.home / ".netrc"), str(canary.git_config),
                       str(canary.other_dataset_file), f"/proc/{os.getpid()}/environ",
                       str(Path.home() / ".aws" / "credentials")],
        "host_dirs": [str(canary.home), str(canary.home.parent), str(repo), str(repo / ".git"),
                      str(repo / "datasets" / OTHER)],
    }
    return add_dataset(repo, name, REPORTING_TRANSFORM, files={
        "attack.py": attack_source(config, READ_ATTACK),
        "planted.txt": f"not a secret: {canary.planted}\n",
    })


@pytest.mark.timeout(300)
def test_transform_cannot_read_host_secrets(runner: str, repo: Path, canary: Canary,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    ds = read_attack(repo, canary, f"reads-{runner}")
    built = run_build(repo, ds, runner, capfd)
    assert built.code == 0, built.err[-4000:]
    report = read_report(built.out)

    # The attack really ran, and what it read reaches the host: these are the controls.
    own = results(report, "read /proc/self/environ")
    assert "SOURCE_DATE_EPOCH=" in own["read /proc/self/environ"], own
    found = results(report, "found ")
    assert any(canary.planted in r for r in found.values()), f"the walk did not report the planted file: {found}"
    walked = int(dict(report)["files read in the walk"])
    assert walked > 5, walked
    assert dict(report)["attack.py exit status"] == "0", dict(report)

    # Each host file and folder: refused by every path, the direct one and via every process.
    tried = results(report, "read ")
    for host_file in (canary.aws_credentials, canary.git_config, canary.other_dataset_file):
        attempts = {a: r for a, r in tried.items() if a.endswith(str(host_file))}
        assert len(attempts) >= 3, f"not every path to {host_file} was tried: {attempts}"
        opened = {a: r for a, r in attempts.items() if not r.startswith("refused")}
        assert not opened, f"the transform read a host file: {opened}"
    listed = {a: r for a, r in results(report, "list ").items() if not r.startswith("refused")}
    assert not listed, f"the transform listed a host folder: {listed}"

    # From the host: the canary is nowhere the build wrote, nor in anything it printed.
    blobs = tree_bytes(built.out.parent)
    assert any(p.endswith("manifest.json") for p in blobs)
    blobs["captured stdout+stderr"] = built.log.encode()
    assert canary.planted.encode() in blobs["captured stdout+stderr"]  # the log is where the attack writes too
    assert_absent(canary.value, blobs)  # credentials, ~/.aws, ~/.netrc, .git/config, other datasets
    assert_absent(canary.proxy, blobs)  # proxy URLs with credentials


@pytest.mark.timeout(300)
def test_canary_reaches_nothing_the_build_made(runner: str, repo: Path, canary: Canary,
                                               capfd: pytest.CaptureFixture[str]) -> None:
    """`d4c build` with a canary in every credential: grep everything it produced."""
    ds = read_attack(repo, canary, f"grep-{runner}")
    tmp = Path(tempfile.gettempdir())
    repo_before = tree_hashes(repo)
    tmp_before = set(os.listdir(tmp))
    built = run_build(repo, ds, runner, capfd)
    assert built.code == 0, built.err[-4000:]

    blobs: dict[str, bytes] = {"captured stdout+stderr": built.log.encode()}
    # Every file of the repository the build added or changed (the out folder among them).
    for rel, digest in tree_hashes(repo).items():
        if repo_before.get(rel) != digest:
            path = repo / rel
            blobs[rel] = os.fsencode(os.readlink(path)) if path.is_symlink() else path.read_bytes()
    assert any(k.endswith("manifest.json") for k in blobs), sorted(blobs)
    # Whatever appeared in the temporary folder meanwhile (work folders, crash logs).
    for name in set(os.listdir(tmp)) - tmp_before:
        path = tmp / name
        if path.is_dir() and not path.is_symlink():
            blobs.update(tree_bytes(path))
        elif path.is_file() and not path.is_symlink() and path.stat().st_size < (64 << 20):
            blobs[str(path)] = path.read_bytes()
    assert canary.planted.encode() in b"".join(blobs.values())  # the attack's report is in there
    assert_absent(canary.value, blobs)  # credentials, ~/.aws, ~/.netrc, .git/config, other datasets
    assert_absent(canary.proxy, blobs)  # proxy URLs with credentials
