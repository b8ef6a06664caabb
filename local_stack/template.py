"""template.yaml as the local stack's single source: resources, routes and function environments.

::

    stack = Template.load()                                   # parses template.yaml (CloudFormation tags too)
    resources = stack.create_resources(session)               # table, queues and DLQs on the AWS endpoint
    tables = stack.create_tables(dynamodb, time_to_live=False)  # or apart: the tables on another engine,
    resources = {**tables, **stack.create_queues(sqs, tables)}  # then the queues
    stack.function_environment("AssignmentFunction", resources)   # {"DEDUP_TABLE": ..., "QUEUE_URL": ...}
    stack.logging_config("AssignmentFunction").environment()  # {"AWS_LAMBDA_LOG_FORMAT": "JSON", ...}: Lambda's own
    stack.http_routes()                                       # [("POST", "/v1/assignments", "AssignmentFunction"), ...]
    stack.sqs_sources()                                       # [SqsSource(function, queue, batch_size, window)]

Parameters take their defaults unless overridden; ``parse_overrides("A=1,B=2")`` reads ``LOCAL_PARAMETERS`` and
``stack.check_overrides(overrides)`` refuses unknown names and values that break a parameter's constraints.
Intrinsic functions used by the template (Ref, GetAtt, Sub in both forms, FindInMap, If with the Conditions section's
Equals/Not/And/Or/Condition) are resolved against the created resources. ``stack.secret_prefix`` is the effective
prefix of the workspace secrets (the ``SecretPrefix`` output).

A template with the ``AWS::LanguageExtensions`` transform is expanded first, as CloudFormation does before the SAM
transform: ``stack.document`` is the expanded template (every ``Fn::ForEach`` loop unrolled, each ``Fn::FindInMap``
of literal keys replaced by its value), ``stack.source`` the template as written::

    expand_language_extensions({"Transform": ["AWS::LanguageExtensions"], "Mappings": {"M": {"A": {"n": "a"}}},
        "Resources": {"Fn::ForEach::L": ["K", ["A"], {"${K}Queue": {"Type": "AWS::SQS::Queue",
            "Properties": {"QueueName": {"Fn::FindInMap": ["M", {"Ref": "K"}, "n"]}}}}]}})
    # {..., "Resources": {"AQueue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": "a"}}}}
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from local_stack.lambda_logging import LambdaLogging

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE_PATH = ROOT / "template.yaml"
ACCOUNT_ID = "123456789012"


class ParameterError(ValueError):
    """A parameter override names no parameter of the template, is malformed, or breaks the parameter's constraints."""


def parse_overrides(text: str) -> dict[str, str]:
    """``"Name=Value,Name=Value"`` (``LOCAL_PARAMETERS``) as a dict; ParameterError for a malformed pair.

    Spaces around names and values are ignored; a value may be empty (``AlarmEmail=``) but holds no comma.
    """
    overrides: dict[str, str] = {}
    for pair in (part.strip() for part in text.split(",")):
        if not pair:
            continue
        name, sep, value = pair.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not re.fullmatch(r"[A-Za-z0-9]+", name):
            raise ParameterError(f"{pair!r} is not Name=Value (pairs are separated by commas)")
        if name in overrides:
            raise ParameterError(f"{name} is given twice")
        overrides[name] = value
    return overrides


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]  # PyYAML has no type hints
    """YAML loader that turns short-form tags (``!Ref X``) into their long form (``{"Ref": "X"}``); libyaml's
    parser when PyYAML was built with it (ten times faster than the pure-Python one)."""


def _construct_tag(loader: _CfnLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = suffix if suffix in ("Ref", "Condition") else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct_tag)
_PARSED: dict[tuple[str, int, int], dict[str, Any]] = {}  # Template.load's parses, by path, mtime and size


def _constraint_problem(spec: dict[str, Any], value: str) -> str | None:
    """What is wrong with ``value`` for the parameter ``spec``; None when CloudFormation would take it."""
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return "is not a number"
        if "MinValue" in spec and number < float(spec["MinValue"]):
            return f"is below MinValue {spec['MinValue']}"
        if "MaxValue" in spec and number > float(spec["MaxValue"]):
            return f"is above MaxValue {spec['MaxValue']}"
    if "AllowedValues" in spec and value not in [str(v) for v in spec["AllowedValues"]]:
        return f"is not one of {', '.join(str(v) for v in spec['AllowedValues'])}"
    if "MinLength" in spec and len(value) < int(spec["MinLength"]):
        return f"is shorter than MinLength {spec['MinLength']}"
    if "MaxLength" in spec and len(value) > int(spec["MaxLength"]):
        return f"is longer than MaxLength {spec['MaxLength']}"
    if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], value):
        return f"does not match {spec['AllowedPattern']} ({spec.get('ConstraintDescription', 'AllowedPattern')})"
    return None


LANGUAGE_EXTENSIONS = "AWS::LanguageExtensions"
FOR_EACH = "Fn::ForEach::"


def expand_language_extensions(document: dict[str, Any], parameters: dict[str, str] | None = None) -> dict[str, Any]:
    """The template as the ``AWS::LanguageExtensions`` transform leaves it (a copy; the template itself if it does not
    use the transform): ``Fn::ForEach`` unrolled in Conditions, Resources and Outputs (nested loops and loops inside
    resource properties too), then every ``Fn::FindInMap`` whose map and keys are literal replaced by its value.

    A loop ``"Fn::ForEach::Name": [Identifier, Collection, {OutputKey: OutputValue}]`` repeats its fragment for each
    item of the collection (a list of strings, or a Ref to a CommaDelimitedList parameter), with ``${Identifier}``
    replaced in every key and string, ``&{Identifier}`` by the item without its non-alphanumeric characters, and
    ``{"Ref": Identifier}`` by the item. Two loops (or a loop and an entry) that yield the same key are an error, as
    is a loop that is not a three-element list or an output key that does not use its identifier.
    """
    transforms = document.get("Transform", [])
    if LANGUAGE_EXTENSIONS not in ([transforms] if isinstance(transforms, str) else transforms):
        return document
    values = {name: str(spec.get("Default", "")) for name, spec in document.get("Parameters", {}).items()} | dict(
        parameters or {}
    )
    specs: dict[str, dict[str, Any]] = document.get("Parameters", {})

    def collection(name: str, value: Any) -> list[str]:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return value
        if (
            isinstance(value, dict)
            and set(value) == {"Ref"}
            and specs.get(value["Ref"], {}).get("Type") == ("CommaDelimitedList")
        ):
            return [item.strip() for item in values[value["Ref"]].split(",")]
        raise ValueError(f"{name}: the collection must be a list of strings or a Ref to a CommaDelimitedList")

    def expand(node: Any) -> Any:
        if isinstance(node, list):
            return [expand(item) for item in node]
        if not isinstance(node, dict):
            return node
        result: dict[str, Any] = {}
        for key, value in node.items():
            if not key.startswith(FOR_EACH):
                _merge(result, key, expand(value))
                continue
            if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)):
                raise ValueError(f"{key} must be [identifier, collection, fragment]")
            identifier, items, fragment = value[0], collection(key, value[1]), value[2]
            placeholders = (f"${{{identifier}}}", f"&{{{identifier}}}")
            for output_key in fragment:
                if not output_key.startswith(FOR_EACH) and not any(p in output_key for p in placeholders):
                    raise ValueError(f"{key}: the output key {output_key!r} does not use ${{{identifier}}}")
            for item in items:
                for out_key, out_value in expand(_substitute(fragment, identifier, item)).items():
                    _merge(result, out_key, out_value)
        return result

    expanded = copy.deepcopy(document)
    for section in ("Conditions", "Resources", "Outputs"):
        if section in expanded:
            expanded[section] = _find_in_maps(expand(expanded[section]), document.get("Mappings", {}))
    return expanded


def _merge(into: dict[str, Any], key: str, value: Any) -> None:
    if key in into:
        raise ValueError(f"{key} is declared twice (by Fn::ForEach)")
    into[key] = value


def _substitute(node: Any, identifier: str, item: str) -> Any:
    if isinstance(node, str):
        return node.replace(f"${{{identifier}}}", item).replace(f"&{{{identifier}}}", re.sub(r"[^A-Za-z0-9]", "", item))
    if isinstance(node, list):
        return [_substitute(value, identifier, item) for value in node]
    if isinstance(node, dict):
        if node == {"Ref": identifier}:
            return item
        return {_substitute(key, identifier, item): _substitute(value, identifier, item) for key, value in node.items()}
    return node


def _find_in_maps(node: Any, mappings: dict[str, Any]) -> Any:
    """``Fn::FindInMap`` of literal map name and keys replaced by the value (or its DefaultValue when missing), and the
    logical id of a Ref or GetAtt spelled as an ``Fn::Sub`` without variables (``{"Ref": {"Fn::Sub": "${K}Queue"}}``,
    the loop's way of naming its resources) replaced by the plain string."""
    if isinstance(node, list):
        return [_find_in_maps(value, mappings) for value in node]
    if not isinstance(node, dict):
        return node
    node = {key: _find_in_maps(value, mappings) for key, value in node.items()}
    if set(node) == {"Ref"} and _literal_sub(node["Ref"]):
        return {"Ref": node["Ref"]["Fn::Sub"]}
    if set(node) == {"Fn::GetAtt"} and isinstance(node["Fn::GetAtt"], list) and _literal_sub(node["Fn::GetAtt"][0]):
        return {"Fn::GetAtt": [node["Fn::GetAtt"][0]["Fn::Sub"], *node["Fn::GetAtt"][1:]]}
    args = node.get("Fn::FindInMap") if len(node) == 1 else None
    if isinstance(args, list) and len(args) in (3, 4) and all(isinstance(arg, str) for arg in args[:3]):
        found = mappings.get(args[0], {}).get(args[1], {})
        if args[2] in found:
            return found[args[2]]
        if len(args) == 4 and isinstance(args[3], dict) and "DefaultValue" in args[3]:
            return args[3]["DefaultValue"]
        raise ValueError(f"Fn::FindInMap {args[:3]} finds nothing in the Mappings")
    return node


def _literal_sub(value: Any) -> bool:
    return (
        isinstance(value, dict)
        and set(value) == {"Fn::Sub"}
        and isinstance(value["Fn::Sub"], str)
        and ("${" not in value["Fn::Sub"])
    )


@dataclass(frozen=True, slots=True)
class Resource:
    """A created resource: what Ref and GetAtt answer."""

    logical_id: str
    type: str
    ref: str
    attributes: dict[str, str]


@dataclass(frozen=True, slots=True)
class SqsSource:
    """An SQS event source mapping of a function."""

    function: str
    queue: str
    batch_size: int
    batching_window_s: float
    report_batch_item_failures: bool


class Template:
    """A parsed SAM template with parameter values."""

    def __init__(
        self,
        document: dict[str, Any],
        parameters: dict[str, str] | None = None,
        stack_name: str = "segment-forwarder-local",
        region: str = "us-east-1",
    ) -> None:
        self.source = document
        self.document = expand_language_extensions(document, parameters)
        self.stack_name = stack_name
        self.region = region
        defaults = {name: str(spec.get("Default", "")) for name, spec in document.get("Parameters", {}).items()}
        self.parameters = {**defaults, **(parameters or {})}

    def check_overrides(self, overrides: dict[str, str]) -> None:
        """Raise ParameterError unless every override names a parameter and keeps its constraints (Type Number,
        MinValue, MaxValue, AllowedValues, AllowedPattern, MinLength, MaxLength), as CloudFormation would."""
        specs: dict[str, dict[str, Any]] = self.document.get("Parameters", {})
        for name, value in overrides.items():
            if name not in specs:
                raise ParameterError(f"{name} is not a parameter of the template (known: {', '.join(sorted(specs))})")
            spec = specs[name]
            problem = _constraint_problem(spec, value)
            if problem:
                raise ParameterError(f"{name}={value!r} {problem}")

    @classmethod
    def load(cls, path: Path = TEMPLATE_PATH, **kwargs: Any) -> Template:
        """Parse ``template.yaml`` (or another SAM template); a file parsed before and unchanged since is not
        parsed again (each Template gets its own copy of the document)."""
        stat = path.stat()
        key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
        if key not in _PARSED:
            with path.open(encoding="utf-8") as handle:
                _PARSED[key] = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
        return cls(copy.deepcopy(_PARSED[key]), **kwargs)

    @property
    def resources(self) -> dict[str, dict[str, Any]]:
        """The template's Resources section."""
        resources: dict[str, dict[str, Any]] = self.document["Resources"]
        return resources

    def of_type(self, resource_type: str) -> dict[str, dict[str, Any]]:
        """Resources of one CloudFormation/SAM type, by logical id."""
        return {name: spec for name, spec in self.resources.items() if spec["Type"] == resource_type}

    # -- intrinsic functions ---------------------------------------------------------------------------------

    def resolve(self, value: Any, created: dict[str, Resource]) -> Any:
        """Resolve Ref / GetAtt / Sub / If / FindInMap against parameters, conditions and created resources."""
        if isinstance(value, list):
            return [self.resolve(v, created) for v in value]
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            return self._ref(value["Ref"], created)
        if "Fn::GetAtt" in value:
            logical_id, attribute = value["Fn::GetAtt"]
            return created[logical_id].attributes[attribute]
        if "Fn::Sub" in value:
            return self._substitute(value["Fn::Sub"], created)
        if "Fn::If" in value:
            condition, when_true, when_false = value["Fn::If"]
            return self.resolve(when_true if self.condition(condition) else when_false, created)
        if "Fn::FindInMap" in value:
            name, first, second = (str(self.resolve(arg, created)) for arg in value["Fn::FindInMap"][:3])
            return self.document["Mappings"][name][first][second]
        return {k: self.resolve(v, created) for k, v in value.items()}

    def condition(self, name: str) -> bool:
        """The value of a condition of the Conditions section."""
        return self._evaluate(self.document.get("Conditions", {})[name])

    def _evaluate(self, expression: Any) -> bool:
        if isinstance(expression, dict) and len(expression) == 1:
            ((function, args),) = expression.items()
            if function == "Condition":
                return self.condition(args)
            if function == "Fn::Equals":
                left, right = (str(self.resolve(arg, {})) for arg in args)
                return left == right
            if function == "Fn::Not":
                return not self._evaluate(args[0])
            if function == "Fn::And":
                return all(self._evaluate(arg) for arg in args)
            if function == "Fn::Or":
                return any(self._evaluate(arg) for arg in args)
        raise ValueError(f"unsupported condition expression: {expression!r}")

    def _substitute(self, spec: str | list[Any], created: dict[str, Resource]) -> str:
        text, variables = (spec, {}) if isinstance(spec, str) else (spec[0], spec[1])
        values = {name: str(self.resolve(value, created)) for name, value in variables.items()}

        def replace(found: re.Match[str]) -> str:
            name = found.group(1)
            return values[name] if name in values else self._sub(name, created)

        return re.sub(r"\$\{([^}]+)\}", replace, text)

    @property
    def secret_prefix(self) -> str:
        """The effective prefix of the workspace secrets (``<prefix>/<workspace_id>``): the ``SecretPrefix`` output."""
        return str(self.resolve(self.document["Outputs"]["SecretPrefix"]["Value"], {}))

    def _pseudo(self) -> dict[str, str]:
        return {
            "AWS::Region": self.region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::StackName": self.stack_name,
            "AWS::URLSuffix": "amazonaws.com",
        }

    def _ref(self, name: str, created: dict[str, Resource]) -> str:
        if name in self.parameters:
            return self.parameters[name]
        if name in self._pseudo():
            return self._pseudo()[name]
        return created[name].ref

    def _sub(self, expression: str, created: dict[str, Resource]) -> str:
        if "." in expression and expression.split(".", 1)[0] in created:
            logical_id, attribute = expression.split(".", 1)
            return created[logical_id].attributes[attribute]
        try:
            return self._ref(expression, created)
        except KeyError:
            return f"{expression}"

    # -- resources --------------------------------------------------------------------------------------------

    def create_resources(self, session: Any) -> dict[str, Resource]:
        """Create the template's DynamoDB tables and SQS queues (DLQs first) on the session's endpoint."""
        created = self.create_tables(session.client("dynamodb"))
        return {**created, **self.create_queues(session.client("sqs"), created)}

    def create_tables(self, client: Any, *, time_to_live: bool = True) -> dict[str, Resource]:
        """Create the template's DynamoDB tables with a DynamoDB client; ``time_to_live=False`` leaves out their TTL
        settings (for an engine without UpdateTimeToLive)."""
        created: dict[str, Resource] = {}
        for logical_id, spec in self.of_type("AWS::DynamoDB::Table").items():
            created[logical_id] = self._create_table(client, logical_id, spec, created, time_to_live)
        return created

    def create_queues(self, client: Any, created: dict[str, Resource]) -> dict[str, Resource]:
        """Create the template's SQS queues with an SQS client, dead-letter queues first (a redrive policy needs its
        target's ARN); ``created``: the resources made so far."""
        queues = self.of_type("AWS::SQS::Queue")
        order = sorted(queues, key=lambda name: "RedrivePolicy" in queues[name].get("Properties", {}))
        made: dict[str, Resource] = {}
        for logical_id in order:
            made[logical_id] = self._create_queue(client, logical_id, queues[logical_id], {**created, **made})
        return made

    def _physical_name(self, logical_id: str) -> str:
        return f"{self.stack_name}-{logical_id}"

    def _create_table(
        self, client: Any, logical_id: str, spec: dict[str, Any], created: dict[str, Resource], time_to_live: bool
    ) -> Resource:
        props = self.resolve(spec["Properties"], created)
        name = props.get("TableName") or self._physical_name(logical_id)
        client.create_table(
            TableName=name,
            AttributeDefinitions=props["AttributeDefinitions"],
            KeySchema=props["KeySchema"],
            BillingMode=props.get("BillingMode", "PAY_PER_REQUEST"),
        )
        ttl = props.get("TimeToLiveSpecification")
        if ttl and time_to_live:
            client.update_time_to_live(
                TableName=name,
                TimeToLiveSpecification={"AttributeName": ttl["AttributeName"], "Enabled": bool(ttl["Enabled"])},
            )
        arn = f"arn:aws:dynamodb:{self.region}:{ACCOUNT_ID}:table/{name}"
        return Resource(logical_id, spec["Type"], name, {"Arn": arn})

    def _create_queue(
        self, client: Any, logical_id: str, spec: dict[str, Any], created: dict[str, Resource]
    ) -> Resource:
        props = self.resolve(spec.get("Properties", {}), created)
        name = props.get("QueueName") or self._physical_name(logical_id)
        attributes: dict[str, str] = {}
        for key in (
            "VisibilityTimeout",
            "MessageRetentionPeriod",
            "DelaySeconds",
            "ReceiveMessageWaitTimeSeconds",
            "MaximumMessageSize",
        ):
            if key in props:
                attributes[key] = str(props[key])
        if "RedrivePolicy" in props:
            policy = props["RedrivePolicy"]
            attributes["RedrivePolicy"] = json.dumps(
                {
                    "deadLetterTargetArn": policy["deadLetterTargetArn"],
                    "maxReceiveCount": int(policy["maxReceiveCount"]),
                }
            )
        url = client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
        arn = client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return Resource(logical_id, spec["Type"], url, {"Arn": arn, "QueueName": name, "QueueUrl": url})

    # -- functions --------------------------------------------------------------------------------------------

    def functions(self) -> dict[str, dict[str, Any]]:
        """Serverless functions by logical id."""
        return self.of_type("AWS::Serverless::Function")

    def function_environment(self, function: str, created: dict[str, Resource]) -> dict[str, str]:
        """The function's environment: Globals merged with its own variables, resolved."""
        global_vars = self.document.get("Globals", {}).get("Function", {}).get("Environment", {}).get("Variables", {})
        own = self.functions()[function]["Properties"].get("Environment", {}).get("Variables", {})
        merged = {**global_vars, **own}
        return {name: str(self.resolve(value, created)) for name, value in merged.items()}

    def logging_config(self, function: str) -> LambdaLogging:
        """The function's LoggingConfig (Globals merged with its own, resolved): what Lambda does with its logs,
        and the variables it sets for the runtime from it (``.environment()``, not part of ``Environment``)."""
        global_config = self.document.get("Globals", {}).get("Function", {}).get("LoggingConfig", {})
        own = self.functions()[function]["Properties"].get("LoggingConfig", {})
        config = {name: str(self.resolve(value, {})) for name, value in {**global_config, **own}.items()}
        return LambdaLogging(
            log_format=config.get("LogFormat", "Text"),
            application_level=config.get("ApplicationLogLevel", "INFO"),
            system_level=config.get("SystemLogLevel", "INFO"),
        )

    def function_property(self, function: str, name: str) -> Any:
        """A function property, falling back to Globals (Timeout, Handler, CodeUri, ...)."""
        own = self.functions()[function]["Properties"]
        if name in own:
            return own[name]
        return self.document.get("Globals", {}).get("Function", {}).get(name)

    def http_routes(self) -> list[tuple[str, str, str]]:
        """(method, path, function logical id) of every HttpApi event."""
        routes = []
        for function, spec in self.functions().items():
            for event in spec["Properties"].get("Events", {}).values():
                if event["Type"] == "HttpApi":
                    props = event["Properties"]
                    routes.append((props["Method"].upper(), props["Path"], function))
        return routes

    def sqs_sources(self) -> list[SqsSource]:
        """SQS event source mappings (queue logical id, batch size, window, partial batch failures)."""
        sources = []
        for function, spec in self.functions().items():
            for event in spec["Properties"].get("Events", {}).values():
                if event["Type"] != "SQS":
                    continue
                props = event["Properties"]
                queue = props["Queue"]["Fn::GetAtt"][0]
                sources.append(
                    SqsSource(
                        function=function,
                        queue=queue,
                        batch_size=int(self.resolve(props.get("BatchSize", 10), {})),
                        batching_window_s=float(self.resolve(props.get("MaximumBatchingWindowInSeconds", 0), {})),
                        report_batch_item_failures="ReportBatchItemFailures" in props.get("FunctionResponseTypes", []),
                    )
                )
        return sources

    # -- ingest kinds (functions/<kind>/) and their queues ----------------------------------------------------

    def kind_of(self, function: str) -> str:
        """The kind a function handles: the last part of its CodeUri (``functions/assignment/`` -> ``assignment``)."""
        return str(self.function_property(function, "CodeUri")).strip("/").split("/")[-1]

    def kinds(self) -> list[str]:
        """Kinds of the functions fed by a queue (identify, assignment, conversion)."""
        return [self.kind_of(source.function) for source in self.sqs_sources()]

    def queues_of(self, kind: str) -> tuple[str, str]:
        """(source queue, dead-letter queue) logical ids of a kind's function; KeyError when it has none."""
        for source in self.sqs_sources():
            if self.kind_of(source.function) == kind:
                policy = self.resources[source.queue]["Properties"]["RedrivePolicy"]
                return source.queue, policy["deadLetterTargetArn"]["Fn::GetAtt"][0]
        raise KeyError(kind)

    def physical_name(self, logical_id: str) -> str:
        """The name a resource gets on the local stack (``<stack name>-<logical id>``)."""
        return self._physical_name(logical_id)


if __name__ == "__main__":  # python -m local_stack.template: template.yaml after AWS::LanguageExtensions, as JSON
    json.dump(Template.load().document, sys.stdout, indent=1)
