"""A transform cannot change anything of the host, nor outlive its build to do it later.

Writes go through raw libc (ctypes) in a Python without the audit hook: to the
repository (the recipe after it was hashed, the transform, .git, another dataset),
the installed d4c package and site-packages, the home folder and temporary
folders of the host, each by its host path and through every /proc/<pid>/root and
/proc/<pid>/cwd. From the host: every file hashes as before, no new file exists,
and the manifest describes the bytes on disk. A daemon (double fork, setsid, deaf
to SIGTERM and SIGHUP) that holds descriptors of the artifacts is gone when the
build returns, and the artifacts still match the manifest seconds later.
"""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import d4c
import pytest

from .helpers import (
    OTHER,
    REPORTING_TRANSFORM,
    add_dataset,
    attack_source,
    find_processes,
    read_report,
    results,
    run_build,
    tree_hashes,
)

WRITE_ATTACK = '''
MARK = CONFIG["mark"].encode()
import d4c  # the package as this sandbox sees it
inside = os.path.dirname(d4c.__file__)
targets = [("/d4c/dataset/recipe.yaml", "append"), ("/d4c/dataset/transform.py", "append"),
           (os.path.join(inside, "__init__.py"), "append"), (os.path.join(inside, "_pwned.py"), "create")]
for path in CONFIG["modify"]:
    targets += [(p, "append") for p in via_other_processes(path)]
for path in CONFIG["create"]:
    targets += [(p, "create") for p in via_other_processes(path)]
for path, how in targets:
    flags = os.O_WRONLY | os.O_APPEND if how == "append" else os.O_WRONLY | os.O_CREAT | os.O_EXCL
    report(f"write {path}", raw_write(path, b"# " + MARK + b"\\n", flags))
for path in CONFIG["unlink"]:
    for p in via_other_processes(path):
        report(f"unlink {p}", "DELETED" if libc.unlink(os.fsencode(p)) == 0 else last_errno())
for path in CONFIG["rename"]:
    for p in via_other_processes(path):
        done = libc.rename(os.fsencode(p), os.fsencode(p + ".moved")) == 0
        report(f"rename {p}", "MOVED" if done else last_errno())
# Controls: raw writes do work where a transform may write.
report("control /tmp", raw_write("/tmp/probe", b"x"))
report("control out", raw_write("/d4c/out/.probe", b"x"))
libc.unlink(b"/d4c/out/.probe")
'''


def _site_packages() -> Path:
    return Path(next(p for p in sys.path if p.endswith("site-packages") and os.path.isdir(p)))


@pytest.fixture
def package_guard(token: str) -> Iterator[Path]:
    """The installed d4c package of the host; whatever an attack did there is taken back."""
    pkg = Path(d4c.__file__).parent
    before = {p: p.read_bytes() for p in pkg.glob("*.py")}
    yield pkg
    for path, data in before.items():
        if token.encode() in path.read_bytes():
            path.write_bytes(data)
    for path in [*pkg.glob(f"*{token}*"), *_site_packages().glob(f"*{token}*")]:
        path.unlink()


@pytest.mark.timeout(300)
def test_transform_cannot_write_outside_its_output_folder(
    runner: str, repo: Path, outside_tmp: Path, token: str, package_guard: Path,
    capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    home = outside_tmp / "home"
    home.mkdir()
    (home / ".bashrc").write_text("# the host user's shell start-up\n")
    monkeypatch.setenv("HOME", str(home))
    given = outside_tmp / "host-folder"
    given.mkdir()
    (repo / "out").mkdir()
    mark = f"d4csec-pwned-{token}"
    ds = f"ca_test_writes-{runner}"
    folder = repo / "datasets" / ds
    site = _site_packages()
    config = {
        "mark": mark,
        "modify": [str(folder / "recipe.yaml"), str(folder / "transform.py"), str(repo / ".git" / "config"),
                   str(repo / ".git" / "HEAD"), str(repo / "datasets" / OTHER / "transform.py"),
                   str(repo / "README.md"), str(home / ".bashrc"), str(package_guard / "__init__.py")],
        "create": [str(repo / f"{mark}.txt"), str(repo / "out" / mark), str(folder / f"{mark}.py"),
                   str(package_guard / f"_{mark}.py".replace("-", "_")), str(site / f"{mark}.pth"),
                   str(given / mark), str(home / mark), f"/tmp/{mark}", f"/var/tmp/{mark}"],
        "unlink": [str(repo / "datasets" / OTHER / "recipe.yaml")],
        "rename": [str(repo / "pyproject.toml")],
    }
    add_dataset(repo, ds.removeprefix("ca_test_"), REPORTING_TRANSFORM,
                files={"attack.py": attack_source(config, WRITE_ATTACK)})
    git = ["git", "-c", "user.name=d4c-test", "-c", "user.email=test@example.org"]
    subprocess.run([*git, "add", "--", f"datasets/{ds}"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the attack, committed"], cwd=repo, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True,
                          text=True).stdout.strip()
    repo_before = tree_hashes(repo, skip=("out",))
    home_before = tree_hashes(home)
    recipe_sha = hashlib.sha256((folder / "recipe.yaml").read_bytes()).hexdigest()

    built = run_build(repo, ds, runner, capfd)
    assert built.code == 0, built.err[-4000:]
    report = read_report(built.out)
    assert results(report, "control /tmp")["control /tmp"].startswith("WROTE"), report
    assert results(report, "control out")["control out"].startswith("WROTE"), report
    tried = {a: r for a, r in report if a.split(" ")[0] in ("write", "unlink", "rename")}
    assert len(tried) > 3 * (len(config["modify"]) + len(config["create"])), "not every target was tried"
    # /tmp is the sandbox's own tmpfs: writing there works inside and must not reach the host's.
    done = {a: r for a, r in tried.items() if not r.startswith("refused") and a != f"write /tmp/{mark}"}
    assert not done, f"the transform changed files: {done}"

    # From the host: nothing changed, nothing new, the manifest describes what is on disk.
    assert tree_hashes(repo, skip=("out",)) == repo_before
    assert tree_hashes(home) == home_before
    assert not list(given.iterdir())
    for path in config["create"]:
        assert not os.path.lexists(path), f"the transform created {path}"
    assert not [p for p in package_guard.rglob("*") if p.is_file() and mark.encode() in p.read_bytes()]
    manifest = json.loads((built.out / "manifest.json").read_text())
    assert manifest["dataset"]["recipe_sha256"] == recipe_sha
    assert manifest["dataset"]["recipe_sha256"] == hashlib.sha256((folder / "recipe.yaml").read_bytes()).hexdigest()
    on_disk = {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
               for p in folder.rglob("*") if p.is_file() and "sources" not in p.relative_to(folder).parts}
    assert manifest["dataset"]["files"] == on_disk
    assert manifest["code"]["commit"] == head and manifest["code"]["dirty"] is False, manifest["code"]
    status = subprocess.run(["git", "status", "--porcelain", "--", "datasets", "scripts", "pyproject.toml"],
                            cwd=repo, check=True, capture_output=True, text=True).stdout
    assert status == "", status
    assert not [p for p in (built.out.parent).iterdir() if mark in p.name]


DAEMON = r'''
import json, os, signal, sys, time
marker, cfg = sys.argv[1], json.loads(sys.argv[2])
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT, signal.SIGPIPE):
    signal.signal(s, signal.SIG_IGN)
if os.fork():
    os._exit(0)
os.setsid()
if os.fork():
    os._exit(0)
with open("/tmp/daemon-ready", "w") as fh:
    fh.write(f"daemon ready: pid {os.getpid()} session {os.getsid(0)}")
deadline = time.time() + 40
while time.time() < deadline and not all(os.path.exists("/d4c/out/" + n) for n in cfg["outputs"]):
    time.sleep(0.05)
# Hold the artifacts and the output folder open: ownership changes after the build do not close them.
fds = [os.open("/d4c/out/" + n, os.O_WRONLY) for n in cfg["outputs"]]
out = os.open("/d4c/out", os.O_RDONLY | os.O_DIRECTORY)
with open("/tmp/daemon-armed", "w") as fh:
    fh.write(f"daemon armed: {len(fds)} artifacts held")
time.sleep(3)  # the host accepts, hashes, writes the manifest and publishes meanwhile
while time.time() < deadline:
    for fd in fds:
        try:
            os.pwrite(fd, marker.encode(), 0)
        except OSError:
            pass
    for path in [*cfg["host_paths"], "/d4c/out/" + marker]:
        try:
            with open(path, "w") as fh:
                fh.write(marker)
        except OSError:
            pass
    try:
        os.close(os.open(marker, os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=out))
    except OSError:
        pass
    time.sleep(0.3)
'''

DAEMON_TRANSFORM = '''\
import json
import os
import subprocess
import sys
import time

import pandas as pd

DAEMON = {daemon!r}
MARKER = {marker!r}
CFG = {cfg!r}


def wait_for(path):
    for _ in range(200):
        if os.path.exists(path):
            return open(path).read()
        time.sleep(0.05)
    raise RuntimeError(f"the daemon never wrote {{path}}")


def build(ctx):
    subprocess.Popen([sys.executable, "-I", "-c", DAEMON, MARKER, json.dumps(CFG)], start_new_session=True,
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    sys.stderr.write(wait_for("/tmp/daemon-ready") + "\\n")
    df = pd.DataFrame({{"pruid": [1, 2], "value": ["a", "b"]}})
    ctx.write_parquet("table", df)
    ctx.write_csv("table-csv", df)
    sys.stderr.write(wait_for("/tmp/daemon-armed") + "\\n")
'''


@pytest.mark.timeout(300)
def test_daemon_does_not_outlive_the_build(runner: str, repo: Path, tmp_path: Path, marker: str,
                                           capfd: pytest.CaptureFixture[str]) -> None:
    ds = f"ca_test_daemon-{runner}"
    out = repo / "out" / ds
    given = tmp_path / "host-folder"
    given.mkdir()
    names = [f"{ds}_v1.0.0_table.parquet", f"{ds}_v1.0.0_table-csv.csv"]
    cfg = {"outputs": names, "host_paths": [str(out / marker), str(given / marker), str(repo / marker)]}
    add_dataset(repo, ds.removeprefix("ca_test_"), DAEMON_TRANSFORM.format(daemon=DAEMON, marker=marker, cfg=cfg))

    built = run_build(repo, ds, runner, capfd, out=out)
    assert built.code == 0, built.err[-4000:]
    assert "daemon ready: pid" in built.err and "daemon armed: 2 artifacts held" in built.err, built.err[-3000:]
    left = find_processes(marker)
    assert not left, f"processes of the build outlived it: {left}"

    manifest = json.loads((out / "manifest.json").read_text())
    expected = {o["file"]: o["sha256"] for o in manifest["outputs"]}
    assert sorted(expected) == sorted(names)
    time.sleep(5)  # the daemon would strike 3 s after arming (before the build returned), every 0.3 s
    assert not find_processes(marker)
    assert {n: hashlib.sha256((out / n).read_bytes()).hexdigest() for n in names} == expected
    assert sorted(p.name for p in out.iterdir()) == sorted([*names, "manifest.json", "provenance.json"])
    assert not list(given.iterdir())
    assert not (repo / marker).exists()
