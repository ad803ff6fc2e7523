"""The invocation loop: init, then `next` → handler → `response` or `error`, forever.

Owns the process's life as a Lambda runtime: preparing stdout and `sys.path`, loading the
handler and reporting init errors, filling in the environment and context for each invocation,
running `async def` handlers on one event loop kept for the life of the process, and leaving
cleanly on SIGTERM while waiting for work.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # `signal` would import enum
import os
import sys

from runtime import log, trace_env
from runtime.client import Response, RuntimeClient
from runtime.codec import decode_event, dumps, encode_result
from runtime.context import LambdaContext, freeze_environment
from runtime.errors import (
    RESPONSE_TOO_LARGE,
    FaultError,
    from_exception,
    header_error_type,
    make_error,
)

TYPE_CHECKING = False  # `typing` costs milliseconds at start-up; annotations are never evaluated

if TYPE_CHECKING:
    import asyncio
    from typing import Any

    from runtime.handler import Handler

_CO_COROUTINE = 0x80  # code flag of `async def` functions (cheaper than importing inspect)
_INIT_WARNING = (
    "LAMBDA_WARNING: Unhandled exception during init: the function's code could not be "
    "loaded; the error follows.\r"
)
_DEFAULT_RESPONSE_LIMIT = 6291556
_PRELOAD_AFTER = 16  # invocations served back to back before preloading without waiting for idle
# a `next` that answers no invocation is asked again this many times in all, 50 ms apart, doubling
_NEXT_ATTEMPTS = 5
_NEXT_RETRY_DELAY_S = 0.05


class _Terminate(BaseException):
    """Raised by the SIGTERM handler to leave a blocking `next` (never seen by user code)."""


def _is_coroutine_function(fn: Any) -> bool:
    code = getattr(fn, "__code__", None)
    if code is None:
        code = getattr(getattr(fn, "__call__", None), "__code__", None)  # noqa: B004
    return bool(code is not None and code.co_flags & _CO_COROUTINE)


async def _guard(awaitable: Any) -> tuple[Any, BaseException | None]:
    # Catch here so the traceback starts in this frame rather than inside asyncio's machinery.
    try:
        return await awaitable, None
    except Exception as e:
        return None, e


def _preload(want_asyncio: bool) -> None:
    """Import what the first invocation will need while the runtime sits in `next`."""
    # A process-wide signal goes to any thread that does not block it. Were SIGTERM delivered
    # here, Python would only note it, and the main thread would stay blocked in `next`'s recv,
    # never running the handler: leave signals to the main thread.
    _signal.pthread_sigmask(_signal.SIG_BLOCK, {_signal.SIGTERM, _signal.SIGINT})
    from runtime.codec import preload  # by its full name (see runtime.handler.make_way)

    preload()
    trace_env.preload()
    if want_asyncio:
        import asyncio  # noqa: F401

        try:  # noqa: SIM105 (no contextlib on the start-up path)
            import uvloop  # noqa: F401
        except ImportError:
            pass


def _describe(answer: Response) -> str:
    if answer.status == 200:
        return "200 without a Lambda-Runtime-Aws-Request-Id header"
    text = answer.body[:200].decode("utf-8", "replace")
    return f"{answer.status} {text}".rstrip()


def _stream_of(result: Any) -> tuple[Any, str] | None:
    """(body, content type) when the handler's result is to be streamed, else None."""
    # runtime.streaming is looked up, never imported: a result of its class implies it is loaded
    streaming = sys.modules.get("runtime.streaming")
    if streaming is not None and isinstance(result, streaming.StreamingResponse):
        return result.body, result.content_type
    if hasattr(result, "__anext__") or (hasattr(result, "__next__") and hasattr(result, "throw")):
        return result, "application/octet-stream"  # a generator or an async generator
    return None


def _as_bytes(item: Any) -> bytes:
    if isinstance(item, bytes):
        return item
    if isinstance(item, str):
        return item.encode("utf-8")
    if isinstance(item, bytearray | memoryview):
        return bytes(item)
    raise TypeError(f"a streamed response yields bytes or str, not {type(item).__name__}")


def _limit_from(body: bytes) -> int:
    # the Runtime API names its limit in the 413 message: "... payload size (6291556 bytes)."
    text = body.decode("utf-8", "replace")
    digits = ""
    for ch in text[text.rfind("(") + 1 :]:
        if not ch.isdigit():
            break
        digits += ch
    return int(digits) if digits else _DEFAULT_RESPONSE_LIMIT


class Runtime:
    """One runtime process (or one worker of several): a client, a handler, a loop."""

    def __init__(self, handler_spec: str, api_address: str) -> None:
        self.handler_spec = handler_spec
        self.client = RuntimeClient(api_address)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiting = False
        self._terminating = False
        self._preloaded = False
        self._served = 0
        self._async_handler = False

    # -- init -----------------------------------------------------------------------------

    def prepare_process(self) -> None:
        stdout = sys.stdout
        if stdout is not None and hasattr(stdout, "reconfigure"):
            # print() output must reach the log as each line is written, not at exit
            stdout.reconfigure(line_buffering=True)
        # the working directory stands in for an unset task root, as `-c` and `-m` would have it
        # on sys.path (the entry point takes it off so that this client is imported first)
        task_root = os.environ.get("LAMBDA_TASK_ROOT") or os.getcwd()
        if task_root:
            if task_root in sys.path:
                sys.path.remove(task_root)
            sys.path.insert(0, task_root)
        log.create_sink()
        log.install()

    def load_handler(self) -> Handler | None:
        """The handler, or None once an init error has been reported."""
        from runtime.handler import resolve

        try:
            return resolve(self.handler_spec)
        except FaultError as e:
            error = make_error(e.message, e.error_type, e.stack_trace)
        except Exception as e:
            error, _ = from_exception(e)
        self.report_init_error(error)
        return None

    def report_init_error(self, error: dict[str, Any]) -> None:
        import logging

        logging.warning(_INIT_WARNING)
        log.log_error(error)
        try:
            # another worker may already have reported it (403): exiting is all that is left
            self.client.post_init_error(dumps(error), header_error_type(error["errorType"]))
        except OSError as e:
            sys.stderr.write(f"pyrie runtime: could not report the init error: {e}\n")

    # -- signals --------------------------------------------------------------------------

    def _on_sigterm(self, signum: int, frame: object) -> None:
        self._terminating = True
        if self._waiting:
            raise _Terminate

    def _now_waiting(self) -> None:
        self._waiting = True
        if self._terminating:  # SIGTERM came while the response was being sent
            raise _Terminate

    def install_sigterm(self) -> None:
        # a handler the function installed at init is its own business: leave it alone
        if _signal.getsignal(_signal.SIGTERM) in (_signal.SIG_DFL, None):
            _signal.signal(_signal.SIGTERM, self._on_sigterm)

    # -- the loop -------------------------------------------------------------------------

    def serve(self) -> int:
        """Run until SIGTERM (exit status 0) or an init error (1)."""
        self.prepare_process()
        handler = self.load_handler()
        if handler is None:
            return 1
        self._async_handler = _is_coroutine_function(handler)
        freeze_environment()
        self.install_sigterm()
        client = self.client
        try:
            while not self._terminating:
                self._waiting = True
                event = client.next(None if self._preloaded else self._preload_now)
                if event.status != 200 or not event.headers.get("lambda-runtime-aws-request-id"):
                    event = self._retry_next(event)
                self._waiting = False
                self.invoke(handler, event)
                self._served += 1
                if self._served == _PRELOAD_AFTER and not self._preloaded:
                    self._preload_now()  # never idle: pay for the faster path now
                if sys.stdout is not None:
                    sys.stdout.flush()
        except _Terminate:
            pass
        finally:
            self._waiting = False
            client.close()
        return 0

    def _retry_next(self, answer: Response) -> Response:
        """`next` answered something that is not an invocation: never run the handler on it.
        Ask again a few times with a short backoff (a passing fault), then exit non-zero."""
        import time

        delay = _NEXT_RETRY_DELAY_S
        for _ in range(_NEXT_ATTEMPTS - 1):
            sys.stderr.write(f"pyrie runtime: next answered {_describe(answer)}; asking again\n")
            time.sleep(delay)
            delay *= 2
            answer = self.client.next()
            if answer.status == 200 and answer.headers.get("lambda-runtime-aws-request-id"):
                return answer
        sys.stderr.write(
            f"pyrie runtime: next answered {_describe(answer)} {_NEXT_ATTEMPTS} times in a row; "
            "exiting without running the handler\n"
        )
        raise SystemExit(1)

    def _preload_now(self) -> None:
        # Import what invocations will need (orjson; asyncio for async handlers) on a helper
        # thread, during a wait for work: never on the way to the first `next`, and not while
        # the first invocation is running if it was already waiting (a cold start).
        self._preloaded = True
        import _thread

        # The thread inherits this mask, so it blocks SIGTERM and SIGINT from its first
        # instruction: were one delivered to it before it could block them itself, the main
        # thread would stay in `next`'s recv and never run the handler. Here, a signal that
        # comes meanwhile waits, then goes to the main thread.
        signals = {_signal.SIGTERM, _signal.SIGINT}
        previous = _signal.pthread_sigmask(_signal.SIG_BLOCK, signals)
        try:
            _thread.start_new_thread(_preload, (self._async_handler,))
        finally:
            _signal.pthread_sigmask(_signal.SIG_SETMASK, previous)

    def invoke(self, handler: Handler, event: Response) -> None:
        headers = event.headers
        request_id = headers.get("lambda-runtime-aws-request-id", "")
        tenant_id = headers.get("lambda-runtime-aws-tenant-id")
        log.request_id = request_id
        log.tenant_id = tenant_id
        trace_env.set(headers.get("lambda-runtime-trace-id"))
        invocation_id = headers.get("lambda-runtime-invocation-id")
        extra = f"Lambda-Runtime-Invocation-Id: {invocation_id}\r\n" if invocation_id else ""

        try:
            context = LambdaContext(
                request_id,
                int(headers.get("lambda-runtime-deadline-ms") or 0),
                headers.get("lambda-runtime-invoked-function-arn"),
                tenant_id,
                headers.get("lambda-runtime-client-context"),
                headers.get("lambda-runtime-cognito-identity"),
            )
            result = handler(decode_event(event.body, headers.get("content-type")), context)
            if hasattr(type(result), "__await__"):
                result = self.run_async(result)
            streamed = _stream_of(result)
            if streamed is None:
                body, content_type = encode_result(result)
        except Exception as e:
            self.report_error(request_id, *from_exception(e, request_id), extra)
            return
        if streamed is not None:
            self.stream(request_id, *streamed, extra)
            return
        stdout = sys.stdout
        if stdout is not None:
            stdout.flush()  # a partial line is the invocation's, before `next` goes out with it
        # the next `next` goes out with the response (see runtime.client.PIPELINE_MAX), and
        # the answer to that comes back with the start of the next invocation: from the moment
        # the response is written the runtime is waiting for work, as in `next`
        try:
            answer = self.client.post_response(
                request_id,
                body,
                content_type,
                extra,
                then_next=True,
                on_idle=None if self._preloaded else self._preload_now,
                on_sent=self._now_waiting,
            )
        finally:
            self._waiting = False
        if answer.status == 413:
            # too large for the Runtime API: that is the function's error, not the runtime's end
            limit = _limit_from(answer.body)
            error = make_error(
                f"Response payload size ({len(body)} bytes) exceeded maximum allowed payload "
                f"size ({limit} bytes).",
                RESPONSE_TOO_LARGE,
                None,
                request_id,
            )
            self.report_error(request_id, error, "", extra)
        elif answer.status >= 300:
            self._rejected("response", answer)

    def stream(self, request_id: str, body: Any, content_type: str, extra: str) -> None:
        """Send a streamed response, each item as the handler produces it."""
        chunks = self._chunks(body)
        try:
            # nothing is sent before the first item: an error before it is an ordinary error
            first = next(chunks, None)
        except Exception as e:
            self.report_error(request_id, *from_exception(e, request_id), extra)
            return

        def rest() -> Any:
            if first is not None:
                yield first
            yield from chunks

        def describe(e: Exception) -> tuple[str, bytes]:
            error, _ = from_exception(e, request_id)
            log.log_error(error)
            return header_error_type(error["errorType"]), dumps(error)

        answer = self.client.post_response_stream(request_id, content_type, rest(), describe, extra)
        if answer.status == 413:
            # the platform has failed the invocation already (Function.ResponseSizeTooLarge)
            sys.stderr.write("pyrie runtime: the streamed response was over the size limit\n")
        elif answer.status >= 300:
            self._rejected("response", answer)

    def _chunks(self, body: Any) -> Any:
        if hasattr(body, "__aiter__"):
            items = body.__aiter__()
            loop = self._loop or self._make_loop()
            while True:
                try:
                    item = loop.run_until_complete(items.__anext__())
                except StopAsyncIteration:
                    return
                yield _as_bytes(item)
        else:
            for item in body:
                yield _as_bytes(item)

    def report_error(
        self, request_id: str, error: dict[str, Any], cause: str, extra: str = ""
    ) -> None:
        log.log_error(error)
        answer = self.client.post_error(
            request_id, dumps(error), header_error_type(error["errorType"]), cause, extra
        )
        if answer.status >= 300:
            self._rejected("error", answer)

    def _rejected(self, what: str, answer: Response) -> None:
        message = answer.body.decode("utf-8", "replace")
        sys.stderr.write(
            f"pyrie runtime: the Runtime API refused the {what}: {answer.status} {message}\n"
        )
        if answer.status >= 500:
            # "container error": the platform will not take more from this process
            raise SystemExit(1)

    # -- async handlers -------------------------------------------------------------------

    def run_async(self, awaitable: Any) -> Any:
        loop = self._loop or self._make_loop()
        result, error = loop.run_until_complete(_guard(awaitable))
        if error is not None:
            raise error
        return result

    def _make_loop(self) -> asyncio.AbstractEventLoop:
        import asyncio

        # a loop the function set up at init (and bound its connections to) is the one to keep
        policy = asyncio.get_event_loop_policy()
        loop: asyncio.AbstractEventLoop | None = getattr(
            getattr(policy, "_local", None), "_loop", None
        )
        if loop is None or loop.is_closed():
            try:
                import uvloop

                loop = uvloop.new_event_loop()
            except ImportError:
                loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
        self._loop = loop
        return loop


def main(argv: list[str]) -> int:
    """`python -m runtime [HANDLER]`: the handler from argv, else from `_HANDLER`."""
    spec = (argv[1] if len(argv) > 1 else "") or os.environ.get("_HANDLER", "")
    address = os.environ.get("AWS_LAMBDA_RUNTIME_API")
    if not address:
        sys.stderr.write("pyrie runtime: AWS_LAMBDA_RUNTIME_API is not set\n")
        return 2
    workers = os.environ.get("AWS_LAMBDA_MAX_CONCURRENCY")
    if workers:
        from runtime.workers import run_workers

        return run_workers(int(workers), lambda: Runtime(spec, address).serve())
    return Runtime(spec, address).serve()
