"""`d4c node audit`: the health check's reading of the check-in log. Every counted check-in
(signed, fresh nonce: d4c.node.checkins) has its answers checked against the mirrors' bytes,
read with `Range`, for up to `sample` of the files it claims (chosen from its own name, so
anyone reruns the same audit); a node with a wrong answer is reported and not counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import requests

from d4c import http
from d4c.mirrors.checks import choose_pieces
from d4c.node import challenge, checkins, inventory
from d4c.node.log import Log


@dataclass(frozen=True)
class Verdict:
    node: str
    at: str
    claimed: int
    checked: int
    wrong: list[str]

    @property
    def counted(self) -> bool:
        return not self.wrong


def _mirror_reader(hrefs: dict[str, tuple[str, ...]], sess: requests.Session) -> challenge.Reader:
    def read(sha: str, start: int, length: int) -> bytes | None:
        for href in hrefs.get(sha, ()):
            try:
                resp = sess.get(href, headers={"Range": f"bytes={start}-{start + length - 1}",
                                               "Accept-Encoding": "identity"}, timeout=(5, 30))
            except requests.RequestException:
                continue
            if resp.status_code == 206 and len(resp.content) == length:
                return resp.content
        return None  # no mirror answers: this file cannot be checked here
    return read


def run(catalog: str, log: Log, now: datetime, sample: int, warn: list[str]) -> list[Verdict]:
    entries = inventory.load(catalog, warn)
    hrefs = {e.sha256: e.hrefs for e in entries}
    read = _mirror_reader(hrefs, http.session(retries=1, backoff_factor=0.2))
    out = []
    for ci in checkins.read(log, now, warn):
        known = sorted(s for s in ci.sizes if s in hrefs)
        picks = [known[i] for i in choose_pieces(ci.name, "audit", len(known), sample)] if known else []
        sizes = {s: ci.sizes[s] for s in picks}
        bad = challenge.wrong(ci.node, ci.date, ci.prev, ci.answers, sizes, read)
        out.append(Verdict(ci.node, ci.at.isoformat(), len(ci.sizes), len(picks), bad))
    return out
