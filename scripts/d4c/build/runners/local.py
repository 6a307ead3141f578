"""The local runner: this Python environment, a fresh folder, no network."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from d4c.build import sandbox
from d4c.build.runners import Job, RunResult, fixed_env, prepare_work, read_outcome, worker_spec


class LocalRunner:
    name = "local"

    def run(self, job: Job) -> RunResult:
        prepare_work(job)
        scratch = str(job.work / "scratch")
        # The worker writes its result into ctl/, so the OS-level sandbox lets it write there.
        spec = worker_spec(job, lambda p: str(Path(p).resolve()), guarded=[str(job.repo_root.resolve())])
        kind, prefix = sandbox.isolation_prefix(
            [str(job.stage), scratch, str(job.work / "ctl")],
            hide=str(job.repo_root), expose=[*spec["readable"], *sandbox.python_roots()],
        )
        spec_path = job.work / "ctl" / "spec.json"
        spec_path.write_text(json.dumps(spec, sort_keys=True), encoding="utf-8")
        path = os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"])
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "d4c.build.worker", str(spec_path)],
            env=fixed_env(job.source_date_epoch, scratch, path),
            cwd=job.work / "cwd", umask=0o022, check=False,
        )
        outcome = read_outcome(job, proc.returncode)
        return RunResult(runner=self.name, network_isolation=kind, python=outcome["python"],
                         packages=outcome["packages"])
