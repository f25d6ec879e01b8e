"""Run inputs: the run config file merged under the event's overrides, then validated."""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from function.errors import InputError
from function.settings import ENDPOINT_NAME, Settings

TaskName = Literal[
    "zero-shot-classification",
    "text-classification",
    "token-classification",
    "feature-extraction",
    "sentence-similarity",
    "question-answering",
    "summarization",
    "translation",
    "fill-mask",
    "text-generation",
    "image-classification",
    "object-detection",
    "image-segmentation",
    "image-to-text",
    "zero-shot-image-classification",
    "text-to-image",
    "automatic-speech-recognition",
    "audio-classification",
]
# The tasks that read an image or a sound, by the run input that holds it (function.media).
MEDIA_TASKS = {
    "image-classification": "image",
    "object-detection": "image",
    "image-segmentation": "image",
    "image-to-text": "image",
    "zero-shot-image-classification": "image",
    "automatic-speech-recognition": "audio",
    "audio-classification": "audio",
}
ZERO_SHOT_TASKS = ("zero-shot-classification", "zero-shot-image-classification")
TASK_NAMES: tuple[str, ...] = TaskName.__args__  # type: ignore[attr-defined]

# A Hub repo id: `name` or `namespace/name`; letters, digits, `-`, `_`, `.`; no `--` or `..`.
# It is pasted into a URL path, so nothing else may get through (no `/`, `?`, `#`, `%`, `:`).
_REPO_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9])?"
MODEL_ID_RE = re.compile(rf"^(?:{_REPO_PART}/)?{_REPO_PART}$")
_MAX_ECHO = 80


def check_model_id(value: str) -> str:
    if not MODEL_ID_RE.fullmatch(value) or ".." in value or "--" in value:
        raise ValueError(
            f"{_echo(value)} is not a Hugging Face model id; expected 'name' or 'org/name' "
            "made of letters, digits, '-', '_' and '.'"
        )
    return value


# The router's provider suffix (`org/name:groq`) or policy (`:fastest`): never in a URL path.
PROVIDER_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?")
POLICIES = ("fastest", "cheapest")
HF_INFERENCE = "hf-inference"
LOCAL_PROVIDER = "local"  # in this process (transformers / sentence-transformers), any task


def check_model(value: str) -> str:
    """A model id, with an optional `:provider` or `:policy` suffix (text-generation)."""
    model, colon, suffix = value.partition(":")
    if colon and not PROVIDER_RE.fullmatch(suffix):
        raise ValueError(
            f"{_echo(value)} is not a Hugging Face model id; expected 'name' or 'org/name' "
            "made of letters, digits, '-', '_' and '.', for text-generation with an optional "
            "':provider' suffix (letters, digits and '-')"
        )
    check_model_id(model)
    return value


def check_provider(value: str) -> str:
    if not PROVIDER_RE.fullmatch(value):
        raise ValueError(
            f"{_echo(value)} is not a provider name; expected 'auto', 'hf-inference', 'local', "
            "a provider such as 'groq' or 'together', or a policy ('fastest', 'cheapest'): "
            "letters, digits and '-'"
        )
    return value.lower()


def check_endpoint_name(value: str) -> str:
    """An endpoint is named, never given as a URL: the token would go with the request."""
    if "://" in value or not ENDPOINT_NAME.fullmatch(value):
        raise ValueError(
            f"{_echo(value)} is not an endpoint name; name one of the endpoints set in "
            "HF_ENDPOINTS (a URL is never taken from run inputs)"
        )
    return value


MAX_FALLBACK = 8  # alternates after the primary: each needs its share of the deadline


class ChatMessage(BaseModel):
    """One message of a chat: `{role, content}`."""

    # Validated inside RunInputs' schema: its own validator is built only if used alone.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    role: Literal["system", "user", "assistant"]
    content: str = Field(min_length=1)


class Alternate(BaseModel):
    """Another place to run the same input (`fallback`, `compare`): a model id, or an object
    whose `model`, `provider` and `endpoint` replace the run's (without `model`, the run's
    model on another provider or endpoint)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)  # as ChatMessage

    model: str | None = None
    provider: str | None = None
    endpoint: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_id(cls, value: Any) -> Any:
        return {"model": value} if isinstance(value, str) else value

    @model_validator(mode="after")
    def _names_something(self) -> Alternate:
        if self.model is None and self.provider is None and self.endpoint is None:
            raise ValueError("expected a model id, or an object with model, provider or endpoint")
        return self

    @field_validator("model")
    @classmethod
    def _model(cls, value: str | None) -> str | None:
        return None if value is None else check_model(value)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None) -> str | None:
        return None if value is None else check_provider(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_endpoint_name(value)

    def fields(self) -> dict[str, Any]:
        """The run fields it sets (null removes). Where it runs is the run's unless it says:
        an endpoint replaces the run's provider, and a provider or a model suffix replaces
        the run's endpoint and provider."""
        fields: dict[str, Any] = {} if self.model is None else {"model": self.model}
        if self.endpoint is not None:
            fields.update(endpoint=self.endpoint, provider=self.provider)
        elif self.provider is not None or ":" in (self.model or ""):
            fields.update(provider=self.provider, endpoint=None)
        return fields


def _echo(value: str) -> str:
    return repr(value if len(value) <= _MAX_ECHO else value[:_MAX_ECHO] + "...")


def _visible(char: str) -> bool:
    """Not whitespace, and not an invisible format character (Unicode Cf: U+200B, U+FEFF)."""
    return not char.isspace() and unicodedata.category(char) != "Cf"


class RunInputs(BaseModel):
    """The validated inputs of one inference run."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str
    text: str | None = Field(default=None, min_length=1)
    # The image or sound of a media task: s3://, https://, a data: URL, base64, or (from the
    # CLI) a file path. Read when the run starts (function.media).
    image: str | None = Field(default=None, min_length=1)
    audio: str | None = Field(default=None, min_length=1)
    candidate_labels: list[str] | None = None
    wait_for_model: bool = True
    task: TaskName | None = None
    parameters: dict[str, Any] = Field(default_factory=dict)
    inputs: dict[str, Any] | None = None
    # Where the model runs: a provider of the router (text-generation), or a named endpoint.
    provider: str | None = None
    endpoint: str | None = None
    # text-generation: a system prompt before `text`, or the whole conversation.
    system: str | None = Field(default=None, min_length=1)
    messages: list[ChatMessage] | None = Field(default=None, min_length=1, max_length=1000)
    # Alternates tried in order when the model fails in a way another could fix.
    fallback: list[Alternate] | None = Field(default=None, max_length=MAX_FALLBACK)
    # Answers kept across runs for this long: "off" (the default), "1h", "7d" (function.cache).
    cache: str | None = None
    # Stop starting items past this much use, per run or per day: checked here, read as a
    # `function.budget.Budget` by the runs that have one (only they pay for its model).
    budget: dict[str, Any] | None = None

    @field_validator("model")
    @classmethod
    def _model_id(cls, value: str) -> str:
        return check_model(value)

    @field_validator("provider")
    @classmethod
    def _provider(cls, value: str | None) -> str | None:
        return None if value is None else check_provider(value)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return None if value is None else check_endpoint_name(value)

    @field_validator("text")
    @classmethod
    def _some_text(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("expected some text, got only whitespace")
        if value is not None and not any(_visible(c) for c in value):  # stops at the first
            raise ValueError(
                "expected some text, got only whitespace and invisible characters "
                "(zero-width spaces, joiners, byte order marks)"
            )
        return value

    @field_validator("budget", mode="before")
    @classmethod
    def _budget(cls, value: Any) -> Any:
        if value is None:
            return None
        from function.budget import Budget

        try:
            return Budget.model_validate(value).model_dump(exclude_none=True)
        except ValidationError as exc:
            raise ValueError(describe_validation_error(exc)) from None

    @field_validator("cache", mode="before")
    @classmethod
    def _cache(cls, value: Any) -> str | None:
        from function.cache import lifetime

        lifetime(value)
        return value

    @property
    def cache_seconds(self) -> float:
        from function.cache import lifetime

        return lifetime(self.cache)

    @field_validator("candidate_labels", mode="before")
    @classmethod
    def _split_labels(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = value.split(",")
        if isinstance(value, list):
            value = [v.strip() if isinstance(v, str) else v for v in value]
            if any(v == "" for v in value):
                value = [v for v in value if v != ""]
            if not value:
                raise ValueError("expected at least one label")
        return value

    @model_validator(mode="after")
    def _resolve_task(self) -> RunInputs:
        task = self.task or _infer_task(self)
        if task is None:
            # No task named or implied: the server runs the model's own pipeline on `text`.
            if self.provider == LOCAL_PROVIDER:
                raise ValueError(
                    "task: provider 'local' needs the task named (--task, or task in the "
                    "run config): the model's own pipeline is known only to the Hub"
                )
            for name in ("image", "audio"):
                if getattr(self, name) is not None:
                    raise ValueError(f"task: name the task that reads the {name}: {_readers(name)}")
            if self.text is None:
                raise ValueError(
                    "text is required (or name a task, or give candidate_labels or inputs)"
                )
            return self
        _check_task_fields(task, self)
        _check_route(task, self)
        if self.task is None:
            object.__setattr__(self, "task", task)
        for i, alternate in enumerate(self.fallback or ()):
            try:
                self.alternate(alternate)
            except ValidationError as exc:
                raise ValueError(f"fallback[{i}]: {describe_validation_error(exc)}") from None
        return self

    @property
    def labels(self) -> list[str] | None:
        return self.candidate_labels or self.parameters.get("candidate_labels")

    @property
    def model_id(self) -> str:
        """The Hub id, without a provider suffix."""
        return self.model.partition(":")[0]

    @property
    def routed_provider(self) -> str | None:
        """The provider or policy the router is asked for (None: the router picks)."""
        suffix = self.model.partition(":")[2].lower() or None
        chosen = suffix or self.provider
        return None if chosen in (None, "auto", LOCAL_PROVIDER) else chosen

    def alternate(self, alternate: Alternate) -> RunInputs:
        """The same run on another model, provider or endpoint."""
        fields = self.model_dump(exclude={"fallback"}, exclude_none=True)
        if alternate.model is None:  # the run's model elsewhere: its own suffix stays behind
            fields["model"] = self.model_id
        for key, value in alternate.fields().items():
            if value is None:
                fields.pop(key, None)
            else:
                fields[key] = value
        return RunInputs.model_validate(fields)


def _infer_task(inputs: RunInputs) -> str | None:
    fields = {name: getattr(inputs, name) for name in _IMPLYING}
    return implied_task({**fields, "candidate_labels": inputs.labels})


def implied_task(fields: Mapping[str, Any]) -> str | None:
    """The task that run inputs name, or imply by their fields."""
    if fields.get("task"):
        return str(fields["task"])
    model, provider = fields.get("model"), fields.get("provider")
    if (
        fields.get("messages") is not None
        or fields.get("system") is not None
        or (isinstance(model, str) and ":" in model)
        or (
            isinstance(provider, str)
            and provider.lower() not in ("auto", HF_INFERENCE, LOCAL_PROVIDER)
        )
    ):
        return "text-generation"
    parameters = fields.get("parameters")
    if fields.get("candidate_labels") or (
        isinstance(parameters, dict) and parameters.get("candidate_labels")
    ):
        return (
            "zero-shot-image-classification" if fields.get("image") else "zero-shot-classification"
        )
    structured = fields.get("inputs")
    if isinstance(structured, dict):
        if "question" in structured and "context" in structured:
            return "question-answering"
        if "source_sentence" in structured and "sentences" in structured:
            return "sentence-similarity"
    return None


_IMPLYING = ("model", "provider", "system", "messages", "inputs", "image")
_STRUCTURED_FIELDS = {
    "question-answering": {"question": str, "context": str},
    "sentence-similarity": {"source_sentence": str, "sentences": list},
}


def _check_route(task: str, inputs: RunInputs) -> None:
    """Providers and chat inputs belong to text-generation; the other tasks run on
    hf-inference or a named endpoint."""
    suffix = inputs.model.partition(":")[2]
    if task == "text-generation":
        if suffix and inputs.provider not in (None, "auto", suffix.lower()):
            raise ValueError(
                f"model {inputs.model!r} names provider {suffix!r}, but provider is "
                f"{inputs.provider!r}; give one of them"
            )
        if (suffix or inputs.provider not in (None, "auto")) and inputs.endpoint:
            raise ValueError("a provider and an endpoint cannot both be given; choose one")
        if inputs.messages is not None and (inputs.text is not None or inputs.system):
            raise ValueError(
                "give text (with an optional system prompt) or messages, not both; a system "
                "message goes first in messages"
            )
        return
    if suffix:
        raise ValueError(
            f"model: a ':{suffix}' provider suffix is for text-generation; task {task!r} "
            "runs on hf-inference or a named endpoint"
        )
    if inputs.provider not in (None, "auto", HF_INFERENCE, LOCAL_PROVIDER):
        raise ValueError(
            f"provider: {inputs.provider!r} serves text-generation here; task {task!r} runs "
            "on hf-inference (provider 'hf-inference'), in this process (provider 'local') "
            "or on a named endpoint"
        )
    if inputs.provider == LOCAL_PROVIDER and (task in MEDIA_TASKS or task == "text-to-image"):
        raise ValueError(
            f"provider: 'local' runs the text tasks; task {task!r} runs on hf-inference or a "
            "named endpoint"
        )
    if inputs.provider == LOCAL_PROVIDER and inputs.endpoint:
        raise ValueError("provider 'local' and an endpoint cannot both be given; choose one")
    for name in ("system", "messages"):
        if getattr(inputs, name) is not None:
            raise ValueError(f"{name} is only used by text-generation, not {task!r}")


def _readers(field: str) -> str:
    return ", ".join(task for task, reads in MEDIA_TASKS.items() if reads == field)


def _check_task_fields(task: str, inputs: RunInputs) -> None:
    if inputs.candidate_labels and task not in ZERO_SHOT_TASKS:
        raise ValueError(
            f"candidate_labels is only used by {' and '.join(ZERO_SHOT_TASKS)} (the task is "
            f"{task!r}); pass candidate_labels: null to drop the run config's labels"
        )
    media = MEDIA_TASKS.get(task)
    for name in ("image", "audio"):
        if getattr(inputs, name) is not None and name != media:
            raise ValueError(f"{name} is only used by {_readers(name)}, not {task!r}")
    if media is not None:
        if getattr(inputs, media) is None:
            raise ValueError(
                f"{media} is required for task {task!r}: s3://bucket/key, an https:// URL, "
                "a data: URL or base64 (a file path from the CLI)"
            )
        for name in ("text", "inputs"):
            if getattr(inputs, name) is not None:
                raise ValueError(f"{name} is not used by {task!r}, which reads {media}")
        if task in ZERO_SHOT_TASKS and not inputs.labels:
            raise ValueError(f"candidate_labels is required for {task}")
        return
    expected = _STRUCTURED_FIELDS.get(task)
    if expected is None:
        if inputs.text is None and not (task == "text-generation" and inputs.messages):
            needed = "text or messages" if task == "text-generation" else "text"
            raise ValueError(f"{needed} is required for task {task!r}")
        if inputs.inputs is not None:
            raise ValueError(
                f"inputs is only used by question-answering and sentence-similarity, "
                f"not {task!r}; use text"
            )
        if task == "zero-shot-classification" and not inputs.labels:
            raise ValueError("candidate_labels is required for zero-shot-classification")
        return
    structured = inputs.inputs or {}
    for name, kind in expected.items():
        value = structured.get(name)
        if not isinstance(value, kind) or not value:
            what = "a non-empty list of strings" if kind is list else "a non-empty string"
            raise ValueError(f"inputs.{name} must be {what} for task {task!r}")
    sentences = structured.get("sentences")
    if sentences is not None and not all(isinstance(s, str) for s in sentences):
        raise ValueError("inputs.sentences must be a list of strings")
    extra = set(structured) - set(expected)
    if extra:
        raise ValueError(
            f"inputs has unknown field(s) {sorted(extra)} for task {task!r}; "
            f"expected {sorted(expected)}"
        )


_TASK_SPECIFIC = ("task", "candidate_labels", "inputs", "parameters", "system", "messages")
# A field given displaces these of the base (unless given too): the more specific wins.
_DISPLACES = {
    "messages": ("text", "system", "image", "audio"),
    "text": ("messages", "image", "audio"),
    "image": ("text", "messages", "system", "audio"),
    "audio": ("text", "messages", "system", "image"),
    "endpoint": ("provider",),
    "provider": ("endpoint",),
}
RUN_INPUT_FIELDS = frozenset(RunInputs.model_fields) | {"run_config"}


MAX_COMPARED = 16


@cache
def _alternates() -> TypeAdapter[list[Alternate]]:
    """Built on the first comparison: other runs never pay for it."""
    return TypeAdapter(Annotated[list[Alternate], Field(min_length=1, max_length=MAX_COMPARED)])


def split_comparison(fields: Mapping[str, Any]) -> tuple[list[tuple[Any, dict[str, Any]]], dict]:
    """A comparison's alternates, each as given and as the run fields it sets (see
    `Alternate.fields`), and the fields they share."""
    shared = {k: v for k, v in fields.items() if k != "compare"}
    given = fields["compare"]
    try:
        alternates = _alternates().validate_python(given)
    except ValidationError as exc:
        raise InputError("Invalid input: compare" + _located(exc)) from None
    chosen = [(raw, a.fields()) for raw, a in zip(given, alternates, strict=True)]
    if implied_task(shared) is None:
        # One input, one task: an alternate that implies one (`m:groq` is text-generation)
        # sets it for all, so that `Qwen/...` beside it is not run as the run config's task.
        implied = (implied_task({**shared, **fields}) for _, fields in chosen)
        task = next((t for t in implied if t is not None), None)
        if task is not None:
            shared["task"] = task
    return chosen, shared


def _located(exc: ValidationError) -> str:
    """`.0.model: ...` or `: ...` (a problem with the list itself)."""
    text = describe_validation_error(exc)
    return text if text.startswith(".") else (f".{text}" if text[:1].isdigit() else f": {text}")


def is_batch(fields: Mapping[str, Any]) -> bool:
    """Many items: `items`, `text` as a list, or `input_uri` (see `function.batchfields`)."""
    return "items" in fields or "input_uri" in fields or isinstance(fields.get("text"), list)


# --- run config files -------------------------------------------------------------------


MAX_RUN_CONFIG_BYTES = 1024 * 1024
_RUN_CONFIG_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")


def find_run_config(name: str, settings: Settings, *, paths: bool = False) -> Path:
    """A run config by name (`default`, `default.json`) in the run config folder; with
    `paths` (the CLI, the RUN_CONFIG setting) also a path. An event names run configs only:
    it cannot make the job read any other file."""
    directory = settings.run_config_dir
    if not name:
        raise InputError("run_config: expected the name of a run config, not an empty string")
    candidates = [directory / name, directory / f"{name}.json"]
    if paths and ("/" in name or name.endswith(".json")):
        candidates.insert(0, Path(name))
    elif not _RUN_CONFIG_NAME.fullmatch(name):
        raise InputError(
            f"run_config: {_echo(name)} is not a run config name; expected a name in "
            f"{directory} (letters, digits, '-', '_', '.')"
        )
    for path in candidates:
        try:
            if path.is_file():
                return path
        except (OSError, ValueError):  # a name too long, a NUL byte
            break
    available = sorted(p.stem for p in directory.glob("*.json")) if directory.is_dir() else []
    raise InputError(
        f"run_config: no run config named {_echo(name)} in {directory} "
        f"(available: {', '.join(available) or 'none'})"
    )


def load_run_config(name: str, settings: Settings, *, paths: bool = False) -> dict[str, Any]:
    path = find_run_config(name, settings, paths=paths)
    try:
        if path.stat().st_size > MAX_RUN_CONFIG_BYTES:
            raise InputError(f"run_config: {path} is over {MAX_RUN_CONFIG_BYTES:,} bytes")
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"run_config: cannot read {path}: {exc.__class__.__name__}") from None
    except json.JSONDecodeError as exc:
        raise InputError(
            f"run_config: {path} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    if not isinstance(data, dict):
        raise InputError(f"run_config: {path} must hold a JSON object")
    unknown = sorted(str(k) for k in data if k not in RunInputs.model_fields)
    if unknown:
        raise InputError(
            f"run_config: {path} has unknown field(s) "
            f"{did_you_mean(unknown, RunInputs.model_fields)}"
        )
    return data


NAMED_AT_MOST = 5  # unknown names an error lists: a line of 40,000 names is not 40,000 lines


def did_you_mean(unknown: list[str], known: Iterable[str]) -> str:
    import difflib  # only an error pays for it

    known = sorted(known)
    named = []
    for name in unknown[:NAMED_AT_MOST]:
        close = difflib.get_close_matches(name[:100], known, n=1)
        named.append(f"{_echo(name)} (did you mean {close[0]!r}?)" if close else _echo(name))
    more = len(unknown) - NAMED_AT_MOST
    return (
        ", ".join(named)
        + (f" and {more:,} more" if more > 0 else "")
        + f"; expected some of {', '.join(known)}"
    )


def merge_inputs(
    overrides: Mapping[str, Any], settings: Settings, *, paths: bool = False
) -> dict[str, Any]:
    """The run config named by the event (else `RUN_CONFIG`), with the event's fields on top
    (see `overlay`). `paths`: the overrides may name a run config by its path (the CLI)."""
    check_fields(overrides)
    named = overrides.get("run_config")
    if named is not None and not isinstance(named, str):
        raise InputError("run_config: expected the name of a run config")
    if named is None:  # the setting is the operator's: a path is fine there
        return overlay(load_run_config(settings.run_config, settings, paths=True), overrides)
    return overlay(load_run_config(named, settings, paths=paths), overrides)


# A batch item brings its own input, or the batch's shared fields give one to all its items:
# a run config's text, image or sound is for its single runs, never a batch item's.
ITEM_INPUTS = ("text", "inputs", "messages", "image", "audio")


def batch_base(
    shared: Mapping[str, Any], settings: Settings, *, paths: bool = False
) -> dict[str, Any]:
    """What a batch's items lie over: the run config under the batch's shared fields, less
    the run config's input (`ITEM_INPUTS`)."""
    base = merge_inputs(shared, settings, paths=paths)
    for key in ITEM_INPUTS:
        if key not in shared:
            base.pop(key, None)
    return base


def overlay(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """`overrides` on top of `base`.

    `parameters` merge key by key; any other field replaces the base's; a field set to null
    removes the base's value. Overrides that name or imply another task than the base's
    (`task`, `candidate_labels`, `inputs` with a question, an image or a sound over a text
    task's config) start that task afresh: the base's
    fields that fit only its own task (candidate_labels, inputs, parameters) are left out;
    its model, text and wait_for_model still apply. The same fields in the overrides
    themselves are checked against the task as usual.
    """
    check_fields(overrides)
    merged = dict(base)
    model = overrides.get("model")
    if isinstance(model, str) and ":" in model:  # the model names where it runs
        for key in ("provider", "endpoint"):
            if key not in overrides:
                merged.pop(key, None)
    asked = implied_task(overrides)
    base_task = implied_task(merged)
    media_over_text = any(overrides.get(k) is not None for k in ("image", "audio")) and (
        base_task not in MEDIA_TASKS
    )
    if (asked and asked != base_task) or media_over_text:
        for key in _TASK_SPECIFIC:
            merged.pop(key, None)
    for key, others in _DISPLACES.items():  # e.g. a conversation replaces a text
        if overrides.get(key) is not None:
            for other in others:
                if other not in overrides:
                    merged.pop(other, None)
    for key, value in overrides.items():
        if key == "run_config":
            continue
        if key == "parameters" and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        elif value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def check_fields(overrides: Mapping[str, Any]) -> None:
    unknown = sorted(str(k) for k in overrides if k not in RUN_INPUT_FIELDS)
    if unknown:
        raise InputError(f"unknown input field(s): {did_you_mean(unknown, RUN_INPUT_FIELDS)}")


def run_config_name(overrides: Mapping[str, Any], settings: Settings) -> str | None:
    """The run config a run starts from (for run records), when it is a name."""
    name = overrides.get("run_config") or settings.run_config
    return name if isinstance(name, str) else None


def validate_inputs(merged: Mapping[str, Any]) -> RunInputs:
    try:
        return RunInputs.model_validate(merged)
    except ValidationError as exc:
        raise InputError("Invalid input: " + describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """`field: what was expected` for each problem, without echoing long input values."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        problems.append(f"{where}: {msg}" if where else msg)
    return "; ".join(problems)


def requested_model(merged: Mapping[str, Any]) -> str | None:
    """The model id as the user asked for it, for failure envelopes (when it is a string)."""
    model = merged.get("model")
    if isinstance(model, str) and len(model) <= 200:
        return model
    return None


def places(fields: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Where merged run fields run: a comparison's alternates, else the run and its
    fallbacks, each as the fields of one run (an alternate laid over the run's, as
    `Alternate.fields` does, without validating: bad ones fail when they run)."""
    fallback = fields.get("fallback")
    alternates = fields.get("compare") if "compare" in fields else fallback
    runs = [] if "compare" in fields else [dict(fields)]
    for alternate in alternates if isinstance(alternates, list) else []:
        own = alternate if isinstance(alternate, Mapping) else {"model": alternate}
        run = {**fields, **own}
        if ":" in str(own.get("model") or "") or own.get("endpoint"):
            run["provider"] = own.get("provider")  # a place of its own: not the run's
        runs.append(run)
    return runs


def _is_local(run: Mapping[str, Any]) -> bool:
    provider = str(run.get("provider") or "").lower()
    return provider == LOCAL_PROVIDER and not run.get("endpoint")


def runs_locally(fields: Mapping[str, Any]) -> bool:
    """Whether every run of these fields is in this process (then no token is needed)."""
    runs = places(fields)
    return bool(runs) and all(_is_local(run) for run in runs)


def local_models(settings: Settings, names: Iterable[str] | None = None) -> list[str]:
    """The models that run configs run in this process (`provider: local`, their fallbacks
    and comparisons included), in order, once each: what a container image must hold."""
    if names is None:
        names = sorted(p.stem for p in settings.run_config_dir.glob("*.json"))
    models: dict[str, None] = {}
    for name in names:
        for run in places(load_run_config(name, settings, paths=True)):
            if _is_local(run):
                models[str(run.get("model") or "").partition(":")[0]] = None
    return [model for model in models if model]
