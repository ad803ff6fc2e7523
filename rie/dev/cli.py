"""`rie event` (sample events) and `rie invoke` (a client for a running rie).

Standard library only (http.client, argparse): they start in the time Python does, never import
aiohttp or the emulator, and work where neither boto3 nor the AWS CLI is installed.

`rie invoke` exit codes: 0 the function succeeded (or an Event / DryRun was accepted); 1 the
function failed (`X-Amz-Function-Error`: its error JSON is still printed on stdout); 2 bad usage
or input; 3 the Invoke API refused the call (unknown function, throttled, payload too large, ...);
4 no rie to talk to.
"""

from __future__ import annotations

import argparse
import base64
import http.client
import json
import math
import os
import sys
from typing import Any
from urllib.parse import quote, urlsplit

from rie.model import samples

DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
EXIT_FUNCTION_ERROR = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3
EXIT_UNREACHABLE = 4


def main(argv: list[str]) -> int:
    if argv[0] == "tune":
        from rie.dev import tune  # starts ries of its own: only for `rie tune`

        return tune.main(argv[1:])
    if argv[0] == "event":
        return event_main(argv[1:])
    return invoke_main(argv[1:])


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    print(f"rie: {message}", file=sys.stderr)
    return code


def _sample(name: str, assignments: list[str]) -> dict[str, Any]:
    event = samples.build(name)
    for assignment in assignments:
        samples.override(event, assignment)
    return event


def event_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rie event",
        description="Print a ready event, as the AWS service would send it (fresh ids and times).",
        epilog="`rie event list` shows the events.",
    )
    p.add_argument("name", help="an event name, or `list`")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="change a field, e.g. --set Records.0.s3.bucket.name=my-bucket (repeatable)",
    )
    a = p.parse_args(argv)
    if a.name == "list":
        width = max(len(name) for name in samples.SAMPLES)
        for name, what in samples.describe():
            print(f"{name:<{width}}  {what}")
        return 0
    try:
        event = _sample(a.name, a.set)
    except (KeyError, ValueError) as exc:
        return _fail(str(exc.args[0]))
    print(json.dumps(event, indent=2))
    return 0


def invoke_main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rie invoke",
        description="Invoke a function of a running rie and print its result on stdout.",
        epilog="Exit status: 0 success, 1 function error, 2 usage, 3 refused by the Invoke API "
        "(unknown function, throttled, ...), 4 no rie at the endpoint.",
    )
    p.add_argument(
        "function", nargs="?", default="function", help="name or ARN (default: the one function)"
    )
    source = p.add_mutually_exclusive_group()
    source.add_argument("--event", metavar="FILE", help="the event: a JSON file, or - for stdin")
    source.add_argument("--sample", metavar="NAME", help="a sample event (see `rie event list`)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PATH=VALUE",
        help="change a field of the event (repeatable)",
    )
    p.add_argument(
        "--endpoint",
        default=os.environ.get("RIE_ENDPOINT", DEFAULT_ENDPOINT),
        help=f"the Invoke API (default RIE_ENDPOINT or {DEFAULT_ENDPOINT})",
    )
    p.add_argument(
        "--type", choices=("RequestResponse", "Event", "DryRun"), default="RequestResponse"
    )
    p.add_argument(
        "--tail", action="store_true", help="print the invocation's log (last 4 KB) on stderr"
    )
    p.add_argument("--timeout", type=float, default=905.0, help="seconds to wait for the answer")
    a = p.parse_args(argv)
    if not (math.isfinite(a.timeout) and a.timeout > 0):
        return _fail(f"--timeout must be a finite number of seconds above 0, got {a.timeout}")

    try:
        payload = _payload(a)
    except (OSError, KeyError, ValueError) as exc:
        return _fail(str(exc.args[-1] if isinstance(exc, OSError) else exc.args[0]))
    url = urlsplit(a.endpoint if "://" in a.endpoint else f"http://{a.endpoint}")
    if url.scheme not in ("http", "https") or not url.hostname:
        return _fail(f"--endpoint {a.endpoint!r}: expected http://HOST:PORT")
    conn_class = (
        http.client.HTTPSConnection if url.scheme == "https" else http.client.HTTPConnection
    )
    conn = conn_class(url.hostname, url.port, timeout=a.timeout)
    headers = {"Content-Type": "application/json", "X-Amz-Invocation-Type": a.type}
    if a.tail:
        headers["X-Amz-Log-Type"] = "Tail"
    path = f"{url.path.rstrip('/')}/2015-03-31/functions/{quote(a.function, safe='')}/invocations"
    try:
        conn.request("POST", path, body=payload, headers=headers)
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return _fail(f"cannot reach rie at {a.endpoint}: {exc} (is it running?)", EXIT_UNREACHABLE)
    finally:
        conn.close()
    hint = ""
    if response.getheader("X-Amzn-ErrorType") == "ResourceNotFoundException":
        names = _function_names(conn_class, url.hostname, url.port, url.path, a.timeout)
        if names:
            hint = f" (this rie serves: {', '.join(names)})"
    elif response.status == 404 and not response.getheader("X-Amzn-ErrorType"):
        # every refusal of rie's Invoke API names its type; its HTTP front's 404 does not
        hint = (
            f" (is {a.endpoint} rie's HTTP front? `rie invoke` needs the Invoke API's address, "
            "printed at start-up)"
        )
    return _report(response, body, a.tail, hint)


def _function_names(
    conn_class: type[http.client.HTTPConnection],
    host: str,
    port: int | None,
    base: str,
    timeout: float,
) -> list[str]:
    """The names a rie serves (ListFunctions), to help after an unknown name; [] if unknown."""
    conn = conn_class(host, port, timeout=timeout)
    try:
        conn.request("GET", f"{base.rstrip('/')}/2015-03-31/functions/")
        response = conn.getresponse()
        doc = json.loads(response.read()) if response.status == 200 else {}
        return [str(f["FunctionName"]) for f in doc.get("Functions", [])]
    except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError, AttributeError):
        return []
    finally:
        conn.close()


def _payload(a: argparse.Namespace) -> bytes:
    if a.sample:
        return json.dumps(_sample(a.sample, a.set)).encode()
    if a.event == "-":
        raw = sys.stdin.buffer.read()
    elif a.event:
        with open(a.event, "rb") as f:
            raw = f.read()
    else:
        raw = b"{}"
    if not a.set:
        return raw
    try:
        event = json.loads(raw)
    except ValueError:
        raise ValueError("--set needs a JSON event") from None
    for assignment in a.set:
        samples.override(event, assignment)
    return json.dumps(event).encode()


def _report(response: http.client.HTTPResponse, body: bytes, tail: bool, hint: str = "") -> int:
    log = response.getheader("X-Amz-Log-Result")
    if tail and log:
        sys.stderr.write(base64.b64decode(log).decode("utf-8", "replace"))
        sys.stderr.flush()
    if response.status >= 300:
        error = response.getheader("X-Amzn-ErrorType") or f"HTTP {response.status}"
        try:
            doc = json.loads(body)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            doc = {"message": body.decode("utf-8", "replace")}
        message, reason = doc.get("message", ""), doc.get("Reason")
        return _fail(
            f"{error}: {message}" + (f" ({reason})" if reason else "") + hint, EXIT_REFUSED
        )
    if response.status == 202:
        print(
            f"rie: queued (Event), request id {response.getheader('X-Amzn-RequestId')}",
            file=sys.stderr,
        )
        return 0
    if response.status == 204:
        print("rie: DryRun: the invocation would be accepted", file=sys.stderr)
        return 0
    out = sys.stdout.buffer
    out.write(body)
    if not body.endswith(b"\n"):
        out.write(b"\n")
    out.flush()
    if response.getheader("X-Amz-Function-Error"):
        return EXIT_FUNCTION_ERROR
    return 0
