"""Moderation and classification models (Mistral spec: ClassificationRequest, ChatModerationRequest,
ChatClassificationRequest, ModerationResponse, ModerationObject, ClassificationResponse, ClassificationTargetResult).

``input`` is sent under that name by the official SDK (its Python argument is ``inputs`` for three of the four
methods). Limits: at most ``MAX_INPUTS`` inputs (texts or conversations) per request, ``MAX_INPUT_CHARS`` characters
per text, ``MAX_MESSAGES`` messages per conversation (these are 422s, as any invalid field); an empty list
(400 ``EMPTY_INPUT``), more than ``MAX_TOTAL_MESSAGES`` messages or ``MAX_TOTAL_CHARS`` characters in one request
(400 / 413) are refused by the service, before any model runs.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Discriminator, Field, StringConstraints, Tag

from mistral_gateway.protocol.chat import Message
from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "MAX_INPUTS",
    "MAX_INPUT_CHARS",
    "MAX_MESSAGES",
    "MAX_TOTAL_CHARS",
    "MAX_TOTAL_MESSAGES",
    "ChatClassificationRequest",
    "ChatModerationRequest",
    "ClassificationRequest",
    "ClassificationResponse",
    "ClassificationTargetResult",
    "InstructRequest",
    "ModerationObject",
    "ModerationResponse",
]

MAX_INPUTS = 2048  # texts or conversations per request (the bench sends 1,000 in one)
MAX_INPUT_CHARS = 100_000  # per text; longer texts are scored in encoder-sized chunks (max over chunks)
# Per conversation, as for chat completions; only the last turn and the context that fits the encoder are read. Equal
# to MAX_INPUTS on purpose: the documents derive both array branches of ``input`` from one model branch.
MAX_MESSAGES = MAX_INPUTS
MAX_TOTAL_MESSAGES = 16_384  # over all conversations of one request
MAX_TOTAL_CHARS = 1_000_000  # over all texts (or messages) of one request

_Text = Annotated[str, StringConstraints(max_length=MAX_INPUT_CHARS)]


def _text_kind(value: Any) -> str:
    return "list[str]" if isinstance(value, list) else "str"


TextInput = Annotated[
    Annotated[_Text, Tag("str")] | Annotated[list[_Text], Field(max_length=MAX_INPUTS), Tag("list[str]")],
    Discriminator(_text_kind),
]

Conversation = Annotated[list[Message], Field(max_length=MAX_MESSAGES)]


def _chat_kind(value: Any) -> str:
    """A list of conversations (a list of lists) or one conversation (a list of messages)."""
    return "conversations" if isinstance(value, list) and value and isinstance(value[0], list) else "conversation"


ChatInput = Annotated[
    Annotated[Conversation, Tag("conversation")]
    | Annotated[list[Conversation], Field(max_length=MAX_INPUTS), Tag("conversations")],
    Discriminator(_chat_kind),
]


class ClassificationRequest(RequestModel):
    """The body of ``/v1/moderations`` and ``/v1/classifications``."""

    model: str = Field(description="ID of the model to use, e.g. mistral-moderation-latest.")
    input: TextInput = Field(description="Text to classify: a string or a non-empty list of strings.")
    metadata: dict[str, Any] | None = None

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input


class ChatModerationRequest(RequestModel):
    model: str
    input: ChatInput = Field(description="A conversation (a list of messages) or a list of conversations.")

    @property
    def conversations(self) -> list[list[Any]]:
        if not self.input:
            return []  # an empty list: no conversation at all (the service's 400)
        if isinstance(self.input[0], list):
            return self.input  # type: ignore[return-value]
        return [self.input]  # type: ignore[list-item]


class InstructRequest(RequestModel):
    messages: Conversation


def _instruct_kind(value: Any) -> str:
    return "list" if isinstance(value, list) else "one"


InstructInput = Annotated[
    Annotated[InstructRequest, Tag("one")]
    | Annotated[list[InstructRequest], Field(max_length=MAX_INPUTS), Tag("list")],
    Discriminator(_instruct_kind),
]


class ChatClassificationRequest(RequestModel):
    model: str
    input: InstructInput = Field(description="One {messages} object or a list of them.")

    @property
    def conversations(self) -> list[list[Any]]:
        items = self.input if isinstance(self.input, list) else [self.input]
        return [item.messages for item in items]


class ModerationObject(ResponseModel):
    categories: dict[str, bool]  # score >= the category's threshold
    category_scores: dict[str, float]  # 0-1


class ModerationResponse(ResponseModel):
    id: str  # 32 lowercase hex
    model: str
    results: list[ModerationObject]  # one per input (text or conversation), in order


class ClassificationTargetResult(ResponseModel):
    scores: dict[str, float]


class ClassificationResponse(ResponseModel):
    id: str  # 32 lowercase hex
    model: str
    results: list[dict[str, ClassificationTargetResult]]  # per input: target name -> its label scores


def classifier_limits() -> dict[tuple[str, str, str], dict[str, Any]]:
    """The limits the classifier service enforces beyond these models, for the OpenAPI documents
    (``registry.constraints.SERVICE_LIMITS``)."""
    texts = (f"A non-empty list (400 EMPTY_INPUT otherwise) of at most {MAX_INPUTS} texts; at most "
             f"{MAX_TOTAL_CHARS} characters in all (413 INPUT_TOO_LARGE otherwise).")
    chats = (f"A conversation, or a non-empty list (400 EMPTY_INPUT otherwise) of at most {MAX_INPUTS}; each "
             f"conversation has 1 to {MAX_MESSAGES} messages, at most {MAX_TOTAL_MESSAGES} messages in all (400 "
             f"TOO_MANY_MESSAGES) and {MAX_TOTAL_CHARS} characters in all (413 INPUT_TOO_LARGE); text content only "
             "(400 UNSUPPORTED_CONTENT). The last message is scored in the context of the earlier ones.")
    return {
        # one request component (ClassificationRequest) for both text operations: described once
        ("moderations_v1_moderations_post", "body", "input"): {"minItems": 1, "x-description": texts},
        ("chat_moderations_v1_chat_moderations_post", "body", "input"): {"minItems": 1, "x-description": chats},
        # the spec's ChatClassificationRequestInputs is a shared component: written out here with its limit
        ("chat_classifications_v1_chat_classifications_post", "body", "input"): {
            "replace": {"anyOf": [{"$ref": "#/components/schemas/InstructRequest"},
                                  {"type": "array", "items": {"$ref": "#/components/schemas/InstructRequest"},
                                   "minItems": 1, "maxItems": MAX_INPUTS}],
                        "title": "ChatClassificationRequestInputs", "description": "Chat to classify"},
            "x-description": chats},
    }
