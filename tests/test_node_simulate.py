"""The simulator: deterministic, and the policy beats the baselines where the issue says."""
from __future__ import annotations

import pytest
from d4c.cli import main
from d4c.node import simulate


def test_rendezvous_keeps_every_at_risk_copy_with_less_waste_than_the_baselines() -> None:
    rows = {name: m for name, cap, m in simulate.compare(40, 400, 60, 3, capacities=(5.0,))}
    ours, rand, smart = rows["rendezvous"], rows["random"], rows["smartnode"]
    assert ours["lost"] == 0 and ours["zero"] == 0
    assert ours["ge3"] >= 0.99 and ours["ge3"] > smart["ge3"]
    assert ours["gt5"] <= 0.05 < rand["gt5"]
    assert ours["tb"] < 0.85 * rand["tb"]  # at least 15% less transfer than random


def test_same_seed_same_table(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["node", "simulate", "--nodes", "12", "--artifacts", "60", "--days", "20", "--seed", "5"]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert main(args) == 0
    assert capsys.readouterr().out == first and "| rendezvous | 5x |" in first
