"""What a task is: how to build its request and how to read its answer, in one place."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from function.client import Call, Deadline
from function.errors import BadResponseError
from function.inputs import RunInputs
from function.settings import Settings

if TYPE_CHECKING:
    from function.backends import Target
    from function.media import Media


class Task:
    """One Inference API task. Subclasses set `name` and override what differs."""

    name: ClassVar[str]
    is_classification: ClassVar[bool] = False
    # Embedding tasks are served under `/models/{model}/pipeline/{task}`.
    pipeline_route: ClassVar[bool] = False
    # Served by the OpenAI-compatible `/v1/chat/completions` route.
    chat: ClassVar[bool] = False

    def call(self, inputs: RunInputs, target: Target, media: Media | None = None) -> Call:
        """The request: where it goes (see `function.backends`) and what it says (the
        media tasks say it with the image or sound, `media`)."""
        return Call(
            target.url(self, inputs.model_id),
            self.payload(inputs),
            model=inputs.model,
            wait_for_model=inputs.wait_for_model,
            access=target.access,
            starts_on_503=target.kind == "endpoint",
            cache_s=inputs.cache_seconds,
        )

    def payload(self, inputs: RunInputs) -> dict[str, Any]:
        return {"inputs": inputs.text, "parameters": dict(inputs.parameters)}

    def read(self, body: Any, inputs: RunInputs) -> Any:
        """The answer to these inputs (`parse`, plus what the inputs asked of it)."""
        return self.parse(body)

    async def finish(self, result: Any, settings: Settings, deadline: Deadline) -> Any:
        """The result as the envelope holds it, once what it needs is done (text-to-image
        stores its picture)."""
        return result

    def tokens(self, body: Any) -> tuple[int | None, int | None]:
        """Prompt and completion tokens the answer reports (chat completions do)."""
        return None, None

    def recognizes(self, body: Any) -> bool:
        """Whether an answer has this task's shape (for runs that name no task)."""
        return False

    def parse(self, body: Any) -> Any:
        """The answer, normalized to the task's official output schema."""
        raise NotImplementedError

    def unexpected(self, body: Any) -> BadResponseError:
        return BadResponseError(
            f"The answer does not have the shape of a {self.name} result: {describe_shape(body)}"
        )


def describe_shape(body: Any, depth: int = 0) -> str:
    """A short description of a JSON value's shape, e.g. `list of object{label, score}`."""
    if isinstance(body, dict):
        keys = ", ".join(sorted(body)[:8]) + (", ..." if len(body) > 8 else "")
        return f"object{{{keys}}}"
    if isinstance(body, list):
        if not body:
            return "empty list"
        return "list of " + describe_shape(body[0], depth + 1) if depth < 3 else "list"
    return type(body).__name__ if body is not None else "null"


def is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def is_record(value: Any, *required: str) -> bool:
    return isinstance(value, dict) and all(key in value for key in required)


def records(body: Any, *required: str) -> list[dict[str, Any]] | None:
    """`body` as a list of objects with the required keys, unwrapping one level of nesting
    (the API answers `[[...]]` for a single input on some tasks); None if it is not one."""
    if isinstance(body, list) and len(body) == 1 and isinstance(body[0], list):
        body = body[0]
    if isinstance(body, list) and all(is_record(item, *required) for item in body):
        return body
    return None


def single(body: Any, key: str) -> dict[str, Any] | None:
    """`{key: ...}` or a one-element list of it (summaries, translations, generations)."""
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    return body if is_record(body, key) and isinstance(body[key], str) else None


class ModelPipeline(Task):
    """No task named: post the text to the model and let the server run its own pipeline."""

    name = "auto"
