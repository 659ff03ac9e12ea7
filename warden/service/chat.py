"""Chat model selection for hosts: ``scripted:<file>`` for tests and benchmarks, else the runtime's.

``WARDEN_CHAT_MODEL=scripted:/path/script.json`` replays a JSON script through
``ScriptedChatModel``: the keys ``IntentOutput``, ``PlanOutput`` and ``text``
map to lists of outputs, and the optional ``token_delay_seconds`` paces the
streamed answer so a client can disconnect in the middle of it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from langchain_core.outputs import ChatGenerationChunk

from warden.errors import ConfigurationError
from warden.models import ScriptedChatModel, load_chat_model
from warden.settings import Settings

SCRIPTED_PREFIX = "scripted:"


class PacedScriptedChatModel(ScriptedChatModel):
    """A ``ScriptedChatModel`` that waits ``token_delay_seconds`` before each streamed token."""

    token_delay_seconds: float = 0.0

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for chunk in super()._stream(messages, stop, run_manager, **kwargs):
            if self.token_delay_seconds:
                time.sleep(self.token_delay_seconds)
            yield chunk


def load_script(path: Path) -> PacedScriptedChatModel:
    """Build the scripted model from a JSON file; raise ``ConfigurationError`` if it is invalid."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigurationError(f"scripted model file {str(path)!r} could not be read: {error}") from None
    if not isinstance(raw, dict):
        raise ConfigurationError(f"scripted model file {str(path)!r} must contain a JSON object")
    delay = raw.pop("token_delay_seconds", 0.0)
    if not isinstance(delay, (int, float)) or delay < 0:
        raise ConfigurationError(f"token_delay_seconds in {str(path)!r} must be a number >= 0, got {delay!r}")
    for key, outputs in raw.items():
        if not isinstance(outputs, list) or not outputs:
            raise ConfigurationError(f"scripted output {key!r} in {str(path)!r} must be a non-empty list")
    return PacedScriptedChatModel(script=raw, token_delay_seconds=float(delay))


def chat_model_from_settings(settings: Settings) -> BaseChatModel:
    """Return the chat model ``settings.chat_model`` names, including ``scripted:<file>``."""
    if settings.chat_model.startswith(SCRIPTED_PREFIX):
        return load_script(Path(settings.chat_model[len(SCRIPTED_PREFIX):]).expanduser())
    return load_chat_model(settings)
