"""text-generation, through the OpenAI-compatible chat completions route."""

from __future__ import annotations

from typing import Any

from function.inputs import RunInputs
from function.tasks.base import Task, single

# Text-generation parameter names that chat completions spell differently.
_CHAT_NAMES = {"max_new_tokens": "max_tokens"}


class TextGeneration(Task):
    name = "text-generation"

    def url(self, endpoint: str, model: str) -> str:
        return f"{endpoint}/models/{model}/v1/chat/completions"

    def payload(self, inputs: RunInputs) -> dict[str, Any]:
        parameters = {_CHAT_NAMES.get(k, k): v for k, v in inputs.parameters.items()}
        return {
            **parameters,
            "model": inputs.model,
            "messages": [{"role": "user", "content": inputs.text}],
            "stream": False,
        }

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


def _chat_content(body: Any) -> str | None:
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        return None
    choices = body["choices"]
    message = choices[0].get("message") if choices and isinstance(choices[0], dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    return content if isinstance(content, str) else None
