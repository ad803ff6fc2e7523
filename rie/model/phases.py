"""The phases of an environment with extensions (init, invoke, shutdown), as a pure state machine.

An environment moves on only when every party is "in next": the runtime and each registered
extension. This module keeps the registry of extensions and each one's state; it decides, by one
table lookup per move, whether a call of the Extensions API is allowed, and answers the questions
the environment asks ("is init over?", "may the next invocation start?", "who gets this event?").
No asyncio, no I/O: the endpoint handlers and the environment drive it.

Invariants:
- at most `MAX_EXTENSIONS` extensions, names unique, registration only during init;
- an illegal move raises an `ExtensionApiError` (403 with the error type the Go emulator names)
  and leaves every state unchanged;
- an extension gets an event only while it waits in `next` (READY), and is RUNNING from that
  moment until it calls `next` again.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from rie.model.errors import RieError

MAX_EXTENSIONS = 10
EVENT_INVOKE = "INVOKE"
EVENT_SHUTDOWN = "SHUTDOWN"
EVENTS = (EVENT_INVOKE, EVENT_SHUTDOWN)
# how long extensions get to finish after SHUTDOWN (AWS "Lambda execution environment lifecycle")
SHUTDOWN_MS_EXTERNAL = 2000
SHUTDOWN_MS_INTERNAL = 500


class ExtensionApiError(RieError):
    """An Extensions API error: 403 `{"errorMessage","errorType"}` unless said otherwise."""

    status = 403

    def __init__(self, error_type: str, message: str, status: int = 403) -> None:
        super().__init__(message)
        self.status = status  # type: ignore[misc]
        self.error_type = error_type  # type: ignore[misc]


class ExtState(enum.Enum):
    # values are the state names of the Go emulator's messages
    REGISTERED = "Registered"
    READY = "Ready"  # waiting in `next`
    RUNNING = "Running"  # handed an event, not back in `next` yet
    INIT_ERROR = "InitError"
    EXIT_ERROR = "ExitError"
    EXITED = "Exited"


class ExtMove(enum.Enum):
    NEXT = "next"
    DELIVER = "deliver"
    INIT_ERROR = "init_error"
    EXIT_ERROR = "exit_error"
    EXIT = "exit"


_TARGET = {
    ExtMove.NEXT: ExtState.READY,
    ExtMove.DELIVER: ExtState.RUNNING,
    ExtMove.INIT_ERROR: ExtState.INIT_ERROR,
    ExtMove.EXIT_ERROR: ExtState.EXIT_ERROR,
    ExtMove.EXIT: ExtState.EXITED,
}

_TRANSITIONS: dict[tuple[ExtState, ExtMove], ExtState] = {
    (ExtState.REGISTERED, ExtMove.NEXT): ExtState.READY,
    (ExtState.READY, ExtMove.NEXT): ExtState.READY,  # a `next` whose connection dropped, again
    (ExtState.RUNNING, ExtMove.NEXT): ExtState.READY,
    (ExtState.READY, ExtMove.DELIVER): ExtState.RUNNING,
    (ExtState.REGISTERED, ExtMove.INIT_ERROR): ExtState.INIT_ERROR,
    (ExtState.READY, ExtMove.INIT_ERROR): ExtState.INIT_ERROR,
    (ExtState.REGISTERED, ExtMove.EXIT_ERROR): ExtState.EXIT_ERROR,
    (ExtState.READY, ExtMove.EXIT_ERROR): ExtState.EXIT_ERROR,
    (ExtState.RUNNING, ExtMove.EXIT_ERROR): ExtState.EXIT_ERROR,
    (ExtState.REGISTERED, ExtMove.EXIT): ExtState.EXITED,
    (ExtState.READY, ExtMove.EXIT): ExtState.EXITED,
    (ExtState.RUNNING, ExtMove.EXIT): ExtState.EXITED,
    (ExtState.INIT_ERROR, ExtMove.EXIT): ExtState.EXITED,
    (ExtState.EXIT_ERROR, ExtMove.EXIT): ExtState.EXITED,
}


class Phase(enum.Enum):
    INIT = "init"
    INVOKE = "invoke"
    SHUTDOWN = "shutdown"


@dataclass(eq=False, slots=True)
class Extension:
    id: str
    name: str
    events: frozenset[str]
    external: bool
    state: ExtState = ExtState.REGISTERED
    error_type: str | None = None

    def move(self, move: ExtMove) -> None:
        target = _TRANSITIONS.get((self.state, move))
        if target is None:
            raise ExtensionApiError(
                "Extension.InvalidExtensionState",
                f"State transition from {self.state.value} to {_TARGET[move].value} failed for "
                f"extension {self.name}. Error: State transition is not allowed",
            )
        self.state = target


def parse_identifier(value: str | None) -> str:
    """The `Lambda-Extension-Identifier` header, checked as Lambda checks it."""
    if not value:
        raise ExtensionApiError(
            "Extension.MissingExtensionIdentifier", "Missing Lambda-Extension-Identifier header"
        )
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ExtensionApiError(
            "Extension.InvalidExtensionIdentifier", "Invalid Lambda-Extension-Identifier"
        ) from None


@dataclass(slots=True)
class Phases:
    """One init cycle of one environment: its extensions and who is in `next`."""

    external_names: frozenset[str] = frozenset()  # file names of the external extensions started
    phase: Phase = Phase.INIT
    runtime_in_next: bool = False
    extensions: dict[str, Extension] = field(default_factory=dict)  # by id

    # --- registration ----------------------------------------------------------------------

    def register(self, name: str | None, events: Iterable[object]) -> Extension:
        if not name:
            raise ExtensionApiError("Extension.InvalidExtensionName", "Empty extension name")
        if self.phase is not Phase.INIT or self.runtime_in_next:
            raise ExtensionApiError(
                "Extension.RegistrationClosed", "Extension registration closed already"
            )
        external = name in self.external_names
        wanted: list[str] = []
        for event in events:
            if event not in EVENTS:
                raise ExtensionApiError(
                    "Extension.InvalidEventType", f"{event}: invalid event type"
                )
            if event == EVENT_SHUTDOWN and not external:
                raise ExtensionApiError(
                    "Extension.InvalidEventType",
                    f"{event}: internal extensions cannot subscribe to SHUTDOWN",
                )
            wanted.append(str(event))
        existing = self.by_name(name)
        if existing is not None:
            if external:
                raise ExtensionApiError(
                    "Extension.InvalidExtensionState",
                    f"State transition from {existing.state.value} to Registered failed for "
                    f"extension {name}. Error: State transition is not allowed",
                )
            raise ExtensionApiError(
                "Extension.InvalidExtensionState", "Extension with this name already registered"
            )
        if len(self.extensions) >= MAX_EXTENSIONS:
            raise ExtensionApiError(
                "Extension.TooManyExtensions", f"Extension limit ({MAX_EXTENSIONS}) reached"
            )
        ext = Extension(str(uuid.uuid4()), name, frozenset(wanted), external)
        self.extensions[ext.id] = ext
        return ext

    def by_name(self, name: str) -> Extension | None:
        for ext in self.extensions.values():
            if ext.name == name:
                return ext
        return None

    def lookup(self, header: str | None) -> Extension:
        ext = self.extensions.get(parse_identifier(header))
        if ext is None:
            raise ExtensionApiError(
                "Extension.UnknownExtensionIdentifier", f"Unknown extension {header}"
            )
        return ext

    # --- moves of the Extensions API -------------------------------------------------------

    def next(self, header: str | None) -> Extension:
        ext = self.lookup(header)
        ext.move(ExtMove.NEXT)
        return ext

    def init_error(self, header: str | None, error_type: str | None) -> Extension:
        ext = self.lookup(header)
        if not error_type:
            raise ExtensionApiError(
                "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found"
            )
        if self.phase is not Phase.INIT:
            raise ExtensionApiError(
                "Extension.InvalidExtensionState",
                f"State transition from {ext.state.value} to InitError failed for extension "
                f"{ext.name}. Error: State transition is not allowed",
            )
        ext.move(ExtMove.INIT_ERROR)
        ext.error_type = error_type
        return ext

    def exit_error(self, header: str | None, error_type: str | None) -> Extension:
        ext = self.lookup(header)
        if not error_type:
            raise ExtensionApiError(
                "Extension.MissingHeader", "Lambda-Extension-Function-Error-Type not found"
            )
        ext.move(ExtMove.EXIT_ERROR)
        ext.error_type = error_type
        return ext

    def exited(self, name: str) -> Extension | None:
        """An external extension's process is gone; None if it never registered."""
        ext = self.by_name(name)
        if ext is not None and ext.state is not ExtState.EXITED:
            ext.move(ExtMove.EXIT)
        return ext

    def deliver(self, ext: Extension) -> None:
        ext.move(ExtMove.DELIVER)

    # --- what the environment asks ---------------------------------------------------------

    @property
    def init_done(self) -> bool:
        """Every registered extension waits in `next` (the runtime's part is asked apart)."""
        return all(ext.state is ExtState.READY for ext in self.extensions.values())

    @property
    def failed(self) -> Extension | None:
        """The first extension that reported an error or died, if any."""
        for ext in self.extensions.values():
            if ext.state in (ExtState.INIT_ERROR, ExtState.EXIT_ERROR, ExtState.EXITED):
                return ext
        return None

    def subscribers(self, event: str) -> list[Extension]:
        return [
            ext
            for ext in self.extensions.values()
            if event in ext.events and ext.state in (ExtState.READY, ExtState.RUNNING)
        ]

    @property
    def busy(self) -> bool:
        """Some INVOKE-subscribed extension is still working on the last invocation."""
        return any(
            ext.state is ExtState.RUNNING and EVENT_INVOKE in ext.events
            for ext in self.extensions.values()
        )

    def start_invoke(self) -> None:
        self.phase = Phase.INVOKE

    def start_shutdown(self) -> None:
        self.phase = Phase.SHUTDOWN

    @property
    def shutdown_ms(self) -> int:
        if any(ext.external for ext in self.extensions.values()):
            return SHUTDOWN_MS_EXTERNAL
        return SHUTDOWN_MS_INTERNAL if self.extensions else 0

    def shutdown_done(self) -> bool:
        """Every SHUTDOWN-subscribed extension is back in `next` or gone."""
        return all(
            ext.state is not ExtState.RUNNING
            for ext in self.extensions.values()
            if EVENT_SHUTDOWN in ext.events
        )
