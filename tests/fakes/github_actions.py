"""A fake of GitHub's workflow_dispatch endpoint, as documented and as it answers:

- `POST /repos/{o}/{r}/actions/workflows/{file}/dispatches` with `{"ref", "inputs"}` answers
  204 with no body and queues a run;
- an unknown workflow file answers 404; a ref that is not a branch or tag 422 `No ref found
  for: <ref>`; an input the workflow does not declare 422 `Unexpected inputs provided: [...]`;
  a required input left out 422 `Required input '<name>' not provided`; a token without
  `actions: write` 403 `Resource not accessible by integration`.
- `GET /repos/{o}/{r}/actions/runs/{id}` answers the run (the fields GitHub's run object has
  that a chain checks: `path`, `event`, `head_branch`, `head_repository.full_name`) or 404.
The workflows and their inputs are given by the test (read from the real workflow files).
"""
from __future__ import annotations

import json
from typing import Any

from . import FakeServer, Request, Response, json_response

REPO = r"/repos/(?P<owner>[^/]+)/(?P<repo>[^/]+)"


class FakeActions(FakeServer):
    def __init__(self, token: str, workflows: dict[str, dict[str, Any]], refs: set[str]) -> None:
        super().__init__()
        self.token, self.workflows, self.refs = token, workflows, refs
        self.can_write = True  # the token's `actions` permission
        self.runs: list[dict[str, Any]] = []  # {"repo", "workflow", "ref", "inputs"} of every queued run
        self.past: dict[str, dict[str, Any]] = {}  # run id -> the run object GET .../runs/{id} answers
        self.route("POST", rf"{REPO}/actions/workflows/(?P<file>[^/]+)/dispatches", self._dispatch_run)
        self.route("GET", rf"{REPO}/actions/runs/(?P<id>[0-9]+)", self._run)

    def add_run(self, run_id: str, *, workflow: str = "release.yml", event: str = "push", branch: str = "main",
                head_repo: str = "dataforcanada/d4c") -> None:
        self.past[run_id] = {"id": int(run_id), "path": f".github/workflows/{workflow}", "event": event,
                             "head_branch": branch, "head_repository": {"full_name": head_repo}}

    def _run(self, req: Request) -> Response:
        found = self.past.get(req.params["id"])
        return json_response(200, found) if found else json_response(404, {"message": "Not Found"})

    def _handle(self, req: Request) -> Response:
        if req.headers.get("authorization") != f"Bearer {self.token}":
            return json_response(401, {"message": "Bad credentials"})
        return super()._handle(req)

    def _dispatch_run(self, req: Request) -> Response:
        declared = self.workflows.get(req.params["file"])
        if declared is None:
            return json_response(404, {"message": "Not Found"})
        if not self.can_write:
            return json_response(403, {"message": "Resource not accessible by integration"})
        body = req.json() or {}
        if body.get("ref") not in self.refs:
            return json_response(422, {"message": f"No ref found for: {body.get('ref')}"})
        given: dict[str, Any] = body.get("inputs") or {}
        extra = sorted(set(given) - set(declared))
        if extra:
            return json_response(422, {"message": f"Unexpected inputs provided: {json.dumps(extra)}"})
        for name, spec in declared.items():
            if spec.get("required") and name not in given:
                return json_response(422, {"message": f"Required input '{name}' not provided"})
        self.runs.append({"repo": f"{req.params['owner']}/{req.params['repo']}", "workflow": req.params["file"],
                          "ref": body["ref"], "inputs": given})
        return Response(204)
