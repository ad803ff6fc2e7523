"""Benchmark handlers: imported by the runtime under test, so they import nothing."""


def handler(event, context):  # type: ignore[no-untyped-def]
    """The no-op handler: the per-invocation figures measure everything but the function."""
    return None


def echo(event, context):  # type: ignore[no-untyped-def]
    """Payload echo: the event comes back as the result (payload-size scenario)."""
    return event


BURST_HOLD_S = 0.2


def whoami(event, context):  # type: ignore[no-untyped-def]
    """Holds its environment for BURST_HOLD_S, then answers its process id: a burst of N concurrent
    invokes then needs N environments, and the answers count them (concurrency scenario)."""
    import os
    import time

    time.sleep(BURST_HOLD_S)
    return os.getpid()


def http(event, context):  # type: ignore[no-untyped-def]
    """The smallest valid proxy response, for every HTTP front format (http_front scenario)."""
    return {"statusCode": 200, "body": "ok"}


def hello(event, context):  # type: ignore[no-untyped-def]
    """`GET /hello/{name}` behind an API Gateway (REST) front, rie's or a peer's (http_load)."""
    name = (event.get("pathParameters") or {}).get("name", "")
    return {"statusCode": 200, "body": "hello " + name}
