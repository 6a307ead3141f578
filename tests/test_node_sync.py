"""`d4c node sync` against real parts: a local HTTP mirror (Range, ETags) serving real bytes,
and a catalog built by the catalog code from tests/catalog_factory.py records pointing at
it, with the mirror health written by `d4c.catalog.health.annotate_file`."""
from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from catalog_factory import make_record
from d4c.catalog import build_catalog
from d4c.catalog.health import annotate_file
from d4c.cli import main
from d4c.node import config, policy, sync
from d4c.node.store import Store
from test_mirrors_support import HttpMirror, artifact_bytes

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@dataclass
class Risk:
    copies_ok: int
    at_risk: bool
    last_verified: str | None = "2026-12-01T00:00:00Z"


class Net:
    """Versions of datasets on one HTTP mirror, under two names (`www` and `backup`)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.mirror = HttpMirror(tmp / "www")
        self.records: list[dict[str, Any]] = []
        self.catalog = tmp / "catalog.parquet"

    def add(self, dataset: str, size: int) -> dict[str, Any]:
        record = make_record(dataset, "1.0.0", targets=("www", "backup"))
        for f in record["files"]:
            raw = artifact_bytes(f["file"], size if f["role"] == "data" else 300)
            f.update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
            for name in ("www", "backup"):
                key = f"{name}/{dataset}/{f['file']}"
                (self.tmp / "www" / key).parent.mkdir(parents=True, exist_ok=True)
                (self.tmp / "www" / key).write_bytes(raw)
                f["urls"][name] = f"{self.mirror.url}/{key}"
        record["mirrors"] = [{"name": "www", "retain": "all"}, {"name": "backup", "retain": "all"}]
        self.records.append(record)
        return record

    def build(self, health: dict[str, Risk]) -> None:
        build_catalog(self.records, self.catalog, metadata=lambda r: r["metadata"])
        annotate_file(self.catalog, {f"{d}_v1-0-0": r for d, r in health.items()})

    def data(self, record: dict[str, Any]) -> dict[str, Any]:
        return next(f for f in record["files"] if f["role"] == "data")


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Net]:
    n = Net(tmp_path)
    yield n
    n.mirror.close()


def node(net: Net, name: str = "node", budget: int = 100_000, reserve: int = 0,
         bandwidth: int = 10**9, checkins: Path | None = None) -> config.NodeConfig:
    return config.init(net.tmp / f"{name}.yaml", catalog=str(net.catalog), data=net.tmp / name,
                       budget=str(budget), reserve=str(reserve), bandwidth=str(bandwidth),
                       allow=[], deny=[], checkins=str(checkins) if checkins else None)


def held_files(cfg: config.NodeConfig) -> set[str]:
    return {h.relpath.split("/")[2] for h in Store(cfg.data).load().held.values()}


def disk(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "state.json" not in p.name
               and not p.name.endswith(".json"))


def test_fills_to_budget_most_urgent_first_and_never_past_budget_plus_reserve(net: Net) -> None:
    lost, risky, calm, full = (net.add(f"ca_t_{n}", 30_000) for n in ("lost", "risky", "calm", "full"))
    net.build({"ca_t_lost": Risk(0, True), "ca_t_risky": Risk(2, True), "ca_t_calm": Risk(2, False),
               "ca_t_full": Risk(4, False)})
    cfg = node(net, budget=65_000, reserve=1_000)
    peak = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            try:
                peak[0] = max(peak[0], disk(cfg.data))
            except FileNotFoundError:
                pass  # a partial renamed while we looked

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    report = sync.run(cfg, now=NOW)
    stop.set()
    t.join()
    assert not report.failed
    held = held_files(cfg)
    # the lost version's and the at-risk version's files (data 30 kB + 3 x 300 B each) fit
    # 65 kB, the calm one's data does not, but its small files do; nothing of the full one
    assert {f["file"] for f in lost["files"] + risky["files"]} <= held
    assert net.data(calm)["file"] not in held and not {f["file"] for f in full["files"]} & held
    assert Store(cfg.data).held_bytes(Store(cfg.data).load()) <= cfg.budget
    assert peak[0] <= cfg.budget + cfg.reserve
    # the check-in lists exactly what is held, and the plan after it wants nothing more
    assert report.checkin == [str(cfg.data / ".d4c-node" / "checkin.json")]
    assert sync.run(cfg, dry=True, now=NOW).plan.fetch == []


def test_resumes_an_interrupted_download_with_range(net: Net) -> None:
    record = net.add("ca_t_big", 400_000)
    net.build({"ca_t_big": Risk(0, True)})
    data = net.data(record)
    cfg = node(net, budget=10**6, bandwidth=150_000)
    first = sync.run(cfg, now=NOW)
    part = Store(cfg.data).partial(data["sha256"])
    assert part.is_file() and 0 < part.stat().st_size < data["size"]
    assert any("bandwidth" in line for line in first.paused) and not first.failed
    assert first.downloaded <= cfg.bandwidth_per_day + 65_536  # stops within one chunk
    kept = part.stat().st_size
    net.mirror.requests.clear()
    second = sync.run(cfg, now=NOW + timedelta(days=1))  # a new day's allowance
    third = sync.run(cfg, now=NOW + timedelta(days=2))
    assert data["file"] in held_files(cfg)
    total = second.downloaded + third.downloaded
    assert total < data["size"] - kept + 2000  # the kept bytes were not fetched again


def test_refuses_a_corrupt_copy_and_takes_the_good_alternate(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    record = net.add("ca_t_rot", 20_000)
    net.build({"ca_t_rot": Risk(0, True)})
    data = net.data(record)
    www = f"/www/ca_t_rot/{data['file']}"
    good = (net.tmp / "www" / www.lstrip("/")).read_bytes()
    net.mirror.lie[www] = bytes([good[0] ^ 1]) + good[1:]  # same length, one bit off
    cfg = node(net)
    report = sync.run(cfg, now=NOW)
    assert data["file"] in held_files(cfg) and not report.failed
    assert (cfg.data / "ca_t_rot" / "ca_t_rot_v1-0-0" / data["file"]).read_bytes() == good
    # every copy bad: refused, nothing kept, one clear line, exit 1
    backup = f"/backup/ca_t_rot/{data['file']}"
    cfg2 = node(net, name="other")
    net.mirror.lie[backup] = good[:-1]  # a short body: refused by its Content-Length
    assert main(["node", "--config", str(cfg2.path), "sync", "--once"]) == 0  # other files fine
    err = capsys.readouterr().err
    assert f"error: ca_t_rot/ca_t_rot_v1-0-0/{data['file']}:" in err and "Content-Length" in err
    assert data["file"] not in held_files(cfg2)
    assert not Store(cfg2.data).partial(data["sha256"]).exists()


def _keys_ranked(sha: str, first: bool, own: str, n: int = 4) -> list[str]:
    """`n` node keys whose ids all score after `own` for sha (first) or all before it."""
    from d4c.node import identity

    out: list[str] = []
    k = 0
    while len(out) < n:
        key = hashlib.sha256(f"test-key-{k}".encode()).hexdigest()
        k += 1
        node_id = identity.node_id(identity.public_key(key))
        if (policy.score(node_id, sha) > policy.score(own, sha)) == first:
            out.append(key)
    return out


def _bytes(net: Net, record: dict[str, Any]) -> dict[str, bytes]:
    data = net.data(record)
    return {data["sha256"]: (net.tmp / "www" / "www" / record["id"] / data["file"]).read_bytes()}


def _write_checkins(folder: Path, keys: list[str], blobs: dict[str, bytes], lie: bool = False) -> None:
    """Other nodes' signed check-ins claiming these files, answering the challenge from their
    bytes (or, when they `lie`, from bytes they do not have)."""
    from d4c.node import checkins
    from d4c.node.log import FolderLog
    from d4c.node.store import Held, State

    def read(sha: str, start: int, length: int) -> bytes:
        return bytes(length) if lie else blobs[sha][start:start + length]

    log = FolderLog(folder)
    for n, key in enumerate(keys):
        state = State({s: Held(s, len(b), f"a/b/{s[:8]}", "x", "y", "2026-12-01T00:00:00Z")
                       for s, b in blobs.items()})
        at = NOW + timedelta(minutes=30 + n)
        prev = checkins.newest_name(checkins.read(log, at, []))
        checkins.append(log, checkins.document(key, at.strftime("%Y-%m-%dT%H:%M:%SZ"), 1, state, prev, read))


@pytest.mark.parametrize("ranked_first", [False, True])
def test_evicts_above_the_maximum_only_when_ranked_last_among_holders(net: Net, ranked_first: bool) -> None:
    record = net.add("ca_t_popular", 5_000)
    net.build({"ca_t_popular": Risk(2, False)})
    shared = net.tmp / "checkins"
    cfg = node(net, checkins=shared)
    sync.run(cfg, now=NOW)
    data = net.data(record)
    assert data["file"] in held_files(cfg)
    # four other nodes check in with it: 2 mirrors + 4 nodes = 6 elsewhere, above max 5
    _write_checkins(shared, _keys_ranked(data["sha256"], ranked_first, cfg.node_id), _bytes(net, record))
    report = sync.run(cfg, now=NOW + timedelta(hours=1))
    evicted = any(data["file"] in line and "above the maximum" in line for line in report.evicted)
    assert evicted is (not ranked_first)  # the holders ranked first keep the copies
    assert (data["file"] in held_files(cfg)) is ranked_first


def test_nodes_that_claim_a_file_they_do_not_hold_fail_the_challenge_and_are_not_counted(net: Net) -> None:
    record = net.add("ca_t_claimed", 5_000)
    net.build({"ca_t_claimed": Risk(2, False)})
    shared = net.tmp / "checkins"
    cfg = node(net, checkins=shared)
    sync.run(cfg, now=NOW)
    data = net.data(record)
    # four liars ranked before this node claim it: counted, they would make it evict
    liars = _keys_ranked(data["sha256"], False, cfg.node_id)
    _write_checkins(shared, liars, _bytes(net, record), lie=True)
    report = sync.run(cfg, now=NOW + timedelta(hours=1))
    assert data["file"] in held_files(cfg) and not report.evicted
    assert sum("failed its challenge" in w for w in report.warnings) == 4
    # this node's own check-in answers right: another holder can check it
    from d4c.node import challenge, checkins
    from d4c.node.log import FolderLog

    (mine,) = [c for c in checkins.read(FolderLog(shared), NOW + timedelta(hours=1), [])
               if c.node == cfg.node_id]
    blobs = _bytes(net, record)
    assert len(mine.answers) == 4  # data, torrent, manifest, bundle

    def mirror(sha: str, start: int, n: int) -> bytes | None:
        return blobs[sha][start:start + n] if sha in blobs else None

    assert not challenge.wrong(mine.node, mine.date, mine.prev, mine.answers, mine.sizes, mirror)
    assert challenge.wrong("f" * 32, mine.date, mine.prev, mine.answers, mine.sizes, mirror)


def test_evicts_for_an_urgent_item_but_never_below_the_minimum_elsewhere(net: Net) -> None:
    spare = net.add("ca_t_spare", 20_000)
    thin = net.add("ca_t_thin", 20_000)
    net.build({"ca_t_spare": Risk(2, False), "ca_t_thin": Risk(2, False)})
    shared = net.tmp / "checkins"
    cfg = node(net, budget=45_000, reserve=25_000, checkins=shared)
    sync.run(cfg, now=NOW)
    assert {net.data(spare)["file"], net.data(thin)["file"]} <= held_files(cfg)
    # one other node holds the spare (3 copies elsewhere, and that node ranks first); the
    # thin one has only its 2 mirrors elsewhere. Then a version loses every mirror.
    _write_checkins(shared, _keys_ranked(net.data(spare)["sha256"], False, cfg.node_id, 1),
                    _bytes(net, spare))
    urgent = net.add("ca_t_urgent", 20_000)
    net.build({"ca_t_spare": Risk(2, False), "ca_t_thin": Risk(2, False), "ca_t_urgent": Risk(0, True)})
    report = sync.run(cfg, now=NOW + timedelta(hours=1))
    held = held_files(cfg)
    assert net.data(urgent)["file"] in held and net.data(thin)["file"] in held
    assert net.data(spare)["file"] not in held
    assert any(net.data(spare)["file"] in line and "room for" in line for line in report.evicted)


def test_hostile_catalog_paths_and_sizes_never_leave_the_data_folder(net: Net) -> None:
    record = net.add("ca_t_evil", 1_000)
    net.data(record)["file"] = "..%2F..%2Fescape.bin"
    bad = next(f for f in record["files"] if f["role"] == "manifest")
    bad["file"] = "../../escape.json"
    huge = next(f for f in record["files"] if f["role"] == "bundle")
    huge["size"] = 10**15  # claims a petabyte
    net.build({"ca_t_evil": Risk(0, True)})
    cfg = node(net)
    report = sync.run(cfg, now=NOW)
    assert any("unsafe" in w for w in report.warnings)
    assert not list(net.tmp.glob("escape*")) and not list(cfg.data.parent.glob("escape*"))
    for h in Store(cfg.data).load().held.values():
        assert (cfg.data / h.relpath).resolve().is_relative_to(cfg.data.resolve())
    assert huge["sha256"] not in Store(cfg.data).load().held


def test_cli_init_plan_status(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    net.add("ca_t_cli", 2_000)
    net.build({"ca_t_cli": Risk(0, True)})
    conf = net.tmp / "cli.yaml"
    assert main(["node", "--config", str(conf), "init", "--catalog", str(net.catalog), "--data",
                 str(net.tmp / "cli"), "--budget", "1M", "--bandwidth", "10G"]) == 0
    assert conf.stat().st_mode & 0o077 == 0  # the key stays private
    assert main(["node", "--config", str(conf), "init", "--catalog", "x", "--data", "y",
                 "--budget", "1M"]) == 1  # never replaced by accident
    assert main(["node", "--config", str(conf), "plan", "--max", "100k"]) == 0
    out = capsys.readouterr().out
    assert "fetch" in out and "no mirror left" in out
    assert main(["node", "--config", str(conf), "status"]) == 0
    assert "holds 0 files" in capsys.readouterr().out
    import fcntl

    lock = net.tmp / "cli" / ".d4c-node" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a") as fh:  # a sync from cron still running
        fcntl.flock(fh, fcntl.LOCK_EX)
        assert main(["node", "--config", str(conf), "sync"]) == 1
        assert "another sync is running" in capsys.readouterr().err
    assert main(["node", "--config", str(conf), "sync"]) == 0
    assert main(["node", "--config", str(conf), "status"]) == 0
    assert "holds 4 files" in capsys.readouterr().out
    assert main(["node", "--config", str(net.tmp / "nope.yaml"), "plan"]) == 1
    assert "run `d4c node init` first" in capsys.readouterr().err


def test_bittorrent_through_aria2c_with_the_web_seed_when_no_http_copy_answers(
        net: Net, require_tool: Any) -> None:
    import torf

    require_tool("aria2c")
    record = net.add("ca_t_bt", 50_000)
    data = net.data(record)
    seed = data["urls"]["www"]
    src = net.tmp / "seed" / data["file"]
    src.parent.mkdir()
    src.write_bytes((net.tmp / "www" / "www" / "ca_t_bt" / data["file"]).read_bytes())
    t = torf.Torrent(path=src, webseeds=[seed], private=False, created_by=None,
                     creation_date=None, piece_size=16384)
    t.generate()
    raw = t.dump()
    tor = next(f for f in record["files"] if f["role"] == "torrent")
    tor.update(size=len(raw), sha256=hashlib.sha256(raw).hexdigest())
    for name in ("www", "backup"):
        (net.tmp / "www" / name / "ca_t_bt" / tor["file"]).write_bytes(raw)
        data["urls"][name] = f"{net.mirror.url}/gone/{name}/{data['file']}"  # no HTTP copy answers
    net.build({"ca_t_bt": Risk(0, True)})
    cfg = node(net)
    report = sync.run(cfg, now=NOW)
    assert data["file"] in held_files(cfg), report.failed
    assert (cfg.data / "ca_t_bt" / "ca_t_bt_v1-0-0" / data["file"]).read_bytes() == src.read_bytes()
    assert not (cfg.data / ".d4c-node" / "bt").exists()
    assert ("GET", f"/www/ca_t_bt/{data['file']}") in net.mirror.requests  # the web seed


def _hostile_log(folder: Path) -> int:
    """A log with one entry of each hostile kind; how many there are."""
    import json

    from d4c import canonical
    from d4c.node import checkins, identity
    from d4c.node.store import State

    day = folder / "2026-12-01"
    day.mkdir(parents=True)
    key, other = (hashlib.sha256(n.encode()).hexdigest() for n in ("a", "b"))
    good = checkins.document(key, "2026-12-01T06:00:00Z", 1, State(), "", lambda *_: None)

    def put(data: bytes) -> None:
        (day / f"{hashlib.sha256(data).hexdigest()}.json").write_bytes(data)

    doc = json.loads(good)
    doc["budget"] = 10**15  # changed after signing
    put(canonical.encode(doc))
    doc = json.loads(good)
    doc["key"] = identity.public_key(other)  # another node's key on this node's signature
    doc["node"] = identity.node_id(doc["key"])
    put(canonical.encode(doc))
    doc = json.loads(good)
    doc["node"] = "0" * 32  # a node id that is not its key's
    put(canonical.encode(doc))
    put(b"{not json")
    (day / f"{'e' * 64}.json").write_bytes(good)  # bytes that do not hash to the name
    (day / "junk.json").write_text("{}")
    with (day / f"{'f' * 64}.json").open("wb") as fh:  # 17 MiB, refused from its size
        fh.truncate(17 << 20)
    return 7


def test_hostile_checkins_are_refused_with_one_line_each(tmp_path: Path) -> None:
    from d4c.node import checkins
    from d4c.node.log import FolderLog

    n = _hostile_log(tmp_path / "log")
    warn: list[str] = []
    assert checkins.read(FolderLog(tmp_path / "log"), NOW, warn) == []
    assert len(warn) == n and all("\n" not in w for w in warn)
    for why in ("bad signature", "its node id is not its key's", "not a check-in",
                "do not hash to its name", "not a <date>/<sha256>.json name", "refused unread"):
        assert any(why in w for w in warn), why


def test_a_folder_log_lists_only_regular_files(tmp_path: Path) -> None:
    """A dangling symlink, a folder or a FIFO under an entry's name is no entry (no traceback, no hang)."""
    import os

    from d4c.node import checkins
    from d4c.node.log import FolderLog

    day = tmp_path / "log" / NOW.date().isoformat()
    day.mkdir(parents=True)
    (day / f"{'a' * 64}.json").symlink_to(tmp_path / "absent")
    (day / f"{'b' * 64}.json").mkdir()
    os.mkfifo(day / f"{'c' * 64}.json")
    assert FolderLog(tmp_path / "log").names("2000-01-01") == []
    assert checkins.read(FolderLog(tmp_path / "log"), NOW, []) == []


def test_a_broken_catalog_or_hostile_checkins_give_one_line_each(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    net.add("ca_t_ok", 1_000)
    net.build({"ca_t_ok": Risk(0, True)})
    shared = net.tmp / "checkins"
    n = _hostile_log(shared)
    cfg = node(net, checkins=shared)
    assert main(["node", "--config", str(cfg.path), "sync"]) == 0
    err = capsys.readouterr().err
    assert err.count("warning: check-in") == n and "Traceback" not in err
    net.catalog.write_bytes(b"PAR1 not really")
    assert main(["node", "--config", str(cfg.path), "plan"]) == 1
    err = capsys.readouterr().err
    assert f"error: {net.catalog} is not a readable d4c catalog" in err and "Traceback" not in err
