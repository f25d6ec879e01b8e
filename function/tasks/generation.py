"""text-generation, through the OpenAI-compatible chat completions route (the router's
Inference Providers, or an endpoint's TGI / vLLM)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from function import jsontext
from function.client import Call
from function.envelope import count
from function.errors import BadResponseError
from function.inputs import RunInputs
from function.redact import redact_value
from function.tasks.base import Task, single

if TYPE_CHECKING:
    from function.backends import Target
    from function.media import Media

# Text-generation parameter names that chat completions spell differently.
_CHAT_NAMES = {"max_new_tokens": "max_tokens"}
# `response_format` types that ask for JSON (OpenAI's two, and TGI's grammar `json`).
JSON_FORMATS = frozenset({"json_object", "json_schema", "json"})
_EXCERPT = 120


class TextGeneration(Task):
    name = "text-generation"
    chat = True

    def call(self, inputs: RunInputs, target: Target, media: Media | None = None) -> Call:
        call = super().call(inputs, target)
        return call._replace(payload={**call.payload, "model": target.chat_model(inputs)})

    def payload(self, inputs: RunInputs) -> dict[str, Any]:
        parameters = {_CHAT_NAMES.get(k, k): v for k, v in inputs.parameters.items()}
        if inputs.messages is not None:
            messages = [m.model_dump() for m in inputs.messages]
        else:
            messages = [{"role": "user", "content": inputs.text}]
            if inputs.system:
                messages.insert(0, {"role": "system", "content": inputs.system})
        return {**parameters, "model": inputs.model_id, "messages": messages, "stream": False}

    def recognizes(self, body: Any) -> bool:
        return single(body, "generated_text") is not None or _chat_content(body) is not None

    def parse(self, body: Any) -> Any:
        content = _chat_content(body)
        if content is not None:
            return {"generated_text": content}
        answer = single(body, "generated_text")
        if answer is None:
            raise self.unexpected(body)
        # The spec's fields only (old pipelines add `conversation`, `warnings`).
        return {k: v for k, v in answer.items() if k in ("generated_text", "details")}

    def read(self, body: Any, inputs: RunInputs) -> Any:
        result = self.parse(body)
        if not wants_json(inputs.parameters):
            return result
        text = result["generated_text"]
        try:
            value = jsontext.parse(text.encode())
        except ValueError as exc:
            excerpt = " ".join(text.split())
            excerpt = excerpt if len(excerpt) <= _EXCERPT else excerpt[:_EXCERPT] + "..."
            raise BadResponseError(
                f"Model '{inputs.model}' was asked for JSON (response_format) but its text is "
                f"not JSON ({exc}): {excerpt!r}"
            ) from None
        # The text was read once more: an escaped secret in it (`\\u0068f_...`) is only
        # now the secret itself.
        return {**result, "json": redact_value(value)}

    def tokens(self, body: Any) -> tuple[int | None, int | None]:
        usage = body.get("usage") if isinstance(body, dict) else None
        if not isinstance(usage, dict):
            return None, None
        return count(usage.get("prompt_tokens")), count(usage.get("completion_tokens"))


def wants_json(parameters: dict[str, Any]) -> bool:
    response_format = parameters.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    return isinstance(kind, str) and kind in JSON_FORMATS


def _chat_content(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return None
    choices = body["choices"]
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None
