"""Embeddings API models (Mistral spec: EmbeddingRequest, EmbeddingResponse, EmbeddingResponseData, UsageInfo).

``input`` is one non-empty string or a non-empty list of non-empty strings; anything else is a 422 whose ``loc``
names the branch and index as FastAPI does (``["body", "input", "list[str]", 3]``).

``output_dtype`` (all five of the spec's values are served; vectors are unit length before quantization):
``float`` float32; ``int8`` round(x * 127); ``uint8`` round((x + 1) * 127.5); ``binary`` / ``ubinary`` one sign bit
per dimension (1 when x > 0), packed 8 to a byte, most significant bit first, as int8 (byte - 128) or uint8.
``encoding_format: base64`` gives each vector's bytes base64-encoded: little-endian float32 for ``float`` (as
OpenAI), one byte per value for the integer dtypes.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, StringConstraints, Tag

from mistral_gateway.protocol.common import RequestModel, ResponseModel

__all__ = [
    "EmbeddingData",
    "EmbeddingDtype",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "EncodingFormat",
]

EmbeddingDtype = Literal["float", "int8", "uint8", "binary", "ubinary"]
EncodingFormat = Literal["float", "base64"]

_Text = Annotated[str, StringConstraints(min_length=1)]


def _input_kind(value: Any) -> str:
    return "list[str]" if isinstance(value, list) else "str"


EmbeddingInput = Annotated[
    Annotated[_Text, Tag("str")] | Annotated[list[_Text], Field(min_length=1), Tag("list[str]")],
    Discriminator(_input_kind),
]


class EmbeddingRequest(RequestModel):
    model: str = Field(description="ID of the model to use, e.g. mistral-embed.")
    input: EmbeddingInput = Field(description="Text to embed: a string or a list of strings, none empty.")
    metadata: dict[str, Any] | None = None
    output_dimension: int | None = Field(default=None, gt=0, le=65536)
    output_dtype: EmbeddingDtype | None = None  # None (or absent): float
    encoding_format: EncodingFormat | None = None  # None (or absent): float
    dimensions: int | None = Field(default=None, gt=0, le=65536, description="OpenAI's name for output_dimension.")

    @property
    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else self.input

    @property
    def dtype(self) -> EmbeddingDtype:
        return self.output_dtype or "float"

    @property
    def encoding(self) -> EncodingFormat:
        return self.encoding_format or "float"


class EmbeddingUsage(ResponseModel):
    prompt_tokens: int
    completion_tokens: int = 0
    total_tokens: int


class EmbeddingData(ResponseModel):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | list[int] | str  # str: base64
    index: int


class EmbeddingResponse(ResponseModel):
    id: str  # 32 lowercase hex
    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage
