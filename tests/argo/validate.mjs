// Validates Argo Workflow manifests (JSON files named on the command line) against the
// Argo Workflows API schema shipped in @kubernetes-models/argo-workflows (its validate()
// checks types, required fields and enums; it does not reject unknown keys).
// Prints one line per file; exits 1 if any is invalid.
import { readFileSync } from "node:fs";
import { Workflow } from "@kubernetes-models/argo-workflows/argoproj.io/v1alpha1";

let bad = 0;
for (const file of process.argv.slice(2)) {
  try {
    new Workflow(JSON.parse(readFileSync(file, "utf8"))).validate();
    console.log(`valid: ${file}`);
  } catch (err) {
    bad += 1;
    console.log(`invalid: ${file}: ${String(err.message || err).slice(0, 2000)}`);
  }
}
process.exit(bad ? 1 : 0);
