"""The reviewer's build diff: compare a fresh build with the latest release.

`report.make_report` assembles plain data from `compare` (artifacts), `previous`
(the release record and its files) and `semver` (the verdict); `render` turns it
into bounded markdown or JSON.
"""
