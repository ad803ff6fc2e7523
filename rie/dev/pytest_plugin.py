"""pytest plugin (entry point `pytest11`): the `lambda_function` fixture for your own tests.

    def test_hello(lambda_function):
        fn = lambda_function(handler="app.handler", task_root="src", env={"STAGE": "test"})
        result = fn.invoke({"name": "you"})
        assert result.payload == {"message": "Hello, you!"} and result.function_error is None

Each call starts a real rie (a separate process, on free ports) that is stopped when the test
ends. pytest imports this module in every run where pyrie is installed, so it imports nothing but
pytest here: the machinery (`rie.testing`) is imported when a test asks for the fixture.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from rie.testing import LambdaFunction


@pytest.fixture
def lambda_function(request: pytest.FixtureRequest) -> Iterator[Callable[..., LambdaFunction]]:
    """A factory: `lambda_function(handler=..., task_root=..., env=..., timeout=3, memory=None,
    http=False, template=None, config=None, zip=None, name=None, command=(), args=())` starts a
    rie and returns it (`.invoke(event)`, `.endpoint_url` for boto3, `.http_url`, `.logs`,
    `.wait_for_log(pattern)`). Relative paths are taken from pytest's root directory."""
    from rie.testing import LambdaFunction, rie_arguments

    started: list[LambdaFunction] = []

    def start(*, name: str | None = None, **kwargs: Any) -> LambdaFunction:
        args = rie_arguments(base=request.config.rootpath, **kwargs)
        fn = LambdaFunction(args, cwd=request.config.rootpath, name=name)
        started.append(fn)
        return fn.start()

    try:
        yield start
    finally:
        for fn in started:
            fn.stop()
