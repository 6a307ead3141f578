"""Mirror health: every copy of every artifact in the catalog, checked in tiers (docs/mirrors.md).

`net` (per-host limits, counts), `inventory` (catalog -> artifacts and copies, manifests),
`checks` (the tiers), `scrape` (tracker seeders), `health` (the health file, verdicts,
the at-risk signal, the summary), `run` (the whole check).
"""
