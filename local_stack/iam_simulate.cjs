// The local stack's IAM policy evaluator: @cloud-copilot/iam-simulate answering one JSON line per request.
//
//   node local_stack/iam_simulate.cjs <folder holding node_modules>      (local_stack/iam.py starts it)
//
// In:  {"id": 1, "principal": "arn:aws:sts::123456789012:assumed-role/R/f", "action": "dynamodb:PutItem",
//       "resource": "arn:aws:dynamodb:us-east-1:123456789012:table/T", "account": "123456789012",
//       "policies": [{"name": "p0", "policy": {"Version": "2012-10-17", "Statement": [...]}}]}
// Out: {"id": 1, "decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied"}
//      or {"id": 1, "decision": "Error", "error": "<why the request or a policy is invalid>"}
// Requests are answered in order, one at a time. A first line {"id": 0, "ping": true} answers {"id": 0, "ready": true}.
"use strict";

const path = require("node:path");
const readline = require("node:readline");

const folder = process.argv[2] || path.join(__dirname, "..", "node_tools");
const { runSimulation } = require(require.resolve("@cloud-copilot/iam-simulate", { paths: [folder] }));

async function decide(request) {
  const simulation = {
    request: {
      principal: request.principal,
      action: request.action,
      resource: { resource: request.resource, accountId: request.account },
      contextVariables: request.context || {},
    },
    identityPolicies: request.policies,
    serviceControlPolicies: [],
    resourceControlPolicies: [],
  };
  const result = await runSimulation(simulation, {});
  if (result.resultType === "error") {
    return { decision: "Error", error: JSON.stringify(result.errors) };
  }
  return { decision: result.overallResult };
}

const lines = readline.createInterface({ input: process.stdin, terminal: false });
let queue = Promise.resolve();
lines.on("line", (line) => {
  queue = queue.then(async () => {
    let id = null;
    let answer;
    try {
      const request = JSON.parse(line);
      id = request.id;
      answer = request.ping ? { ready: true } : await decide(request);
    } catch (error) {
      answer = { decision: "Error", error: String((error && error.stack) || error) };
    }
    process.stdout.write(JSON.stringify({ id, ...answer }) + "\n");
  });
});
lines.on("close", () => queue.then(() => process.exit(0)));
