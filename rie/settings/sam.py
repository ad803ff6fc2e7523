"""The functions of a SAM template (`rie --template template.yaml`), as settings for `project`.

Reads every `AWS::Serverless::Function`: Handler, Runtime, CodeUri, Timeout, MemorySize,
Description, Environment.Variables, Layers that are local (paths or `!Ref` to an
`AWS::Serverless::LayerVersion` with a local ContentUri), ReservedConcurrentExecutions, `Api` /
`HttpApi` events as routes and the HTTP front's format, and `FunctionUrlConfig`, over
`Globals.Function`. CloudFormation's short tags (`!Ref`, `!Sub`,
`!GetAtt`, ...) all parse; the intrinsic functions are evaluated as far as a local run can:
parameters take their defaults, pseudo parameters (AWS::Region, ...) the emulator's values,
conditions are evaluated, and what only a deployed stack knows (`!GetAtt`, `!ImportValue`) becomes
a readable placeholder string instead of an error.

YAML needs a parser: PyYAML, imported here only, so it costs nothing without --template.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from rie.settings.config import Config
from rie.settings.errors import ConfigError, shown
from rie.settings.package import is_zip

FUNCTION_TYPE = "AWS::Serverless::Function"
LAYER_TYPE = "AWS::Serverless::LayerVersion"
_SUB_VAR = re.compile(r"\$\{([^}]*)\}")
# CloudFormation's short forms and the long ones they stand for
_SHORT_TAGS = {
    "Ref": "Ref",
    "Condition": "Condition",
    **{
        name: f"Fn::{name}"
        for name in (
            "Sub",
            "GetAtt",
            "Join",
            "If",
            "Select",
            "FindInMap",
            "ImportValue",
            "Base64",
            "Split",
            "Equals",
            "Not",
            "And",
            "Or",
            "GetAZs",
            "Cidr",
            "Length",
            "ToJsonString",
            "Transform",
        )
    },
}


# a template is at most 1 MB (CloudFormation's limit for a template in S3)
MAX_TEMPLATE_BYTES = 1024 * 1024
# nodes the intrinsic functions may visit in one template: YAML aliases can make a small file
# stand for a tree of billions (an alias bomb); real templates are far below this
MAX_NODES = 200_000


def mapping(value: Any, what: str) -> Mapping[str, Any]:
    """`value` if it is a mapping (or absent: empty), else the ConfigError saying what it is."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a mapping, got {type(value).__name__} {_short(value)}")
    return value


_short = shown


class _NoValue:
    """AWS::NoValue: the property it stands in is removed."""


NO_VALUE = _NoValue()


def _loader() -> type:
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            "--template needs PyYAML to read YAML: pip install 'pyrie[sam]' (or pip install pyyaml)"
        ) from None

    class Loader(yaml.SafeLoader):
        pass

    def construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> object:
        name = _SHORT_TAGS.get(suffix)
        if name is None:
            raise yaml.constructor.ConstructorError(
                None, None, f"unknown CloudFormation tag !{suffix}", node.start_mark
            )
        value: object
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "Fn::GetAtt" and isinstance(value, str):
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        elif isinstance(node, yaml.MappingNode):
            value = loader.construct_mapping(node, deep=True)
        else:
            raise yaml.constructor.ConstructorError(None, None, "unexpected node", node.start_mark)
        return {name: value}

    Loader.add_multi_constructor("!", construct)
    # CloudFormation keeps timestamps and dates (e.g. AWSTemplateFormatVersion) as strings
    Loader.yaml_implicit_resolvers = {
        key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
        for key, resolvers in Loader.yaml_implicit_resolvers.items()
    }
    return Loader


def parse(text: str, origin: str) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.load(text, Loader=_loader())  # a SafeLoader: no arbitrary objects
    except yaml.YAMLError as exc:
        raise ConfigError(f"{origin}: not a valid template: {_one_line(exc)}") from None
    except RecursionError:
        raise ConfigError(f"{origin}: not a valid template: nested too deeply") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{origin}: a template is a YAML mapping")
    return doc


def _one_line(exc: Exception) -> str:
    """PyYAML's message is several lines (with the offending text drawn): its problem and place."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem is None:
        return " ".join(str(exc).split())
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{' '.join(str(problem).split())}{where}"


class Resolver:
    """Evaluates intrinsic functions with what a local run knows."""

    def __init__(
        self,
        doc: Mapping[str, Any],
        base: Config,
        stack_name: str,
        overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.parameters: dict[str, Any] = {}
        self.without_value: set[str] = set()  # parameters with neither a Default nor an override
        self.used_without_value: list[str] = []
        overrides = overrides or {}
        declared = mapping(doc.get("Parameters"), "Parameters")
        unknown = set(overrides) - set(declared)
        if unknown:
            raise ConfigError(f"--parameter-overrides: no parameter {', '.join(sorted(unknown))}")
        for name, spec in declared.items():
            spec = spec if isinstance(spec, dict) else {}
            if name in overrides:
                value: Any = overrides[name]
            elif "Default" in spec:
                value = spec["Default"]
            else:
                value = ""
                self.without_value.add(name)
            if spec.get("Type") == "CommaDelimitedList" and isinstance(value, str):
                value = [part.strip() for part in value.split(",")]
            self.parameters[name] = value
        self.pseudo: dict[str, Any] = {
            "AWS::Region": base.region,
            "AWS::AccountId": base.account_id,
            "AWS::StackName": stack_name,
            "AWS::StackId": f"arn:aws:cloudformation:{base.region}:{base.account_id}:"
            f"stack/{stack_name}/00000000-0000-0000-0000-000000000000",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::NotificationARNs": [],
            "AWS::NoValue": NO_VALUE,
        }
        self.resources = mapping(doc.get("Resources"), "Resources")
        self.mappings = mapping(doc.get("Mappings"), "Mappings")
        self.conditions = mapping(doc.get("Conditions"), "Conditions")
        self._evaluating: list[str] = []  # conditions being evaluated, to find a cycle
        self._nodes_left = MAX_NODES
        self.region = base.region
        self._functions: dict[str, Callable[[Any], Any]] = {
            "Ref": self._ref,
            "Condition": self._condition,
            "Fn::Sub": self._sub,
            "Fn::GetAtt": self._get_att,
            "Fn::Join": lambda v: self._text(
                str(self.value(v[0])).join(str(x) for x in self._list(self.value(v[1])))
            ),
            "Fn::If": lambda v: self.value(v[1] if self._condition(v[0]) else v[2]),
            "Fn::Select": lambda v: self._list(self.value(v[1]))[int(self.value(v[0]))],
            "Fn::Split": lambda v: str(self.value(v[1])).split(str(self.value(v[0]))),
            "Fn::FindInMap": self._find_in_map,
            "Fn::ImportValue": lambda v: f"<import {self.value(v)}>",
            "Fn::Base64": lambda v: base64.b64encode(str(self.value(v)).encode()).decode(),
            "Fn::Equals": lambda v: self.value(v[0]) == self.value(v[1]),
            "Fn::Not": lambda v: not self.value(v[0]),
            "Fn::And": lambda v: all(self.value(x) for x in v),
            "Fn::Or": lambda v: any(self.value(x) for x in v),
            "Fn::GetAZs": lambda v: [f"{self.value(v) or self.region}{z}" for z in "abc"],
            "Fn::Cidr": lambda v: [],
            "Fn::Length": lambda v: len(self._list(self.value(v))),
            "Fn::ToJsonString": lambda v: self._text(__import__("json").dumps(self.value(v))),
            "Fn::Transform": lambda v: None,
        }

    def value(self, node: Any) -> Any:
        """`node` with every intrinsic function in it evaluated; AWS::NoValue drops keys."""
        self._nodes_left -= 1
        if self._nodes_left < 0:
            raise ConfigError(
                f"the template stands for more than {MAX_NODES} values once its YAML aliases "
                "are expanded (an alias bomb?)"
            )
        if isinstance(node, dict):
            if len(node) == 1:
                ((key, arg),) = node.items()
                fn = self._functions.get(key)
                if fn is not None:
                    try:
                        return fn(arg)
                    except ConfigError:
                        raise
                    except (IndexError, KeyError, TypeError, ValueError) as exc:
                        raise ConfigError(
                            f"cannot evaluate {key}: {_short(arg)} ({str(exc)[:200]})"
                        ) from None
            out = {}
            for key, item in node.items():
                resolved = self.value(item)
                if resolved is not NO_VALUE:
                    out[key] = resolved
            return out
        if isinstance(node, list):
            return [x for x in (self.value(item) for item in node) if x is not NO_VALUE]
        return node

    def _text(self, text: str) -> str:
        """A string an intrinsic function made, refused past the size of a whole template (one
        small string joined with itself through aliases grows tenfold a level)."""
        if len(text) > MAX_TEMPLATE_BYTES:
            raise ConfigError(
                f"an intrinsic function makes a string of more than {MAX_TEMPLATE_BYTES} characters"
            )
        return text

    def _list(self, value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise TypeError(f"expected a list, got {_short(value)}")
        return value

    def _ref(self, name: Any) -> Any:
        name = self.value(name)
        if name in self.parameters:
            if name in self.without_value and name not in self.used_without_value:
                self.used_without_value.append(name)
            return self.parameters[name]
        if name in self.pseudo:
            return self.pseudo[name]
        resource = self.resources.get(name)
        if isinstance(resource, dict):
            props = resource.get("Properties") or {}
            if resource.get("Type") == FUNCTION_TYPE and isinstance(props.get("FunctionName"), str):
                return props["FunctionName"]
            return name
        raise KeyError(f"no parameter or resource named {_short(name)}")

    def _condition(self, name: Any) -> bool:
        if isinstance(name, str) and name in self.conditions:
            if name in self._evaluating:
                cycle = " -> ".join([*self._evaluating[self._evaluating.index(name) :], name])
                raise ConfigError(f"condition {name} depends on itself ({cycle})")
            self._evaluating.append(name)
            try:
                return bool(self.value(self.conditions[name]))
            finally:
                self._evaluating.pop()
        return bool(self.value(name))

    def _sub(self, arg: Any) -> str:
        text, variables = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))

        def one(m: re.Match[str]) -> str:
            ref = m.group(1)
            if ref.startswith("!"):
                return "${" + ref[1:] + "}"  # ${!Literal} is written as ${Literal}
            if ref in variables:
                return str(variables[ref])
            if "." in ref and ref.split(".", 1)[0] in self.resources:
                return str(self._get_att(ref.split(".", 1)))
            return str(self._ref(ref))

        return _SUB_VAR.sub(one, str(text))

    def _get_att(self, arg: Any) -> str:
        resource, attribute = (self.value(x) for x in arg)
        return f"<{resource}.{attribute}>"  # known only once deployed

    def _find_in_map(self, arg: Any) -> Any:
        name, first, second = (self.value(x) for x in arg)
        return self.mappings[name][first][second]


def read(
    path: str,
    base: Config,
    overrides: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Settings (as project.KEYS) of every function of the template at `path`."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_TEMPLATE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"--template: cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise ConfigError(f"--template {path}: larger than CloudFormation's 1 MB for a template")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"--template {path}: not UTF-8 text ({exc.reason} at byte {exc.start})"
        ) from None
    here = os.path.dirname(os.path.abspath(path))
    try:
        return functions_of(parse(text, path), here, base, path, overrides, warnings)
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(path) else f"{path}: {message}") from None
    except (AttributeError, TypeError, KeyError, IndexError, ValueError, RecursionError) as exc:
        # a shape this reader did not foresee: still one line naming the file
        kind = (
            "nested too deeply"
            if isinstance(exc, RecursionError)
            else f"{type(exc).__name__}: {exc}"
        )
        raise ConfigError(f"{path}: cannot read the template ({_short(kind)})") from None


def parse_overrides(values: Sequence[str]) -> dict[str, str]:
    """SAM's `--parameter-overrides` forms: `Key=Value` pairs separated by spaces (quotes keep a
    value's spaces), or `ParameterKey=Key,ParameterValue=Value`."""
    out: dict[str, str] = {}
    for text in values:
        for pair in shlex.split(text):
            if pair.startswith("ParameterKey="):
                key_part, _, value_part = pair.partition(",")
                key = key_part.removeprefix("ParameterKey=")
                if not value_part.startswith("ParameterValue="):
                    raise ConfigError(
                        f"--parameter-overrides: expected ParameterValue= in {pair!r}"
                    )
                out[key] = value_part.removeprefix("ParameterValue=")
                continue
            key, sep, value = pair.partition("=")
            if not sep or not key:
                raise ConfigError(f"--parameter-overrides: expected KEY=VALUE, got {pair!r}")
            out[key] = value
    return out


def functions_of(
    doc: Mapping[str, Any],
    here: str,
    base: Config,
    origin: str,
    overrides: Mapping[str, str] | None = None,
    warnings: list[str] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    stack = os.path.basename(here) or "rie-local"
    resolver = Resolver(doc, base, stack, overrides)
    globals_ = mapping(mapping(doc.get("Globals"), "Globals").get("Function"), "Globals.Function")
    out = []
    notes: list[str] = [] if warnings is None else warnings
    for logical_id, resource in resolver.resources.items():
        if not isinstance(resource, dict) or resource.get("Type") != FUNCTION_TYPE:
            continue
        where = f"{origin}: {logical_id}"
        try:
            if "Condition" in resource and not resolver._condition(resource["Condition"]):
                continue
            props = merge_globals(globals_, mapping(resource.get("Properties"), "Properties"))
            props = resolver.value(props)
            out.append(settings_of(logical_id, props, resolver, here, where, notes))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
    if warnings is not None:
        for name in resolver.used_without_value:
            warnings.append(
                f"{origin}: parameter {name} has no Default and no value: it is empty here "
                f"(give --parameter-overrides {name}=VALUE)"
            )
    return out


def merge_globals(globals_: Mapping[str, Any], props: Mapping[str, Any]) -> dict[str, Any]:
    """SAM's rules: the function's scalars win, maps merge (the function's keys win), lists add."""
    merged = dict(globals_)
    for key, value in props.items():
        if key in merged and isinstance(merged[key], dict) and isinstance(value, dict):
            merged[key] = merge_globals(merged[key], value)
        elif key in merged and isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = merged[key] + value
        else:
            merged[key] = value
    return merged


def settings_of(
    logical_id: str,
    props: Mapping[str, Any],
    resolver: Resolver,
    here: str,
    where: str,
    warnings: list[str] | None = None,
) -> tuple[str, dict[str, Any]]:
    if props.get("PackageType") == "Image":
        raise ConfigError(
            "an Image function: run its image instead (with pyrie's `bootstrap` as entrypoint)"
        )
    if "InlineCode" in props:
        raise ConfigError("InlineCode is not supported: put the code in a directory (CodeUri)")
    code = props.get("CodeUri", ".")
    if not isinstance(code, str) or code.startswith("s3://"):
        raise ConfigError(f"CodeUri {_short(code)}: only a local directory or .zip can run here")
    code = os.path.normpath(os.path.join(here, code))
    settings: dict[str, Any] = {}
    if os.path.isfile(code) and is_zip(code):
        settings["zip"] = code
    elif os.path.isdir(code):
        settings["task_root"] = code
    else:
        raise ConfigError(f"CodeUri {code} is neither a directory nor a .zip")
    for key, prop in (
        ("handler", "Handler"),
        ("runtime", "Runtime"),
        ("description", "Description"),
        ("timeout", "Timeout"),
        ("memory", "MemorySize"),
        ("max_concurrency", "ReservedConcurrentExecutions"),
    ):
        if prop in props:
            settings[key] = props[prop]
    storage = props.get("EphemeralStorage")
    if isinstance(storage, dict) and "Size" in storage:
        settings["ephemeral_storage"] = storage["Size"]
    for key in ("timeout", "memory", "max_concurrency", "ephemeral_storage"):
        value = settings.get(key)
        if isinstance(value, str) and value.isascii() and value.isdigit():
            settings[key] = int(settings[key])  # a parameter's default is often a string
    variables = mapping(
        mapping(props.get("Environment"), "Environment").get("Variables"), "Environment.Variables"
    )
    if variables:
        settings["env"] = variables
    layers = [layer_path(layer, resolver, here) for layer in props.get("Layers") or []]
    if any(layer is not None for layer in layers):
        settings["layers"] = [layer for layer in layers if layer is not None]
    events = mapping(props.get("Events"), "Events")
    routes = [route for event in events.values() if (route := route_of(event))]
    if routes:
        settings["routes"] = routes
    settings.update(front_of(props, where, [] if warnings is None else warnings))
    name = props.get("FunctionName") or logical_id
    return str(name), settings


def front_of(props: Mapping[str, Any], where: str, warnings: list[str]) -> dict[str, Any]:
    """The HTTP front a function sits behind, as `sam local start-api` and AWS would put it: `Api`
    events a REST API (payload 1.0), `HttpApi` events an HTTP API (payload 2.0, unless the event's
    PayloadFormatVersion is "1.0"; their TimeoutInMillis the integration timeout), else a
    `FunctionUrlConfig` a Function URL (its InvokeMode and Cors). The front's settings are one per function here, so the first API event decides."""
    kinds = []
    timeouts = []
    for event in mapping(props.get("Events"), "Events").values():
        if isinstance(event, dict) and event.get("Type") in ("Api", "HttpApi"):
            event_props = mapping(event.get("Properties"), "an event's Properties")
            version = str(event_props.get("PayloadFormatVersion", "2.0"))
            kinds.append(
                "rest-api" if event["Type"] == "Api" or version.startswith("1") else "http-api"
            )
            timeout = event_props.get("TimeoutInMillis")
            if (
                isinstance(timeout, int | str)
                and str(timeout).isascii()
                and str(timeout).isdigit()
                and int(timeout) > 0
            ):
                timeouts.append(int(timeout) / 1000)
    url = props.get("FunctionUrlConfig")
    if kinds:
        if len(set(kinds)) > 1:
            warnings.append(
                f"{where}: both Api (payload 1.0) and HttpApi (2.0) events: every route of "
                f"the function gets {kinds[0]} events here"
            )
        if isinstance(url, dict):
            warnings.append(f"{where}: FunctionUrlConfig is ignored beside its Api/HttpApi events")
        front: dict[str, Any] = {"http_format": kinds[0]}
        if timeouts:
            # the events' integration timeout (SAM's TimeoutInMillis); the longest if they differ
            front["http_integration_timeout"] = max(timeouts)
        return front
    if not isinstance(url, dict):
        return {}
    out: dict[str, Any] = {"http_format": "function-url"}
    if "InvokeMode" in url:
        out["http_invoke_mode"] = url["InvokeMode"]
    cors = url.get("Cors")
    if isinstance(cors, dict):
        for key, prop in (
            ("cors_allow_origins", "AllowOrigins"),
            ("cors_allow_methods", "AllowMethods"),
            ("cors_allow_headers", "AllowHeaders"),
            ("cors_expose_headers", "ExposeHeaders"),
            ("cors_max_age", "MaxAge"),
            ("cors_allow_credentials", "AllowCredentials"),
        ):
            if prop in cors:
                out[key] = cors[prop]
        max_age = out.get("cors_max_age")
        if isinstance(max_age, str) and max_age.isascii() and max_age.isdigit():
            out["cors_max_age"] = int(out["cors_max_age"])
        if isinstance(out.get("cors_allow_credentials"), str):
            out["cors_allow_credentials"] = out["cors_allow_credentials"].lower() == "true"
    return out


def layer_path(layer: Any, resolver: Resolver, here: str) -> str | None:
    """A local directory for a layer: a path, or the ContentUri of a LayerVersion in the
    template; None for a published layer's ARN (not available locally)."""
    if isinstance(layer, str) and layer.startswith("arn:"):
        return None
    if isinstance(layer, str) and layer in resolver.resources:
        resource = resolver.resources[layer]
        if resource.get("Type") == LAYER_TYPE:
            content = (resource.get("Properties") or {}).get("ContentUri")
            if isinstance(content, str) and not content.startswith("s3://"):
                return os.path.normpath(os.path.join(here, content))
        return None
    if isinstance(layer, str):
        return os.path.normpath(os.path.join(here, layer))
    return None


def route_of(event: Any) -> str | None:
    """`METHOD /path` of an Api or HttpApi event (`ANY` for any method); None for other events.
    An HttpApi event without a path is the API's catch-all route."""
    if not isinstance(event, dict) or event.get("Type") not in ("Api", "HttpApi"):
        return None
    props = event.get("Properties") or {}
    path, method = props.get("Path"), props.get("Method")
    if path is None and event["Type"] == "HttpApi":
        return "ANY /{proxy+}"
    if not isinstance(path, str):
        return None
    method = (
        "ANY"
        if not method or str(method).lower() in ("any", "x-amazon-apigateway-any-method")
        else str(method).upper()
    )
    return f"{method} {path}"
