# One Makefile for the whole project. `make test` and `make run` install what they need themselves.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

# Lambda runs python3.13, so the venv and `sam build` must too. pyenv's 3.13 is found without activation.
PY313 ?= $(shell PYENV_VERSION=3.13.0 python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null || command -v python3.13)
VENV := .venv
SAM_VENV := .venv-sam
CHECKOV_VENV := .venv-checkov
PY := $(VENV)/bin/python
SAM := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(SAM_VENV)/bin/sam
# checkov on CloudFormation (it reads SAM resources and Globals itself); --skip-download: offline, no BC_* ids
CHECKOV := $(CHECKOV_VENV)/bin/checkov --framework cloudformation --quiet --compact --skip-download
TRANSFORMED := .aws-sam/security/template.transformed.json
EXPANDED := .aws-sam/security/template.expanded.json
PIP_QUIET := --quiet --disable-pip-version-check

.PHONY: help python-check node-check node-tools iam-evaluator venv lint unit component integration local-stack-tests client-tests security test check deep repeat validate build run send-sqs redrive lookup erase bench soak clean

help:
	@echo "make run    start the whole system locally (API :3000, Segment sink :3001)"
	@echo "make test   lint, unit + integration tests, sam validate (+ --lint), sam build"
	@echo "make bench  benchmark tables (throughput, requests, cold start, size, US$ per million events, latency)"
	@echo "make soak   minutes of load, crashes, a flapping Segment and a connection change, then every invariant"
	@echo "make check  lint, types and the domain tests (the fast loop, under a minute)"
	@echo "make repeat [N=100]  every concurrency test N times over (a CI run must never fail by chance)"
	@echo "make security  checkov (template.yaml and its SAM transform) and bandit (Lambda code)"
	@echo "make redrive KIND=identify|assignment|conversion [DRY_RUN=1] [INCLUDE_PERMANENT=1] [WAIT=<s>] [STACK=<name>]  DLQ back to its queue"
	@echo "make lookup WORKSPACE=<id> VISITOR=<id> [STACK=<name>]  what happened to a visitor (its facts)"
	@echo "make erase WORKSPACE=<id> VISITOR=<id> [STACK=<name>]   forget a visitor (privacy requests)"

python-check:
	@test -n "$(PY313)" || { echo "error: python3.13 not found. Install it (pyenv install 3.13.0) or set PY313=/path/to/python3.13" >&2; exit 1; }

# The producer client (client/) is installed editable: its tests and the README's examples use it as a user would.
$(VENV)/.installed: requirements-dev.txt layers/forwarder/requirements.txt client/pyproject.toml | python-check
	@test -x $(PY) || $(PY313) -m venv $(VENV)
	set -o pipefail; $(PY) -m pip install $(PIP_QUIET) -r requirements-dev.txt -e ./client 2>&1 | { grep -v "^WARNING: Location" || true; }
	@touch $@

$(SAM_VENV)/.installed: | python-check
	@test -x $(SAM_VENV)/bin/python || $(PY313) -m venv $(SAM_VENV)
	set -o pipefail; $(SAM_VENV)/bin/python -m pip install $(PIP_QUIET) aws-sam-cli==1.170.0 2>&1 | { grep -v "^WARNING: Location" || true; }
	@touch $@

# checkov pins its own dependencies (they conflict with ours): a venv of its own.
$(CHECKOV_VENV)/.installed: | python-check
	@test -x $(CHECKOV_VENV)/bin/python || $(PY313) -m venv $(CHECKOV_VENV)
	set -o pipefail; $(CHECKOV_VENV)/bin/python -m pip install $(PIP_QUIET) checkov==3.3.30 2>&1 | { grep -v "^WARNING: Location" || true; }
	@touch $@

venv: $(VENV)/.installed

# Node tools of the tests and the local stack (never of the product), pinned by node_tools/package-lock.json:
# dynalite, the second DynamoDB engine the store's component tests and histories also run against, and
# @cloud-copilot/iam-simulate, the IAM policy evaluator of the local stack (local_stack/iam.py). `make test` needs
# them; `make run` uses the evaluator when node is there, else runs without the IAM check. --ignore-scripts: nothing
# is built (dynalite keeps its tables in memory; its LevelDB binding's prebuilt binaries ship in the package anyway).
node-check:
	@command -v node >/dev/null && command -v npm >/dev/null || { echo "error: node and npm not found: the tests run the store against dynalite and check IAM with a node evaluator (node >= 20). Install Node.js 20 (e.g. apt-get install nodejs npm)" >&2; exit 1; }
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' || { echo "error: node $$(node --version) is too old: the node tools need node >= 20" >&2; exit 1; }

node_tools/node_modules/.installed: node_tools/package.json node_tools/package-lock.json | node-check
	cd node_tools && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

node-tools: node_tools/node_modules/.installed

iam-evaluator: node-tools

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy layers/forwarder/segment_forwarder functions
	$(VENV)/bin/mypy --strict --ignore-missing-imports --python-version 3.11 client/segment_forwarder_client
	$(VENV)/bin/mypy --follow-imports=silent local_stack bench soak ops tools
	$(PY) -m tools.complexity

# Test layers: unit = the pure domain (seconds); component = handlers + moto + sink; integration = the product
# over the local stack; local-stack = the local stack's and the sink's own tests; client = the producer client's
# tests (tests/client on its own, tests/integration/test_client*.py against the local stack); the tooling's own tests
# are tests/bench, tests/soak and tests/ops; shared helpers (no tests) are in tests/support. `make test` runs them all.
unit: venv
	$(PY) -m pytest tests/domain -q

# The fast loop before a commit: lint, types and the domain tests (well under a minute), their generated histories
# cut to a fifth (hypothesis profile `check`, tests/support/profiles.py); `make unit` and `make test` run them all.
check: lint
	$(PY) -m pytest tests/domain -q --hypothesis-profile=check

component: venv node-tools
	$(PY) -m pytest tests/component -q

integration: venv node-tools
	$(PY) -m pytest tests/integration -q

local-stack-tests: venv node-tools
	$(PY) -m pytest tests/local_stack -q

client-tests: venv node-tools
	$(PY) -m pytest tests/client tests/integration/test_client.py tests/integration/test_client_unavailable.py -q

validate: $(SAM_VENV)/.installed
	$(SAM) validate --region $(AWS_DEFAULT_REGION)
	$(SAM) validate --lint --region $(AWS_DEFAULT_REGION)

build: $(SAM_VENV)/.installed venv
	$(SAM) build

# checkov: template.yaml with its Fn::ForEach loops expanded (checkov does not expand them; skips, with their reasons,
# in each resource's Metadata), then the template as the SAM
# transform expands it (the generated IAM roles, Lambda permissions and API definition; Metadata passed through).
# bandit: the Lambda code and the producer client, medium and high severity.
security: $(CHECKOV_VENV)/.installed $(SAM_VENV)/.installed venv
	@mkdir -p $(dir $(TRANSFORMED))
	$(PY) -m local_stack.template > $(EXPANDED)
	$(CHECKOV) -f $(EXPANDED)
	$(PY) tests/component/test_security.py --passthrough-metadata > $(TRANSFORMED)
	$(CHECKOV) -f $(TRANSFORMED)
	$(VENV)/bin/bandit -r layers/forwarder/segment_forwarder functions client/segment_forwarder_client -ll

test: lint security validate build node-tools
	$(PY) -m pytest -q

# The generated tests (domain and component) with four times the examples make test runs (hypothesis profile
# `deep`, tests/support/profiles.py), before a release or after touching the dedup core.
deep: venv node-tools
	$(PY) -m pytest tests/domain tests/component -q --hypothesis-profile=deep -k "histor or hostile"

# make repeat [N=100] [MARK=concurrency]: every test with that marker N times over, to catch failures by chance
repeat: venv
	$(PY) -m pytest -q -m "$(or $(MARK),concurrency)" --count=$(or $(N),100)

run: venv
	@if command -v npm >/dev/null; then $(MAKE) --no-print-directory node-tools || echo "note: the IAM policy evaluator could not be installed: make run goes on without the IAM check" >&2; \
	else echo "note: node/npm not found: make run goes on without the IAM check (install node 20, then make node-tools)" >&2; fi
	$(PY) -m local_stack

# make send-sqs KIND=identify|assignment|conversion BODY='{"workspace_id":"demo",...}'   (or FILE=path): needs `make run`
send-sqs: venv
	@test -n "$$KIND" || { echo "usage: make send-sqs KIND=identify|assignment|conversion BODY='<json>' (or FILE=<path>)" >&2; exit 2; }
	$(PY) -m local_stack.send_sqs "$$KIND" $(if $(FILE),--file "$$FILE","$$BODY")

# make redrive KIND=identify|assignment|conversion [DRY_RUN=1] [STACK=<stack name>]: a DLQ's messages back to their
# queue, duplicate-safe. Default: the local stack of `make run`; STACK=: a deployed stack (AWS credentials and region
# from the environment). DRY_RUN=1 counts them by reason and moves nothing. Only what can succeed is moved;
# INCLUDE_PERMANENT=1 moves the rest too (invalid bodies, refused by Segment: after fixing the cause). WAIT=<s>: how
# long to wait for messages another reader holds (default 75). See python -m ops.redrive --help.
redrive: venv
	@test -n "$$KIND" || { echo "usage: make redrive KIND=identify|assignment|conversion [DRY_RUN=1] [INCLUDE_PERMANENT=1] [WAIT=<seconds>] [STACK=<stack name>]" >&2; exit 2; }
	PYTHONPATH=layers/forwarder $(PY) -m ops.redrive "$$KIND" $(if $(filter 1 true yes,$(DRY_RUN)),--dry-run) $(if $(filter 1 true yes,$(INCLUDE_PERMANENT)),--include-permanent) $(if $(WAIT),--wait "$$WAIT") $(if $(STACK),--stack "$$STACK")

# make lookup WORKSPACE=<id> VISITOR=<id> [STACK=<stack name>]: the visitor's facts and the Logs Insights query
lookup: venv
	@test -n "$$WORKSPACE" -a -n "$$VISITOR" || { echo "usage: make lookup WORKSPACE=<id> VISITOR=<id> [STACK=<stack name>]" >&2; exit 2; }
	PYTHONPATH=layers/forwarder $(PY) -m ops.lookup "$$WORKSPACE" "$$VISITOR" $(if $(STACK),--stack "$$STACK")

# make erase WORKSPACE=<id> VISITOR=<id> [STACK=<stack name>]: DELETE /v1/workspaces/<id>/visitors/<id> (signed)
erase: venv
	@test -n "$$WORKSPACE" -a -n "$$VISITOR" || { echo "usage: make erase WORKSPACE=<id> VISITOR=<id> [STACK=<stack name>]" >&2; exit 2; }
	PYTHONPATH=layers/forwarder $(PY) -m ops.erase "$$WORKSPACE" "$$VISITOR" $(if $(STACK),--stack "$$STACK")

# make bench [BENCH_ARGS="--sections 5678 --cost-batches 20"]: see python -m bench --help; writes .bench/results.json
bench: venv build
	$(PY) -m bench $(BENCH_ARGS)

# make soak [SOAK_ARGS="--requests 1000 --seed 7 --dump /tmp/soak.json"]: see python -m soak --help
soak: venv
	$(PY) -m soak $(SOAK_ARGS)

clean:
	rm -rf $(VENV) $(SAM_VENV) $(CHECKOV_VENV) node_tools/node_modules .aws-sam .pytest_cache .ruff_cache
