"""`provider: local`: the run's task in this process, as hf-inference would run it.

hf-inference runs `transformers` pipelines, and `sentence-transformers` for sentence models
(a repo with `modules.json`) on feature-extraction and sentence-similarity. This does the
same with the model from the Hugging Face cache, and answers with the JSON the API sends,
so that the task's own code reads it into the same envelope (`function.tasks`):

    Call  url "local:/models/{id}/pipeline/{task}", the task's payload
      -> the model: found in the cache (downloaded unless HF_HUB_OFFLINE), refused from its
         files' sizes when over HF_LOCAL_MAX_MODEL_MB, loaded once per process; at most
         HF_LOCAL_MAX_MODELS stay loaded (the least recently used goes)
      -> its pipeline, in a worker thread, one call at a time per model. A list of inputs
         is one call, run `batch_size` texts at a time: a batch's items come as lists of
         texts of about the same length (`function.coalescer`)
      -> the answer, shaped as the API's

Loading and running count against the deadline: past it the run fails as a timeout while
the thread finishes, and a model that finishes loading stays for the runs that follow.
This module is imported only by a local run; torch and transformers are imported by the
thread that loads the first model.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import NonNegativeInt, PositiveInt, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from function.client import LOCAL, ApiResponse, Call, Deadline
from function.envelope import Usage
from function.errors import (
    ConfigError,
    InputError,
    LocalModelError,
    LocalRunError,
    UpstreamTimeoutError,
)
from function.redact import redact
from function.settings import MIB, Settings
from function.threads import Worker, bounded

# What a model needs to load (configs, tokenizers, safetensors weights); never code.
_FILES = ["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken", "*/*.json", "*/*.txt"]
_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth", ".h5", ".msgpack", ".onnx")
# Tasks whose pipeline takes a list of texts: a batch sends its texts as lists.
LIST_TASKS = frozenset(
    {
        "feature-extraction",
        "text-classification",
        "zero-shot-classification",
        "token-classification",
        "fill-mask",
        "summarization",
        "translation",
    }
)
CALL_S = 10.0  # a call to a model holds about this much work at most
FIRST_CALL = 8  # texts in a model's calls until one has been timed
CALL_BATCHES = 4  # batches a call holds at most: fewer trips between the model and the loop
MAX_TOKENS = 1 << 20  # what a text is cut to for ordering, when its model says no limit
TOKEN_CHARS = 16  # characters a token hardly ever exceeds
EXTRA = "pip install 'hf-run-job[local]' (with a CPU build of torch: see the README)"


async def post_json(call: Call, settings: Settings, deadline: Deadline) -> ApiResponse:
    """Run a call in-process: the Fetcher's `post_json`, for `local:` URLs."""
    model_id, _, task = call.url.removeprefix(f"{LOCAL}/models/").partition("/pipeline/")
    check_parameters(task, call.payload)
    loading = MODELS.get(model_id, task, settings)
    if not loading.done():
        try:
            async with asyncio.timeout(deadline.remaining()):
                await asyncio.shield(asyncio.wrap_future(loading))
        except TimeoutError:
            raise _late(f"Model '{model_id}' did not finish loading before the deadline") from None
    model = loading.result()  # or the load's error

    def answer() -> tuple[Any, float]:
        started = time.monotonic()  # in the model's thread: its work, not the wait for it
        body = model.answer(call.payload, deadline.remaining(), call.batch_size)
        seconds = time.monotonic() - started
        texts = call.payload.get("inputs")
        if isinstance(texts, list) and texts:  # timed here: also when the run stopped waiting
            model.seconds_a_char = seconds / max(1, sum(len(str(t)) for t in texts))
        return body, seconds

    try:  # the model's own thread: asyncio.run would wait for the default executor's
        body, seconds = await bounded(answer, deadline, model.worker)
    except TimeoutError:
        raise _late(f"Model '{model_id}' did not answer before the deadline") from None
    except (InputError, LocalModelError):
        raise
    except Exception as exc:
        raise LocalRunError(
            f"The local {task} pipeline of model '{model_id}' failed: "
            f"{type(exc).__name__}: {redact(str(exc)[:300])}"
        ) from None
    usage = Usage(compute_time_s=round(seconds, 4), compute_type="local")
    return ApiResponse(body, usage, attempts=1, size=_size(body))


def call_size(call: Call, sizes: list[int], batch_size: int, deadline: Deadline) -> int:
    """How many of the next texts (`sizes`: their characters, in the order they go) make
    the model's next call: `CALL_BATCHES` batches at most, and no more than it runs in
    `CALL_S` or a quarter of the time left, by the speed of its last call (at least one
    text; `FIRST_CALL` texts until it has been timed). So a batch answers texts before its
    deadline whatever its `batch_size`, and a call's memory stays bounded."""
    model_id, _, task = call.url.removeprefix(f"{LOCAL}/models/").partition("/pipeline/")
    model = MODELS.loaded(model_id, task)
    speed = None if model is None else model.seconds_a_char
    if speed is None:
        return min(batch_size, FIRST_CALL)
    seconds, work = min(CALL_S, deadline.remaining() / 4), 0.0
    for count, size in enumerate(sizes[: batch_size * CALL_BATCHES]):
        work += size * speed
        if work > seconds:
            return max(1, count)
    return batch_size * CALL_BATCHES


def _late(message: str) -> UpstreamTimeoutError:
    return UpstreamTimeoutError(
        f"{message}: give the run more time (--timeout, the function's timeout); in a warm "
        "process the model stays loaded for the runs that follow",
        out_of_time=True,
    )


# -- the models of this process ------------------------------------------------------------------


@dataclass
class Model:
    """A loaded model and its pipeline: `answer(payload)` gives the API's answer."""

    model_id: str
    task: str
    pipeline: Any
    sentence_transformer: bool
    lock: threading.Lock
    worker: Worker  # runs the calls in turn, on a thread that keeps torch's pool warm
    seconds_a_char: float | None = None  # as its last list of texts took

    def answer(self, payload: dict[str, Any], seconds: float, batch_size: int) -> Any:
        """The answer, within `seconds` where the pipeline can be told (text generation
        stops there); the deadline bounds the wait for the others. A list of texts gets a
        list of answers, one a text, run `batch_size` texts at a time."""
        inputs = payload.get("inputs")
        if isinstance(inputs, list) and len(inputs) == 1 and self.task in LIST_TASKS:
            # Pipelines answer a list of one as they answer the text alone: wrap that.
            return [self.answer({**payload, "inputs": inputs[0]}, seconds, batch_size)]
        with self.lock:  # one call at a time: a tokenizer is not safe across threads
            answer = ANSWERS[self.task](self, payload, seconds, batch_size)
        # Sentence models answer lists of floats already; pipelines hold numpy scalars.
        return answer if self.sentence_transformer else _plain(answer)


class Models:
    """Loaded models by (model, task), at most `HF_LOCAL_MAX_MODELS`, shared by every run of
    the process: each loads once, in a thread of its own, whoever asks for it meanwhile
    waits for the same load. A load that fails is forgotten, to be tried again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._models: OrderedDict[tuple[str, str], Future[Model]] = OrderedDict()

    def get(self, model_id: str, task: str, settings: Settings) -> Future[Model]:
        key = (model_id, task)
        with self._lock:
            known = self._models.get(key)
            if known is not None and not (known.done() and known.exception() is not None):
                self._models.move_to_end(key)
                return known
            loading: Future[Model] = Future()
            loading.set_running_or_notify_cancel()  # nobody can cancel a load others share
            self._models[key] = loading
            while len(self._models) > settings.local_max_models:
                oldest = next(iter(self._models))
                if not self._models[oldest].done():
                    break  # still loading: it goes once it is done and no longer the newest
                del self._models[oldest]
                gc.unfreeze()  # its cycles can be collected (the next load freezes again)
        thread = threading.Thread(
            target=self._load, args=(key, loading, settings), daemon=True, name="load-model"
        )
        thread.start()
        return loading

    def loaded(self, model_id: str, task: str) -> Model | None:
        """The model if it has loaded (else None), without loading it."""
        with self._lock:
            known = self._models.get((model_id, task))
        if known is None or not known.done() or known.exception() is not None:
            return None
        return known.result()

    def _load(self, key: tuple[str, str], loading: Future[Model], settings: Settings) -> None:
        try:
            with _ONE_LOAD_AT_A_TIME:  # transformers' loading is not safe across threads
                model = load(*key, settings)
                # torch and the loaded models are hundreds of thousands of objects that stay:
                # out of the garbage collector's sight, a batch's full collections take
                # milliseconds, not half a second each with the event loop and the model
                # stopped. A model that leaves the cache is given back to it (`get`), and
                # collected here before the rest is frozen again.
                gc.collect()
                gc.freeze()
            loading.set_result(model)
        except BaseException as exc:
            with self._lock:
                if self._models.get(key) is loading:
                    del self._models[key]
            loading.set_exception(exc)

    def clear(self) -> None:
        with self._lock:
            self._models.clear()
        gc.unfreeze()


MODELS = Models()
_ONE_LOAD_AT_A_TIME = threading.Lock()


def load(model_id: str, task: str, settings: Settings) -> Model:
    """Find the model's files, check their size, and build its pipeline."""
    folder = files(model_id, settings)
    sentence = (folder / "modules.json").is_file() and task in SENTENCE_TASKS
    if sentence:
        _check_modules(model_id, folder)
    else:
        _check_head(model_id, task, folder)
    try:
        _check_weights(model_id, folder, settings)
        pipeline = _sentence_model(folder) if sentence else _pipeline(task, folder)
    except ImportError as exc:
        raise ConfigError(f"provider: local needs {exc.name or 'torch'}: {EXTRA}") from None
    except LocalModelError:
        raise
    except Exception as exc:
        raise LocalModelError(
            f"Model '{model_id}' in {folder} could not be loaded for {task}: "
            f"{type(exc).__name__}: {str(exc)[:300]}. If its files are damaged, fetch it again "
            f"with `hf download {model_id}`"
        ) from None
    return Model(model_id, task, pipeline, sentence, threading.Lock(), Worker(f"model-{task}"))


def _check_weights(model_id: str, folder: Path, settings: Settings) -> None:
    """Refuse before loading a model too large for HF_LOCAL_MAX_MODEL_MB, by its files'
    sizes and by the size its config describes (built on the meta device: no memory), and
    a model whose files hold far fewer weights than its config needs: transformers would
    fill the rest with random ones, and answer noise."""
    import torch
    from transformers import AutoConfig, AutoModel

    stored_bytes = sum(p.stat().st_size for p in folder.rglob("*") if p.name.endswith(_WEIGHTS))
    try:
        config = AutoConfig.from_pretrained(folder)
        with torch.device("meta"):
            needed = sum(p.numel() for p in AutoModel.from_config(config).parameters())
    except Exception:  # an architecture transformers builds otherwise: loading will tell
        needed = 0
    size = max(stored_bytes, 4 * needed)  # loaded as float32
    limit = settings.local_max_model_mb * MIB
    if size > limit:
        raise LocalModelError(
            f"Model '{model_id}' is too large to run here: its weights take {size / MIB:,.0f} "
            f"MB, over HF_LOCAL_MAX_MODEL_MB ({settings.local_max_model_mb:,} MB). Give the "
            "function more memory (and raise the setting), or choose a smaller model"
        )
    stored = _stored_weights(folder)
    if needed and stored is not None and stored < 0.9 * needed:
        raise LocalModelError(
            f"Model '{model_id}' is damaged: its files hold {stored:,} weights where its "
            f"config needs {needed:,}. Fetch it again with `hf download {model_id}`"
        )


def _stored_weights(folder: Path) -> int | None:
    """How many numbers the safetensors files hold, from their headers (None: none)."""
    from safetensors import safe_open

    paths = list(folder.rglob("*.safetensors"))
    if not paths:
        return None
    total = 0
    for path in paths:
        with safe_open(str(path), framework="pt") as weights:
            for name in weights.keys():  # noqa: SIM118 (a safetensors handle, not a dict)
                total += math.prod(weights.get_slice(name).get_shape())
    return total


def _check_modules(model_id: str, folder: Path) -> None:
    """A sentence-transformers model is made of sentence-transformers' own modules: one
    that names other code would run that code."""
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        modules = None
    types = (
        [m.get("type") for m in modules if isinstance(m, dict)] if isinstance(modules, list) else []
    )
    if not types or not all(
        isinstance(t, str) and t.startswith("sentence_transformers.") for t in types
    ):
        raise LocalModelError(
            f"Model '{model_id}' names modules that are not sentence-transformers' own "
            "(modules.json): code from a model repo is never run"
        )


# The heads a task's pipeline needs, by the end of the class names a model's config lists
# (`architectures`). Without one, transformers would add a head of random weights and the
# run would "succeed" with noise; hf-inference does not serve a task a model has no head for.
_HEADS = {
    "text-classification": ("ForSequenceClassification",),
    "zero-shot-classification": ("ForSequenceClassification",),
    "token-classification": ("ForTokenClassification",),
    "question-answering": ("ForQuestionAnswering",),
    "fill-mask": ("ForMaskedLM", "ForPreTraining", "WithLMHead"),
    "summarization": ("ForConditionalGeneration", "ForSeq2SeqLM"),
    "translation": ("ForConditionalGeneration", "ForSeq2SeqLM"),
    "text-generation": ("ForCausalLM", "LMHeadModel", "ForConditionalGeneration"),
}


def _check_head(model_id: str, task: str, folder: Path) -> None:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # loading says what is wrong with it
    architectures = config.get("architectures") if isinstance(config, dict) else None
    heads = _HEADS.get(task)
    if not heads or not isinstance(architectures, list) or not architectures:
        return
    if not any(isinstance(a, str) and a.endswith(heads) for a in architectures):
        raise LocalModelError(
            f"Model '{model_id}' ({', '.join(map(str, architectures))[:100]}) has no {task} "
            "head: name the task it was trained for (its model card's pipeline tag), or "
            "another model"
        )
    labels = {str(v).lower() for v in (config.get("id2label") or {}).values()}
    if task == "zero-shot-classification" and not any(x.startswith("entail") for x in labels):
        raise LocalModelError(
            f"Model '{model_id}' is not a natural-language-inference model (no 'entailment' "
            "label): zero-shot-classification needs one, e.g. facebook/bart-large-mnli"
        )


def files(model_id: str, settings: Settings) -> Path:
    """The model's folder in the Hugging Face cache (HF_HOME / HF_HUB_CACHE), downloaded
    there first unless HF_HUB_OFFLINE is set."""
    try:
        from huggingface_hub import constants, snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError
    except ImportError:
        raise ConfigError(f"provider: local needs transformers: {EXTRA}") from None
    offline = settings.hf_hub_offline or constants.HF_HUB_OFFLINE
    try:
        folder = Path(snapshot_download(model_id, allow_patterns=_FILES, local_files_only=offline))
    except LocalEntryNotFoundError as exc:
        cause = exc.__cause__ or exc.__context__
        reason = f" ({type(cause).__name__})" if cause is not None else ""
        why = (
            "downloads are off (HF_HUB_OFFLINE)"
            if offline
            else f"it could not be downloaded{reason}"
        )
        raise _not_cached(model_id, constants.HF_HUB_CACHE, why) from None
    except Exception as exc:  # the hub refused it (gated, private, no such repo) or broke
        raise _not_cached(
            model_id, constants.HF_HUB_CACHE, f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    if not any(p.name.endswith(_WEIGHTS) for p in folder.rglob("*")):
        raise _not_cached(model_id, constants.HF_HUB_CACHE, "its cached folder has no weights")
    return folder


def _not_cached(model_id: str, cache: str, why: str) -> LocalModelError:
    return LocalModelError(
        f"Model '{model_id}' is not in the Hugging Face cache ({cache}) and {why}. "
        f"Fetch it with `HF_HUB_CACHE={cache} HF_HUB_OFFLINE=0 hf download {model_id}` (hf is "
        "in the [local] extra's environment), or set HF_HOME / HF_HUB_CACHE to where it is"
    )


def _pipeline(task: str, folder: Path) -> Any:
    from transformers import pipeline
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()  # not "Device set to use cpu" on each load

    return pipeline(task, model=str(folder), device="cpu")


def _sentence_model(folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", local_files_only=True)


# -- answers, shaped as hf-inference's ------------------------------------------------------------


def _parameters(payload: dict[str, Any], *names: str) -> dict[str, Any]:
    given = payload.get("parameters") or {}
    return {name: given[name] for name in names if given.get(name) is not None}


class _Classification(TypedDict, total=False):
    top_k: PositiveInt
    function_to_apply: Literal["sigmoid", "softmax", "none"]


class _Entities(TypedDict, total=False):
    aggregation_strategy: Literal["none", "simple", "first", "average", "max"]
    ignore_labels: list[str]
    stride: NonNegativeInt


class _FillMask(TypedDict, total=False):
    top_k: PositiveInt
    targets: list[str]


class _ZeroShot(TypedDict, total=False):
    candidate_labels: list[str]
    multi_label: bool
    hypothesis_template: str


class _Question(TypedDict, total=False):
    top_k: PositiveInt
    max_answer_len: PositiveInt
    handle_impossible_answer: bool


class _Embedding(TypedDict, total=False):
    normalize: bool
    prompt_name: str
    truncation: bool


class _Text2Text(TypedDict, total=False):
    src_lang: str
    tgt_lang: str
    truncation: Literal["do_not_truncate", "longest_first", "only_first", "only_second"]
    generate_parameters: dict[str, Any]


# The parameters each pipeline is given, typed as the task's official input schema types
# them: a wrong one is the run's invalid input, named, not an error deep in transformers.
_PARAMETERS: dict[str, type] = {
    "text-classification": _Classification,
    "token-classification": _Entities,
    "fill-mask": _FillMask,
    "zero-shot-classification": _ZeroShot,
    "question-answering": _Question,
    "feature-extraction": _Embedding,
    "summarization": _Text2Text,
    "translation": _Text2Text,
}


def check_parameters(task: str, payload: Any) -> None:
    """The run's parameters for the task's pipeline, or InputError naming the wrong one."""
    shape = _PARAMETERS.get(task)
    given = payload.get("parameters") if isinstance(payload, dict) else None
    if shape is None or not given:
        return
    from function.inputs import describe_validation_error

    try:
        # Strict: the pipeline gets the value as given, so "false" is not taken for False.
        _adapter(shape).validate_python(
            {k: v for k, v in given.items() if v is not None}, strict=True
        )
    except ValidationError as exc:
        raise InputError(
            f"Invalid input: parameters.{describe_validation_error(exc)} (provider local)"
        ) from None


@functools.cache
def _adapter(shape: type) -> TypeAdapter[Any]:
    return TypeAdapter(shape)


def _embed(model: Model, payload: dict[str, Any], _seconds: float, batch: int) -> Any:
    texts = payload["inputs"]
    if not model.sentence_transformer:  # token embeddings: [1][tokens][d] a text
        options = {"truncation": True, **_parameters(payload, "truncation")}
        # One text a forward pass: batched, the pipeline answers each text's padding too.
        return model.pipeline(texts, **options)
    options = _parameters(payload, "prompt_name")
    if "normalize" in (payload.get("parameters") or {}):
        options["normalize_embeddings"] = bool(payload["parameters"]["normalize"])
    encode = model.pipeline.encode
    if not isinstance(texts, list):
        return encode(texts, **options).tolist()
    # encode orders the texts it is given by characters: one encode a batch keeps this order
    order = _token_order(model.pipeline.tokenizer, texts, model.pipeline.max_seq_length)
    ordered = [texts[i] for i in order]
    vectors = (
        vector
        for start in range(0, len(ordered), batch)
        for vector in encode(ordered[start : start + batch], batch_size=batch, **options).tolist()
    )
    return _restored(order, vectors)


def _in_batches(model: Model, inputs: Any, batch: int, **options: Any) -> Any:
    """The pipeline on a text, or on a list of texts `batch` at a time, in order of tokens."""
    if not isinstance(inputs, list):
        return model.pipeline(inputs, **options)
    tokenizer = model.pipeline.tokenizer
    if getattr(tokenizer, "pad_token", None) is None:
        # Texts of different lengths cannot go together: one at a time, as given.
        return model.pipeline(inputs, batch_size=1, **options)
    order = _token_order(tokenizer, inputs, tokenizer.model_max_length)
    answers = model.pipeline([inputs[i] for i in order], batch_size=batch, **options)
    return _restored(order, answers)


def _token_order(tokenizer: Any, texts: list[Any], limit: int | None) -> list[int]:
    """The texts' positions, shortest first in tokens (as the model reads them: cut at
    `limit`). A batch pads every text to its longest, and characters tell tokens apart
    badly: the bench's ticket-like texts, batched by characters, run 14% more tokens than
    they hold; by tokens, 5%, and the batch runs 8-10% faster, counting this tokenizing."""
    given = list(range(len(texts)))
    if not callable(tokenizer) or not all(isinstance(text, str) for text in texts):
        return given  # static embeddings' tokenizer is a bare `tokenizers.Tokenizer`
    limit = min(limit or MAX_TOKENS, MAX_TOKENS)  # tokenizers without a limit say 1e30
    try:  # a text longer than the model reads is not tokenized whole to be cut
        heads = [text[: limit * TOKEN_CHARS] for text in texts]
        lengths = tokenizer(heads, truncation=True, max_length=limit, return_length=True)
        return sorted(given, key=lengths["length"].__getitem__)
    except (TypeError, ValueError, KeyError, IndexError):  # an order is not worth a failure
        return given


def _restored(order: list[int], answers: Iterable[Any]) -> list[Any]:
    """Answers given in `order` (positions of the inputs), put back in the inputs' order."""
    restored: list[Any] = [None] * len(order)
    for position, answer in zip(order, answers, strict=True):
        restored[position] = answer
    return restored


def _similarity(model: Model, payload: dict[str, Any], _seconds: float, _batch: int) -> Any:
    if not model.sentence_transformer:
        raise LocalModelError(
            f"sentence-similarity runs locally on sentence-transformers models only; "
            f"'{model.model_id}' has no modules.json"
        )
    inputs = payload["inputs"]
    encode = model.pipeline.encode
    source = encode([inputs["source_sentence"]], convert_to_tensor=True)
    sentences = encode(inputs["sentences"], convert_to_tensor=True)
    return model.pipeline.similarity(source, sentences)[0].tolist()


def _classify(model: Model, payload: dict[str, Any], _seconds: float, batch: int) -> Any:
    # A long text is cut to what the model reads, as a long ticket must not fail the job.
    options = {"top_k": None, "truncation": True}
    options.update(_parameters(payload, "top_k", "function_to_apply"))
    return _in_batches(model, payload["inputs"], batch, **options)


def _zero_shot(model: Model, payload: dict[str, Any], _seconds: float, batch: int) -> Any:
    options = _parameters(payload, "candidate_labels", "multi_label", "hypothesis_template")
    return _in_batches(model, payload["inputs"], batch, **options)


def _entities(model: Model, payload: dict[str, Any], _seconds: float, batch: int) -> Any:
    options = {"aggregation_strategy": "simple"}
    options.update(_parameters(payload, "aggregation_strategy", "ignore_labels", "stride"))
    return _in_batches(model, payload["inputs"], batch, **options)


def _fill_mask(model: Model, payload: dict[str, Any], _seconds: float, batch: int) -> Any:
    return _in_batches(model, payload["inputs"], batch, **_parameters(payload, "top_k", "targets"))


def _answer_question(model: Model, payload: dict[str, Any], _seconds: float, _batch: int) -> Any:
    options = _parameters(payload, "top_k", "max_answer_len", "handle_impossible_answer")
    return model.pipeline(**payload["inputs"], **options)


def _generate_text2text(model: Model, payload: dict[str, Any], seconds: float, batch: int) -> Any:
    given = payload.get("parameters") or {}
    options = _generation(given.get("generate_parameters") or {}, seconds)
    options.update(_parameters(payload, "src_lang", "tgt_lang", "truncation"))
    return _in_batches(model, payload["inputs"], batch, **options)


# What generation may be asked for in this process, and how much of it: nothing else reaches
# `generate` (no device, no model arguments), and no request can hold the CPU for long.
MAX_NEW_TOKENS = 2048
_GENERATION_LIMITS: dict[str, float | None] = {
    "max_new_tokens": MAX_NEW_TOKENS,
    "max_length": MAX_NEW_TOKENS,
    "min_new_tokens": MAX_NEW_TOKENS,
    "min_length": MAX_NEW_TOKENS,
    "num_beams": 8,
    "no_repeat_ngram_size": 16,
    "top_k": 1000,
    "do_sample": None,
    "early_stopping": None,
    "temperature": None,
    "top_p": None,
    "typical_p": None,
    "repetition_penalty": None,
    "length_penalty": None,
    "epsilon_cutoff": None,
    "eta_cutoff": None,
}


def _generation(given: dict[str, Any], seconds: float) -> dict[str, Any]:
    """Generation options from the run's parameters, checked; generation stops at the
    deadline (`max_time`)."""
    if not isinstance(given, dict):
        raise InputError("Invalid input: parameters.generate_parameters: expected an object")
    options: dict[str, Any] = {}
    for name, value in given.items():
        if name not in _GENERATION_LIMITS:
            known = ", ".join(_GENERATION_LIMITS)
            raise InputError(
                f"Invalid input: parameters.generate_parameters.{str(name)[:40]} is not used "
                f"by provider local; expected one of {known}"
            )
        limit = _GENERATION_LIMITS[name]
        if limit is not None and not (isinstance(value, int) and 0 <= value <= limit):
            raise InputError(
                f"Invalid input: parameters.generate_parameters.{name}: expected a whole "
                f"number from 0 to {limit:.0f} (provider local)"
            )
        options[name] = value
    if math.isfinite(seconds):
        options["max_time"] = max(0.01, seconds)
    return options


def _chat(model: Model, payload: dict[str, Any], seconds: float, _batch: int) -> Any:
    """A chat model's chat template through the text-generation pipeline, answered as the
    OpenAI-compatible route answers."""
    pipeline, messages = model.pipeline, payload["messages"]
    if not getattr(pipeline.tokenizer, "chat_template", None):
        raise LocalModelError(
            f"Model '{model.model_id}' has no chat template: text-generation runs chat "
            "(instruct) models locally"
        )
    wanted = {"max_new_tokens": payload.get("max_tokens") or 256}
    temperature = payload.get("temperature")
    wanted["do_sample"] = bool(temperature) or payload.get("top_p") is not None
    if temperature:
        wanted["temperature"] = temperature
    if payload.get("top_p") is not None:
        wanted["top_p"] = payload["top_p"]
    try:
        options = {"return_full_text": False, **_generation(wanted, seconds)}
    except InputError as exc:
        message = exc.message.replace("generate_parameters.max_new_tokens", "max_tokens")
        raise InputError(message) from None
    if payload.get("seed") is not None:
        from transformers import set_seed

        set_seed(int(payload["seed"]))
    (answer,) = pipeline(messages, **options)
    text = answer["generated_text"]
    text = text if isinstance(text, str) else text[-1]["content"]
    stops = payload.get("stop") or []
    for stop in [stops] if isinstance(stops, str) else stops:
        if isinstance(stop, str) and stop:
            text = text.split(stop)[0]
    tokenizer = pipeline.tokenizer
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    completion = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    finished = completion < options["max_new_tokens"]
    return {
        "object": "chat.completion",
        "model": model.model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop" if finished else "length",
            }
        ],
        "usage": {
            "prompt_tokens": len(prompt),
            "completion_tokens": completion,
            "total_tokens": len(prompt) + completion,
        },
    }


ANSWERS: dict[str, Callable[[Model, dict[str, Any], float, int], Any]] = {
    "feature-extraction": _embed,
    "sentence-similarity": _similarity,
    "text-classification": _classify,
    "zero-shot-classification": _zero_shot,
    "token-classification": _entities,
    "fill-mask": _fill_mask,
    "question-answering": _answer_question,
    "summarization": _generate_text2text,
    "translation": _generate_text2text,
    "text-generation": _chat,
}
SENTENCE_TASKS = frozenset({"feature-extraction", "sentence-similarity"})


def _plain(value: Any) -> Any:
    """The pipeline's answer as plain JSON values (numpy scalars and arrays become numbers
    and lists), as the API's JSON would be."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, str):  # an answer may echo its input: masked as the API's are
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    tolist = getattr(value, "tolist", None)  # numpy and torch
    return _plain(tolist()) if callable(tolist) else str(value)


def _size(body: Any) -> int:
    """About how many bytes the answer would be as JSON (a batch bounds what it holds): a
    vector is counted from its length, as embeddings hold many thousands of numbers, the
    rest item by item (a call's answers grow with its texts: a sample would miss the
    longest), punctuation included."""
    if isinstance(body, list):
        if body and isinstance(body[0], float | int):
            return 20 * len(body)
        return sum(_size(item) + 1 for item in body) + 2
    if isinstance(body, dict):
        return sum(len(str(k)) + 4 + _size(v) for k, v in body.items()) + 2
    return len(str(body)) + 2
