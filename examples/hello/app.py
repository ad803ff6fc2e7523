"""The example function: greets whoever the event names."""

from typing import Any


def handler(event: Any, context: Any) -> dict[str, Any]:
    name = event.get("name", "world") if isinstance(event, dict) else "world"
    print(f"greeting {name}")
    return {
        "message": f"Hello, {name}!",
        "requestId": context.aws_request_id,
        "remainingMs": context.get_remaining_time_in_millis(),
    }
