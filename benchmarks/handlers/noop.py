"""Benchmark handlers: imported by the runtime under test, so they import nothing."""


def handler(event, context):  # type: ignore[no-untyped-def]
    """The no-op handler: the per-invocation figures measure everything but the function."""
    return None


def echo(event, context):  # type: ignore[no-untyped-def]
    """Payload echo: the event comes back as the result (payload-size scenario)."""
    return event


def whoami(event, context):  # type: ignore[no-untyped-def]
    """Answers the environment's process id, to count environments (concurrency scenario)."""
    import os

    return os.getpid()
