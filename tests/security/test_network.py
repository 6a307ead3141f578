"""A transform reaches no listener of the host: TCP, UDP, DNS, unix sockets (path and abstract).

The test starts the listeners on the host (on every local address), and the attack
(a Python without the audit hook) tries each of them, by every local address, by
path and through every /proc/<pid>/root, plus name resolution. From the host:
no listener saw a connection or a datagram. The controls inside (a listener the
attack starts in its own sandbox) show that its socket code works.
"""
from __future__ import annotations

import itertools
import os
import socket
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from .helpers import (
    REPORTING_TRANSFORM,
    add_dataset,
    attack_source,
    read_report,
    results,
    run_build,
)

NET_ATTACK = '''
import socket
import threading


def attempt(name, family, kind, address, payload=b"d4c-sandbox-escape"):
    s = socket.socket(family, kind)
    s.settimeout(3)
    try:
        if kind == socket.SOCK_DGRAM:
            s.sendto(payload, address)
            report(name, "SENT (a datagram leaves no trace here: the host listener decides)")
        else:
            s.connect(address)
            s.sendall(payload)
            report(name, "CONNECTED")
    except OSError as exc:
        report(name, f"refused {exc}")
    finally:
        s.close()


for host in CONFIG["hosts"]:
    attempt(f"tcp {host}:{CONFIG['tcp']}", socket.AF_INET, socket.SOCK_STREAM, (host, CONFIG["tcp"]))
    attempt(f"udp {host}:{CONFIG['udp']}", socket.AF_INET, socket.SOCK_DGRAM, (host, CONFIG["udp"]))
    if CONFIG["dns"]:
        query = bytes.fromhex("abcd01000001000000000000") + b"\\x07example\\x03com\\x00\\x00\\x01\\x00\\x01"
        attempt(f"dns {host}:53", socket.AF_INET, socket.SOCK_DGRAM, (host, 53), query)
if CONFIG["tcp6"]:
    attempt(f"tcp [::1]:{CONFIG['tcp6']}", socket.AF_INET6, socket.SOCK_STREAM, ("::1", CONFIG["tcp6"]))
for name in ("example.com", "pypi.org", CONFIG["dns_name"]):
    try:
        report(f"resolve {name}", f"RESOLVED {socket.getaddrinfo(name, 443)}")
    except OSError as exc:
        report(f"resolve {name}", f"refused {exc}")
for path in via_other_processes(CONFIG["unix"]):
    attempt(f"unix {path}", socket.AF_UNIX, socket.SOCK_STREAM, path)
attempt("unix abstract", socket.AF_UNIX, socket.SOCK_STREAM, "\\0" + CONFIG["abstract"])
for path in ("/var/run/docker.sock", "/run/docker.sock", "/run/podman/podman.sock", "/run/user/0/podman/podman.sock",
             "/run/dbus/system_bus_socket", "/run/systemd/private", "/run/systemd/journal/socket"):
    attempt(f"host service {path}", socket.AF_UNIX, socket.SOCK_STREAM, path)

# Controls: the same code reaches listeners inside the sandbox.
held = []


def serve(server):
    conn, _ = server.accept()
    held.append(conn)  # kept open: the client's sendall must not meet a closed socket
    conn.recv(64)


srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
srv.bind(("127.0.0.1", 0))
srv.listen(1)
threading.Thread(target=serve, args=(srv,), daemon=True).start()
attempt("control tcp", socket.AF_INET, socket.SOCK_STREAM, srv.getsockname())
asrv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
asrv.bind("\\0" + CONFIG["abstract"])  # free in this sandbox's namespace: proof it is not the host's
asrv.listen(1)
threading.Thread(target=serve, args=(asrv,), daemon=True).start()
attempt("control unix abstract", socket.AF_UNIX, socket.SOCK_STREAM, "\\0" + CONFIG["abstract"])
'''


@dataclass
class Listeners:
    tcp: int
    udp: int
    tcp6: int | None
    dns: bool
    unix: str
    abstract: str
    contacts: list[str] = field(default_factory=list)


def _local_addresses() -> list[str]:
    """Every IPv4 address of this host (from the kernel's routing table)."""
    found = {"127.0.0.1"}
    try:
        lines = Path("/proc/net/fib_trie").read_text().splitlines()
    except OSError:
        lines = []
    for prev, line in itertools.pairwise(lines):
        if "/32 host LOCAL" in line:
            found.add(prev.split()[-1])
    return sorted(found)


def _serve(sock: socket.socket, label: str, contacts: list[str], stop: threading.Event) -> None:
    sock.settimeout(0.2)
    while not stop.is_set():
        try:
            if sock.type == socket.SOCK_DGRAM:
                data, peer = sock.recvfrom(65536)
                contacts.append(f"{label}: datagram {data[:40]!r} from {peer}")
            else:
                conn, peer = sock.accept()
                contacts.append(f"{label}: connection from {peer!r}")
                conn.close()
        except OSError:
            continue


@pytest.fixture
def listeners(token: str) -> Iterator[Listeners]:
    stop = threading.Event()
    contacts: list[str] = []
    socks: list[tuple[socket.socket, str]] = []

    def listen(family: int, kind: int, address: tuple[str, int] | str, label: str) -> socket.socket:
        s = socket.socket(family, kind)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(address)
        if kind == socket.SOCK_STREAM:
            s.listen(16)
        socks.append((s, label))
        return s

    tcp = listen(socket.AF_INET, socket.SOCK_STREAM, ("0.0.0.0", 0), "tcp").getsockname()[1]
    udp = listen(socket.AF_INET, socket.SOCK_DGRAM, ("0.0.0.0", 0), "udp").getsockname()[1]
    try:
        tcp6: int | None = listen(socket.AF_INET6, socket.SOCK_STREAM, ("::1", 0), "tcp6").getsockname()[1]
    except OSError:
        tcp6 = None
    try:  # where the resolver looks when a sandbox has no resolv.conf (needs root to bind)
        listen(socket.AF_INET, socket.SOCK_DGRAM, ("127.0.0.1", 53), "dns")
        dns = True
    except OSError:
        dns = False
    folder = tempfile.mkdtemp(prefix="d4csec-")  # short: a unix socket path has 107 bytes at most
    unix = os.path.join(folder, "s.sock")
    listen(socket.AF_UNIX, socket.SOCK_STREAM, unix, "unix")
    os.chmod(folder, 0o755)
    os.chmod(unix, 0o777)  # anyone who can reach it may connect: only the sandbox stands between
    abstract = f"d4csec-{token}"
    listen(socket.AF_UNIX, socket.SOCK_STREAM, "\0" + abstract, "abstract")
    threads = [threading.Thread(target=_serve, args=(s, label, contacts, stop), daemon=True) for s, label in socks]
    for t in threads:
        t.start()
    yield Listeners(tcp, udp, tcp6, dns, unix, abstract, contacts)
    stop.set()
    for t in threads:
        t.join(timeout=2)
    for s, _ in socks:
        s.close()
    os.unlink(unix)
    os.rmdir(folder)


def _self_check(lst: Listeners) -> None:
    """The listeners work: a connection from the host itself is seen (then forgotten)."""
    with socket.create_connection(("127.0.0.1", lst.tcp), timeout=3):
        pass
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.connect("\0" + lst.abstract)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        u.sendto(b"self-check", ("127.0.0.1", lst.udp))
    for _ in range(50):
        if len(lst.contacts) >= 3:
            break
        threading.Event().wait(0.05)
    assert len(lst.contacts) >= 3, lst.contacts
    lst.contacts.clear()


@pytest.mark.timeout(300)
def test_transform_reaches_no_host_listener(runner: str, repo: Path, listeners: Listeners, token: str,
                                            capfd: pytest.CaptureFixture[str]) -> None:
    _self_check(listeners)
    hosts = _local_addresses()
    config = {"hosts": hosts, "tcp": listeners.tcp, "udp": listeners.udp, "tcp6": listeners.tcp6,
              "dns": listeners.dns, "unix": listeners.unix, "abstract": listeners.abstract,
              "dns_name": f"d4csec-{token}.example.org"}
    ds = add_dataset(repo, f"network-{runner}", REPORTING_TRANSFORM,
                     files={"attack.py": attack_source(config, NET_ATTACK)})
    built = run_build(repo, ds, runner, capfd)
    assert built.code == 0, built.err[-4000:]
    threading.Event().wait(1)  # a late datagram would still be counted
    assert listeners.contacts == [], f"the transform reached the host: {listeners.contacts}"

    report = dict(read_report(built.out))
    assert report["control tcp"] == "CONNECTED", report
    assert report["control unix abstract"] == "CONNECTED", report
    for host in hosts:
        assert report[f"tcp {host}:{listeners.tcp}"].startswith("refused"), report
    resolved = {k: v for k, v in results(list(report.items()), "resolve ").items() if not v.startswith("refused")}
    assert not resolved, f"names resolved inside the sandbox: {resolved}"
    unix = {k: v for k, v in report.items() if k.startswith(("unix ", "host service ")) and v == "CONNECTED"}
    assert not unix, f"the transform connected to a host unix socket: {unix}"
    assert len([k for k in report if k.startswith("unix /")]) >= 2
