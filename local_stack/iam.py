"""IAM on the local stack: each function's AWS calls allowed only by its policy in ``template.yaml``.

Every function signs its AWS calls with an access key of its own (``ASIA…``, in its worker's environment). The AWS
endpoint (moto) sits behind :class:`IamCheck`'s WSGI middleware, which tells the calling function by that key,
derives the IAM action and resource ARN of the request (X-Amz-Target for the JSON protocols, ``Action=`` for the
query protocol; table, queue and secret ARNs as AWS names them) and asks a real policy evaluator,
`@cloud-copilot/iam-simulate <https://github.com/cloud-copilot/iam-simulate>`_, whether the function's role allows
it. A denied call fails as on AWS: HTTP 400 ``AccessDeniedException`` ("User: arn:aws:sts::…:assumed-role/<role>/
<function> is not authorized to perform: <action> on resource: <arn> because no identity-based policy allows the
<action> action"). Requests signed with the stack's own credentials (tests, pollers, operator tools) are not checked::

    identities = function_identities(template, created)          # per function: key, role, resolved policies
    check = IamCheck(PolicyEvaluator.shared())                   # evaluator: one node process, decisions cached
    check.configure(identities)
    app = check.wsgi(app)                                        # in front of moto's WSGI app
    check.denials()                                              # [Decision(function, action, resource, ...)]
    check.unused_grants()                                        # [Grant(function, action, resource label, ...)]

The role's policies are those CloudFormation would give it: the function's ``Policies`` (inline documents with
Ref, GetAtt, Sub and If resolved against the template's parameters, conditions and created resources; AWS managed
policies by name or ARN) and the managed policies the SAM transform adds (``AWSLambdaBasicExecutionRole``, and
``AWSLambdaSQSQueueExecutionRole`` for a function with an SQS event). The evaluator needs node and
``node_tools/node_modules`` (``make iam-evaluator``): :func:`evaluator_unavailable` says what is missing.
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import hashlib
import io
import json
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from .template import ACCOUNT_ID, Resource, Template

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "node_tools"
SCRIPT = Path(__file__).with_name("iam_simulate.cjs")
PACKAGE = "@cloud-copilot/iam-simulate"
INSTALL_HINT = "`make iam-evaluator` installs it (npm, node 20)"

_MANAGED = "arn:aws:iam::aws:policy/service-role/"
_LOGS = ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"]
# The AWS managed policies a function of this template may carry, as AWS publishes them.
MANAGED_POLICIES: dict[str, dict[str, Any]] = {
    f"{_MANAGED}AWSLambdaBasicExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": _LOGS, "Resource": "*"}],
    },
    f"{_MANAGED}AWSLambdaSQSQueueExecutionRole": {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes", *_LOGS],
                "Resource": "*",
            }
        ],
    },
}
MANAGED_BY_NAME = {arn.rsplit("/", 1)[1]: arn for arn in MANAGED_POLICIES}

# Operations whose IAM action has another name (the batch forms are authorised as their single forms).
_SQS_ACTIONS = {
    "SendMessageBatch": "SendMessage",
    "DeleteMessageBatch": "DeleteMessage",
    "ChangeMessageVisibilityBatch": "ChangeMessageVisibility",
}
_DYNAMODB_TRANSACT = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
    "Get": "GetItem",
}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/aws4_request")


class UnsupportedPolicyError(ValueError):
    """The template gives a function a policy the local check cannot reproduce (a SAM policy template, a Role)."""


class EvaluatorError(RuntimeError):
    """The policy evaluator process is missing, died, or answered something unreadable."""


def evaluator_unavailable(node_dir: Path = NODE_DIR) -> str | None:
    """Why the evaluator cannot run here (node missing, the npm package missing); None when it can."""
    if shutil.which("node") is None:
        return f"node is not on PATH (the IAM policy evaluator {PACKAGE} runs on node 20; {INSTALL_HINT})"
    if not (node_dir / "node_modules" / PACKAGE / "package.json").exists():
        return f"{PACKAGE} is not installed in {node_dir}/node_modules ({INSTALL_HINT})"
    return None


# -- the evaluator -----------------------------------------------------------------------------------------------


class PolicyEvaluator:
    """iam-simulate in one long-lived node process answering JSON lines; decisions cached (they depend only on the
    principal, action, resource and policies). Thread-safe: one request at a time goes to the process.

    ::

        evaluator = PolicyEvaluator.shared()        # started once per Python process, closed at exit
        evaluator.decide(principal, "dynamodb:PutItem", table_arn, policies_json)   # "Allowed", "ImplicitlyDenied", ...
    """

    _shared: PolicyEvaluator | None = None
    _shared_lock = threading.Lock()

    def __init__(self, node_dir: Path = NODE_DIR) -> None:
        reason = evaluator_unavailable(node_dir)
        if reason is not None:
            raise EvaluatorError(reason)
        node = shutil.which("node")
        assert node is not None
        self._process = subprocess.Popen(  # noqa: S603 - node and our own script, no shell
            [node, str(SCRIPT), str(node_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )
        self._lock = threading.Lock()  # the node process: one request at a time
        self._cache: dict[tuple[str, str, str, str], tuple[str, str]] = {}  # read without the lock (dict get is atomic)
        self._next_id = 1
        self.calls = 0
        self.misses = 0
        self.miss_seconds = 0.0
        self._ask({"id": 0, "ping": True})

    @classmethod
    def shared(cls) -> PolicyEvaluator:
        """The process-wide evaluator (started on first use, restarted if its process ended)."""
        with cls._shared_lock:
            if cls._shared is None or not cls._shared.alive:
                cls._shared = cls()
                atexit.register(cls._shared.close)
            return cls._shared

    @property
    def alive(self) -> bool:
        """Whether the node process still runs."""
        return self._process.poll() is None

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None and self._process.stdout is not None
        try:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            line = self._process.stdout.readline()
        except (OSError, ValueError) as exc:
            raise EvaluatorError(f"the IAM policy evaluator stopped: {exc}") from exc
        if not line:
            raise EvaluatorError(f"the IAM policy evaluator ended (exit code {self._process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        if answer.get("id") != request["id"]:
            raise EvaluatorError(f"the IAM policy evaluator answered out of turn: {line.strip()}")
        return answer

    def decide(self, principal: str, action: str, resource: str, policies_json: str) -> tuple[str, str]:
        """(decision, error) for one request: decision is ``Allowed``, ``ImplicitlyDenied``, ``ExplicitlyDenied``
        or ``Error`` (an action or resource the evaluator refuses; error says why). ``policies_json`` is the JSON
        list of the identity's policies, ``[{"name": ..., "policy": {...}}]``."""
        decision, error, _cached = self.decide_cached(principal, action, resource, policies_json)
        return decision, error

    def decide_cached(self, principal: str, action: str, resource: str, policies_json: str) -> tuple[str, str, bool]:
        """``decide`` and whether the answer came from the cache."""
        key = (principal, action, resource, policies_json)
        self.calls += 1  # approximate under threads; statistics only
        cached = self._cache.get(key)
        if cached is not None:
            return (*cached, True)
        with self._lock:
            cached = self._cache.get(key)  # another thread may have asked meanwhile
            if cached is not None:
                return (*cached, True)
            started = time.perf_counter()
            request_id = self._next_id
            self._next_id += 1
            answer = self._ask(
                {
                    "id": request_id,
                    "principal": principal,
                    "action": action,
                    "resource": resource,
                    "account": ACCOUNT_ID,
                    "policies": json.loads(policies_json),
                }
            )
            result = (str(answer["decision"]), str(answer.get("error", "")))
            self._cache[key] = result
            self.misses += 1
            self.miss_seconds += time.perf_counter() - started
            return (*result, False)

    def close(self) -> None:
        """End the node process."""
        if self._process.stdin is not None:
            with contextlib.suppress(OSError):
                self._process.stdin.close()
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stdout is not None:
            self._process.stdout.close()


# -- the functions' identities and policies ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Grant:
    """One (action, resource) an inline statement of a function's policy allows; ``label`` names the resource as
    the template does (a logical id for ``!GetAtt X.Arn``, else the ARN's resource part)."""

    function: str
    action: str
    label: str
    resource: str

    def __str__(self) -> str:
        return f"{self.function} {self.action} on {self.label}"


@dataclass(frozen=True, slots=True)
class FunctionIdentity:
    """What a function is to IAM on the local stack: its key, role session and the role's policies."""

    function: str
    function_name: str
    role_name: str
    access_key_id: str
    policies: tuple[dict[str, Any], ...]
    grants: tuple[Grant, ...]
    policies_json: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "policies_json", json.dumps(list(self.policies), sort_keys=True))

    @property
    def principal(self) -> str:
        """The assumed-role session ARN AWS names in its messages."""
        return f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/{self.role_name}/{self.function_name}"


def access_key_id(stack_name: str, function: str) -> str:
    """The function's own dummy access key id (20 characters, ``ASIA`` like a role session's)."""
    return "ASIA" + hashlib.sha256(f"{stack_name}/{function}".encode()).hexdigest()[:16].upper()


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _label(expression: Any, resolved: str) -> str:
    if isinstance(expression, dict) and "Fn::GetAtt" in expression:
        logical_id, attribute = expression["Fn::GetAtt"]
        return str(logical_id) if attribute == "Arn" else f"{logical_id}.{attribute}"
    parts = resolved.split(":", 5)
    return parts[5] if len(parts) == 6 else resolved


def function_policies(template: Template, function: str, created: dict[str, Resource]) -> list[dict[str, Any]]:
    """The function role's policies as ``[{"name", "policy"}]``: its Policies resolved, then SAM's managed ones."""
    properties = template.functions()[function]["Properties"]
    if "Role" in properties:
        raise UnsupportedPolicyError(f"{function} names its own Role: the local IAM check reads SAM Policies only")
    named: list[dict[str, Any]] = []
    managed: list[str] = []
    for index, item in enumerate(_as_list(properties.get("Policies") or [])):
        if isinstance(item, str):
            managed.append(MANAGED_BY_NAME.get(item, item))
        elif isinstance(item, dict) and "Statement" in item:
            named.append({"name": f"{function}RolePolicy{index}", "policy": template.resolve(item, created)})
        else:
            raise UnsupportedPolicyError(f"{function}: the local IAM check does not know the policy {item!r}")
    managed.append(MANAGED_BY_NAME["AWSLambdaBasicExecutionRole"])
    if any(event.get("Type") == "SQS" for event in properties.get("Events", {}).values()):
        managed.append(MANAGED_BY_NAME["AWSLambdaSQSQueueExecutionRole"])
    for arn in dict.fromkeys(managed):
        if arn not in MANAGED_POLICIES:
            raise UnsupportedPolicyError(f"{function}: the local IAM check does not know the managed policy {arn}")
        named.append({"name": arn.rsplit("/", 1)[1], "policy": copy.deepcopy(MANAGED_POLICIES[arn])})
    return named


def function_grants(template: Template, function: str, created: dict[str, Resource]) -> list[Grant]:
    """Every (action, resource) the function's inline Allow statements grant, in template order."""
    properties = template.functions()[function]["Properties"]
    grants: list[Grant] = []
    for item in _as_list(properties.get("Policies") or []):
        if not (isinstance(item, dict) and "Statement" in item):
            continue
        for statement in _as_list(item["Statement"]):
            if statement.get("Effect") != "Allow" or "Action" not in statement or "Resource" not in statement:
                continue
            for expression in _as_list(statement["Resource"]):
                resolved = str(template.resolve(expression, created))
                for action in _as_list(statement["Action"]):
                    grants.append(Grant(function, str(action), _label(expression, resolved), resolved))
    return grants


def function_identities(template: Template, created: dict[str, Resource]) -> dict[str, FunctionIdentity]:
    """Each function's identity on the local stack (role ``<stack>-<Function>Role``, session = function name)."""
    identities = {}
    for function in template.functions():
        identities[function] = FunctionIdentity(
            function=function,
            function_name=template.physical_name(function),
            role_name=template.physical_name(f"{function}Role"),
            access_key_id=access_key_id(template.stack_name, function),
            policies=tuple(function_policies(template, function, created)),
            grants=tuple(function_grants(template, function, created)),
        )
    return identities


# -- requests: who, which action, which resources --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwsRequest:
    """An AWS API request as the endpoint sees it: signer's key, service (signing name), operation, parameters."""

    access_key_id: str
    region: str
    service: str
    operation: str
    params: Mapping[str, Any]
    path: str = "/"
    json_protocol: bool = False  # X-Amz-Target and a JSON body (else the query protocol's form, or REST)


def signer_of(environ: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(access key id, region, service) of a SigV4 Authorization header; None for unsigned requests."""
    found = _CREDENTIAL.search(str(environ.get("HTTP_AUTHORIZATION", "")))
    return (found.group(1), found.group(2), found.group(3)) if found else None


def parse_request(environ: Mapping[str, Any], body: bytes) -> AwsRequest | None:
    """The request's signer, operation and parameters; None when unsigned. The operation is empty when neither an
    X-Amz-Target nor an ``Action=`` names it (REST protocols, which no function of this stack calls)."""
    signer = signer_of(environ)
    if signer is None:
        return None
    key, region, service = signer
    path = str(environ.get("PATH_INFO") or "/")
    target = str(environ.get("HTTP_X_AMZ_TARGET", ""))
    if target:
        try:
            params = json.loads(body or b"{}")
        except ValueError:
            params = {}
        operation = target.rsplit(".", 1)[-1]
        return AwsRequest(key, region, service, operation, params if isinstance(params, dict) else {}, path, True)
    form = parse_qs(body.decode("utf-8", "replace")) if body else {}
    form |= parse_qs(str(environ.get("QUERY_STRING", "")))
    flat = {name: values[0] for name, values in form.items() if values}
    return AwsRequest(key, region, service, str(flat.get("Action", "")), flat, path)


def _queue_arn(url_or_path: str, region: str) -> str:
    parts = [part for part in urlparse(url_or_path).path.split("/") if part]
    account, name = (parts[-2], parts[-1]) if len(parts) >= 2 else (ACCOUNT_ID, parts[-1] if parts else "")
    return f"arn:aws:sqs:{region}:{account}:{name}"


def _table_arn(name: str, region: str) -> str:
    return name if name.startswith("arn:") else f"arn:aws:dynamodb:{region}:{ACCOUNT_ID}:table/{name}"


def _secret_suffix(name: str) -> str:
    """The six characters a new secret's ARN ends with (AWS draws them at random; here fixed per name)."""
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    digest = hashlib.sha256(name.encode()).digest()
    return "".join(alphabet[byte % len(alphabet)] for byte in digest[:6])


SecretLookup = Callable[[str, str], str | None]


def targets(request: AwsRequest, secret_arn: SecretLookup) -> list[tuple[str, str]]:
    """The (IAM action, resource ARN) pairs AWS authorises for the request (a batch may need several; ``*`` for
    an action on no particular resource). ``secret_arn(region, secret_id)`` finds an existing secret's full ARN."""
    service, operation, params, region = request.service, request.operation, request.params, request.region
    if not operation:
        return [(f"{service}:", "*")]
    if service == "dynamodb":
        if operation in ("BatchGetItem", "BatchWriteItem"):
            return [(f"dynamodb:{operation}", _table_arn(t, region)) for t in params.get("RequestItems", {})]
        if operation in ("TransactWriteItems", "TransactGetItems"):
            pairs = []
            for item in params.get("TransactItems", []):
                for kind, spec in item.items():
                    action = _DYNAMODB_TRANSACT.get(kind, kind)
                    pairs.append((f"dynamodb:{action}", _table_arn(str(spec.get("TableName", "")), region)))
            return list(dict.fromkeys(pairs))
        if "TableName" in params:
            arn = _table_arn(str(params["TableName"]), region)
            if params.get("IndexName"):
                arn += f"/index/{params['IndexName']}"
            return [(f"dynamodb:{operation}", arn)]
        return [(f"dynamodb:{operation}", "*")]
    if service == "sqs":
        action = f"sqs:{_SQS_ACTIONS.get(operation, operation)}"
        if params.get("QueueUrl"):
            return [(action, _queue_arn(str(params["QueueUrl"]), region))]
        if params.get("QueueName"):
            owner = params.get("QueueOwnerAWSAccountId") or ACCOUNT_ID
            return [(action, f"arn:aws:sqs:{region}:{owner}:{params['QueueName']}")]
        if request.path.count("/") >= 2:  # the query protocol's POST to the queue's own URL
            return [(action, _queue_arn(request.path, region))]
        return [(action, "*")]
    if service == "secretsmanager":

        def arn_of(secret_id: str) -> str:
            if secret_id.startswith("arn:"):
                return secret_arn(region, secret_id) or secret_id
            return secret_arn(region, secret_id) or f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{secret_id}"

        if operation == "CreateSecret":
            name = str(params.get("Name", ""))
            arn = f"arn:aws:secretsmanager:{region}:{ACCOUNT_ID}:secret:{name}-{_secret_suffix(name)}"
            pairs = [("secretsmanager:CreateSecret", arn)]
            if params.get("Tags"):
                pairs.append(("secretsmanager:TagResource", arn))
            return pairs
        if operation == "BatchGetSecretValue":
            ids = [str(i) for i in params.get("SecretIdList", [])]
            return [("secretsmanager:BatchGetSecretValue", "*")] + [
                ("secretsmanager:GetSecretValue", arn_of(i)) for i in ids
            ]
        if params.get("SecretId"):
            return [(f"secretsmanager:{operation}", arn_of(str(params["SecretId"])))]
        return [(f"secretsmanager:{operation}", "*")]
    return [(f"{service}:{operation}", "*")]


def moto_secret_arn(region: str, secret_id: str) -> str | None:
    """An existing secret's full ARN (with its random suffix) from moto's in-process backend, by name or ARN."""
    from moto.secretsmanager.models import secretsmanager_backends  # moto loads only with the stack

    store = secretsmanager_backends[ACCOUNT_ID][region].secrets
    for secret in list(dict.values(store)):
        partial_arn = secret_id.startswith("arn:") and secret.arn.startswith(secret_id)
        if secret_id in (secret.name, secret.arn) or partial_arn:
            return str(secret.arn)
    return None


# -- the check ---------------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Decision:
    """One (function, action, resource) the stack decided, how, and how often it was asked."""

    function: str
    action: str
    resource: str
    allowed: bool
    reason: str
    count: int = 0

    def __str__(self) -> str:
        verdict = "allowed" if self.allowed else f"DENIED ({self.reason})"
        return f"{self.function} {self.action} on {self.resource}: {verdict} x{self.count}"


def denial_message(identity: FunctionIdentity, action: str, resource: str, decision: str) -> str:
    """AWS's AccessDenied message for an identity-based denial."""
    why = (
        "with an explicit deny in an identity-based policy"
        if decision == "ExplicitlyDenied"
        else f"because no identity-based policy allows the {action} action"
    )
    return f"User: {identity.principal} is not authorized to perform: {action} on resource: {resource} {why}"


_CHECKS: list[IamCheck] = []
_CHECKS_LOCK = threading.Lock()


def checks() -> list[IamCheck]:
    """Every IamCheck configured in this process so far (what a test session reports on)."""
    with _CHECKS_LOCK:
        return list(_CHECKS)


class IamCheck:
    """Checks and records each function's AWS calls against its role's policies (see the module docstring)."""

    def __init__(
        self,
        evaluator: PolicyEvaluator,
        *,
        secret_arn: SecretLookup = moto_secret_arn,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self._secret_arn = secret_arn
        self._log = log
        self._by_key: dict[str, FunctionIdentity] = {}
        self._lock = threading.Lock()
        self._decisions: dict[tuple[str, str, str], Decision] = {}
        self._denied: list[Decision] = []
        self.checked = 0  # requests of functions checked
        self.check_seconds = 0.0
        self.cached = 0  # of which every decision came from the cache
        self.cached_seconds = 0.0
        # Set by a test that provokes denials and calls with a function's key itself: the session report leaves
        # this check's denials and uses out.
        self.provoked = False

    def configure(self, identities: Iterable[FunctionIdentity]) -> None:
        """Set the functions (and their keys) to check; registers this check for the session report."""
        self._by_key = {identity.access_key_id: identity for identity in identities}
        with _CHECKS_LOCK:
            if self not in _CHECKS:
                _CHECKS.append(self)
        # Warm the cache with each grant on a named resource (the table, the queues): the functions' first calls
        # are then decided from the cache instead of waiting for the evaluator while the stack starts serving.
        for identity in self._by_key.values():
            for grant in identity.grants:
                if "*" not in grant.resource and "?" not in grant.resource:
                    with contextlib.suppress(EvaluatorError):
                        self.evaluator.decide(identity.principal, grant.action, grant.resource, identity.policies_json)

    @property
    def identities(self) -> dict[str, FunctionIdentity]:
        """The checked functions by logical id."""
        return {identity.function: identity for identity in self._by_key.values()}

    def identity_of(self, access_key_id: str) -> FunctionIdentity | None:
        """The function that signs with this key; None for the stack's own (unchecked) credentials."""
        return self._by_key.get(access_key_id)

    def authorize(self, identity: FunctionIdentity, request: AwsRequest) -> tuple[str, str] | None:
        """None when the role allows every (action, resource) the request needs; else (action, AWS's message)."""
        started = time.perf_counter()
        denial: tuple[str, str] | None = None
        all_cached = True
        for action, resource in targets(request, self._secret_arn):
            cached = False
            if action.endswith(":"):
                decision, error = "Error", f"the local IAM check cannot tell the action of {request.path}"
            else:
                try:
                    decision, error, cached = self.evaluator.decide_cached(
                        identity.principal, action, resource, identity.policies_json
                    )
                except EvaluatorError as exc:
                    decision, error = "Error", str(exc)
            all_cached = all_cached and cached
            allowed = decision == "Allowed"
            self._record(identity.function, action, resource, allowed, error or decision)
            if not allowed and denial is None:
                denial = (action, denial_message(identity, action, resource, decision))
        elapsed = time.perf_counter() - started
        with self._lock:
            self.checked += 1
            self.check_seconds += elapsed
            if all_cached:
                self.cached += 1
                self.cached_seconds += elapsed
        return denial

    def _record(self, function: str, action: str, resource: str, allowed: bool, reason: str) -> None:
        key = (function, action, resource)
        with self._lock:
            decision = self._decisions.get(key)
            if decision is None:
                decision = self._decisions[key] = Decision(function, action, resource, allowed, reason)
            decision.count += 1
            if not allowed:
                self._denied.append(decision)
        if not allowed and self._log is not None:
            self._log(f"iam: DENIED {function} {action} on {resource} ({reason})")

    def decisions(self) -> list[Decision]:
        """Every distinct (function, action, resource) decided, in first-seen order."""
        with self._lock:
            return list(self._decisions.values())

    def denials(self) -> list[Decision]:
        """The denied calls in order (one entry per denied call)."""
        with self._lock:
            return list(self._denied)

    def used_grants(self) -> set[Grant]:
        """The inline grants some allowed call used: the evaluator matches each call against each grant alone."""
        used: set[Grant] = set()
        allowed = [d for d in self.decisions() if d.allowed]
        for identity in self.identities.values():
            for grant in identity.grants:
                single = json.dumps(
                    [
                        {
                            "name": "grant",
                            "policy": {
                                "Version": "2012-10-17",
                                "Statement": [{"Effect": "Allow", "Action": grant.action, "Resource": grant.resource}],
                            },
                        }
                    ],
                    sort_keys=True,
                )
                for decision in allowed:
                    same_service = decision.action.split(":")[0] == grant.action.split(":")[0]
                    if decision.function != grant.function or not same_service:
                        continue
                    verdict, _ = self.evaluator.decide(identity.principal, decision.action, decision.resource, single)
                    if verdict == "Allowed":
                        used.add(grant)
                        break
        return used

    def all_grants(self) -> list[Grant]:
        """Every inline grant of every checked function."""
        return [grant for identity in self.identities.values() for grant in identity.grants]

    def unused_grants(self) -> list[Grant]:
        """The inline grants no allowed call of this stack used."""
        used = self.used_grants()
        return [grant for grant in self.all_grants() if grant not in used]

    # -- WSGI ---------------------------------------------------------------------------------------------------

    def wsgi(self, app: Callable[..., Any]) -> Callable[..., Any]:
        """``app`` behind the check: a function's denied call is answered as AWS would, the rest pass."""

        def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            signer = signer_of(environ)
            identity = self.identity_of(signer[0]) if signer is not None else None
            if identity is None:
                return app(environ, start_response)  # type: ignore[no-any-return]
            body = _read_body(environ)
            request = parse_request(environ, body)
            assert request is not None
            denial = self.authorize(identity, request)
            if denial is None:
                return app(environ, start_response)  # type: ignore[no-any-return]
            status, headers, payload = _access_denied(request, denial[1])
            start_response(status, headers)
            return [payload]

        return middleware


def _read_body(environ: dict[str, Any]) -> bytes:
    """The request body, put back for the app to read again."""
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")
    if length:
        body: bytes = stream.read(int(length))
    else:
        body = stream.read() if environ.get("wsgi.input_terminated") else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    return body


def _access_denied(request: AwsRequest, message: str) -> tuple[str, list[tuple[str, str]], bytes]:
    """AWS's answer to a denied call: 400 AccessDeniedException (JSON protocols) or 403 AccessDenied (query)."""
    request_id = str(uuid.uuid4())
    if not request.json_protocol:
        xml = (
            '<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type><Code>AccessDenied</Code>'
            f"<Message>{_xml_escape(message)}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"
        )
        return "403 Forbidden", [("Content-Type", "text/xml"), ("x-amzn-RequestId", request_id)], xml.encode()
    headers = [("x-amzn-RequestId", request_id)]
    if request.service == "secretsmanager":
        body: dict[str, str] = {"__type": "AccessDeniedException", "Message": message}
        headers.append(("Content-Type", "application/x-amz-json-1.1"))
    elif request.service == "sqs":
        body = {"__type": "com.amazon.coral.service#AccessDeniedException", "message": message}
        headers += [("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-query-error", "AccessDenied;Sender")]
    else:
        body = {"__type": "com.amazon.coral.service#AccessDeniedException", "Message": message}
        headers.append(("Content-Type", "application/x-amz-json-1.0"))
    payload = json.dumps(body).encode()
    headers.append(("Content-Length", str(len(payload))))
    return "400 Bad Request", headers, payload


def _xml_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def session_report(all_checks: Iterable[IamCheck] | None = None) -> Iterator[str]:
    """Lines for the end of a test session: calls checked, denials, and the grants no stack's calls used."""
    checked = list(checks() if all_checks is None else all_checks)
    if not checked:
        return
    reported = [check for check in checked if not check.provoked]
    calls = sum(check.checked for check in checked)
    cached = sum(check.cached for check in checked)
    cached_seconds = sum(check.cached_seconds for check in checked)
    run_seconds = sum(check.check_seconds for check in checked) - cached_seconds
    denied = [decision for check in reported for decision in check.denials()]
    yield (
        f"IAM: {calls} AWS calls of functions checked on {len(checked)} local stack(s), {len(denied)} denied; "
        f"{cached} decided from the cache ({cached_seconds / max(cached, 1) * 1e6:.0f} µs each), "
        f"{calls - cached} by the evaluator ({run_seconds / max(calls - cached, 1) * 1e3:.1f} ms each)"
    )
    for decision in dict.fromkeys(str(d) for d in denied):
        yield f"IAM: denied: {decision}"
    granted: dict[tuple[str, str, str], Grant] = {}
    used: set[tuple[str, str, str]] = set()
    for check in reported:
        for grant in check.all_grants():
            granted.setdefault((grant.function, grant.action, grant.label), grant)
        used |= {(g.function, g.action, g.label) for g in check.used_grants()}
    unused = [str(grant) for key, grant in granted.items() if key not in used]
    if unused:
        yield "IAM: granted but never used: " + "; ".join(unused)
