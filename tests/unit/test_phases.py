"""The phases of an environment with extensions, driven directly (rie/model/phases.py)."""

from __future__ import annotations

import pytest

from rie.model.phases import (
    MAX_EXTENSIONS,
    ExtensionApiError,
    ExtState,
    Phase,
    Phases,
    parse_identifier,
)


def error_of(fn, *args):  # type: ignore[no-untyped-def]
    with pytest.raises(ExtensionApiError) as info:
        fn(*args)
    assert info.value.status == 403
    return info.value.error_type


def test_registration_and_init_done() -> None:
    p = Phases(frozenset({"ext-a"}))
    a = p.register("ext-a", ["INVOKE", "SHUTDOWN"])
    assert a.external and a.state is ExtState.REGISTERED
    internal = p.register("my-internal", ["INVOKE"])
    assert not internal.external
    assert not p.init_done
    p.next(a.id)
    assert not p.init_done
    p.next(internal.id)
    assert p.init_done
    assert [e.name for e in p.subscribers("SHUTDOWN")] == ["ext-a"]
    assert p.shutdown_ms == 2000


def test_registration_errors() -> None:
    p = Phases(frozenset({"ext-a"}))
    assert error_of(p.register, "", ["INVOKE"]) == "Extension.InvalidExtensionName"
    assert error_of(p.register, None, ["INVOKE"]) == "Extension.InvalidExtensionName"
    assert error_of(p.register, "ext-a", ["BOOT"]) == "Extension.InvalidEventType"
    # an internal extension (not a file of the extensions directory) cannot take SHUTDOWN
    assert error_of(p.register, "inner", ["SHUTDOWN"]) == "Extension.InvalidEventType"
    p.register("ext-a", ["INVOKE"])
    assert error_of(p.register, "ext-a", ["INVOKE"]) == "Extension.InvalidExtensionState"
    p.register("inner", [])
    assert error_of(p.register, "inner", []) == "Extension.InvalidExtensionState"
    for i in range(MAX_EXTENSIONS - 2):
        p.register(f"more{i}", [])
    assert error_of(p.register, "eleventh", []) == "Extension.TooManyExtensions"
    assert len(p.extensions) == MAX_EXTENSIONS


def test_registration_closes_when_the_runtime_is_in_next() -> None:
    p = Phases()
    p.runtime_in_next = True
    assert error_of(p.register, "late", []) == "Extension.RegistrationClosed"
    q = Phases()
    q.start_invoke()
    assert error_of(q.register, "late", []) == "Extension.RegistrationClosed"


def test_identifiers() -> None:
    p = Phases()
    assert error_of(parse_identifier, None) == "Extension.MissingExtensionIdentifier"
    assert error_of(parse_identifier, "x") == "Extension.InvalidExtensionIdentifier"
    unknown = "00000000-0000-4000-8000-000000000000"
    assert error_of(p.next, unknown) == "Extension.UnknownExtensionIdentifier"


def test_invoke_makes_subscribers_busy_until_next() -> None:
    p = Phases()
    a = p.register("a", ["INVOKE"])
    b = p.register("b", [])
    p.next(a.id)
    p.next(b.id)
    p.start_invoke()
    assert p.subscribers("INVOKE") == [a]
    p.deliver(a)
    assert p.busy and a.state is ExtState.RUNNING
    p.next(a.id)
    assert not p.busy
    # delivering to an extension that is not waiting is an illegal move, and changes nothing
    p.deliver(a)
    assert error_of(p.deliver, a) == "Extension.InvalidExtensionState"
    assert a.state is ExtState.RUNNING


def test_init_error_exit_error_and_exit() -> None:
    p = Phases(frozenset({"a"}))
    a = p.register("a", ["INVOKE"])
    assert error_of(p.init_error, a.id, None) == "Extension.MissingHeader"
    p.init_error(a.id, "Extension.Bad")
    assert a.state is ExtState.INIT_ERROR and p.failed is a
    assert error_of(p.next, a.id) == "Extension.InvalidExtensionState"
    q = Phases(frozenset({"b"}))
    b = q.register("b", ["INVOKE"])
    q.next(b.id)
    q.start_invoke()
    # after init, init/error is the wrong phase
    assert error_of(q.init_error, b.id, "Extension.X") == "Extension.InvalidExtensionState"
    assert error_of(q.exit_error, b.id, "") == "Extension.MissingHeader"
    q.exit_error(b.id, "Extension.Broken")
    assert q.failed is b
    assert q.exited("b") is b and b.state is ExtState.EXITED
    assert q.exited("never-registered") is None


def test_shutdown_done_when_subscribers_are_back_or_gone() -> None:
    p = Phases(frozenset({"a", "b"}))
    a = p.register("a", ["SHUTDOWN"])
    b = p.register("b", ["INVOKE", "SHUTDOWN"])
    p.next(a.id)
    p.next(b.id)
    p.start_shutdown()
    assert p.phase is Phase.SHUTDOWN
    p.deliver(a)
    p.deliver(b)
    assert not p.shutdown_done()
    p.next(a.id)
    p.exited("b")
    assert p.shutdown_done()


def test_no_extensions_no_shutdown_time() -> None:
    p = Phases()
    assert p.shutdown_ms == 0
    p.register("inner", ["INVOKE"])
    assert p.shutdown_ms == 500


def test_the_endpoint_routes_every_extension_path() -> None:
    from rie.api import extensions as extensions_api
    from rie.sandbox import extensions

    routed = (
        extensions_api.EXTENSION_BASE,
        extensions_api.TELEMETRY_PATH,
        extensions_api.LOGS_PATH,
    )
    assert routed == extensions.PREFIXES
