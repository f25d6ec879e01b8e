"""Where a run's request goes, decided in one place: the URL, the token, who pays.

    hf-inference   POST {HUGGINGFACE_API_ENDPOINT}/models/{id}[/pipeline/{task}]
    router (chat)  POST {HUGGINGFACE_ROUTER_URL}/v1/chat/completions, model "id[:provider]"
    endpoint NAME  POST {url} (chat: {url}/v1/chat/completions); the URL comes from
                   HF_ENDPOINTS only, never from run inputs
    local          in this process (`function.local`): "local:/models/{id}/pipeline/{task}",
                   no token

text-generation goes to the router (its Inference Providers serve the LLMs) unless the run
names an endpoint; every other task runs on hf-inference or on a named endpoint. Any task
runs in this process with `provider: local`.
"""

from __future__ import annotations

from contextlib import suppress
from typing import TYPE_CHECKING, Literal, NamedTuple

from function.client import LOCAL, Access
from function.errors import ConfigError, InputError
from function.inputs import LOCAL_PROVIDER
from function.redact import remember
from function.settings import Settings, is_hf_host

if TYPE_CHECKING:
    from function.inputs import RunInputs
    from function.tasks.base import Task

NO_TOKEN = (
    "No Hugging Face token: set HUGGINGFACE_API_KEY (or HF_TOKEN) to a token from "
    "https://huggingface.co/settings/tokens, or HUGGINGFACE_API_KEY_SECRET_ARN / "
    "HUGGINGFACE_API_KEY_PARAMETER to where it is stored"
)


class Target(NamedTuple):
    """One place a model runs."""

    kind: Literal["hf-inference", "router", "endpoint", "local"]
    base: str
    access: Access
    endpoint: str | None = None  # the endpoint's name

    def url(self, task: Task, model_id: str) -> str:
        if self.kind == "local":
            return f"{LOCAL}/models/{model_id}/pipeline/{task.name}"
        if task.chat:
            return f"{self.base}/v1/chat/completions"
        if self.kind == "endpoint":
            return self.base  # the Inference Endpoints toolkit and TEI answer at the root
        route = f"{self.base}/models/{model_id}"
        return f"{route}/pipeline/{task.name}" if task.pipeline_route else route

    def chat_model(self, inputs: RunInputs) -> str:
        """The `model` field of a chat completion: the router takes `id:provider`."""
        provider = inputs.routed_provider if self.kind == "router" else None
        return f"{inputs.model_id}:{provider}" if provider else inputs.model_id


def where(inputs: RunInputs) -> str:
    """Where inputs run, for records and logs: `hf-inference`, `router`, `router:groq`,
    `endpoint:NAME`."""
    if inputs.endpoint is not None:
        return f"endpoint:{inputs.endpoint}"
    if inputs.provider == LOCAL_PROVIDER:
        return "local"
    if inputs.task == "text-generation":
        provider = inputs.routed_provider
        return f"router:{provider}" if provider else "router"
    return "hf-inference"


def remember_keys(settings: Settings) -> None:
    """Every endpoint's own key is masked wherever it could show, from the start of the
    invocation (an answer from anywhere may echo it), not only once it is used."""
    for endpoint in settings.endpoints.values():
        with suppress(ConfigError):  # not set: the run that uses the endpoint says so
            remember(endpoint.own_token())


def target_for(inputs: RunInputs, settings: Settings, token: str | None) -> Target:
    """Where these inputs run, with the token that goes there."""
    if inputs.provider == LOCAL_PROVIDER:
        return Target("local", LOCAL, Access())
    if inputs.endpoint is not None:
        endpoint = settings.endpoints.get(inputs.endpoint)
        if endpoint is None:
            known = ", ".join(sorted(settings.endpoints)) or "none; set HF_ENDPOINTS"
            raise InputError(
                f"Invalid input: endpoint: no endpoint named {inputs.endpoint!r} (known: {known})"
            )
        own = endpoint.own_token()
        remember(own)
        access = Access(own or token)
        if access.token is None and is_hf_host(endpoint.url):
            raise ConfigError(NO_TOKEN)
        return Target("endpoint", endpoint.url, access, inputs.endpoint)
    access = Access(token, settings.bill_to)
    if inputs.task == "text-generation":
        base, kind = settings.huggingface_router_url, "router"
    else:
        base, kind = settings.huggingface_api_endpoint, "hf-inference"
    if token is None and is_hf_host(base):
        raise ConfigError(NO_TOKEN)
    return Target(kind, base, access)  # type: ignore[arg-type]
