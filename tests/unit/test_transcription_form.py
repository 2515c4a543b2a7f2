"""The transcription form's fields as the JSON body they stand for (``protocol.audio.form_body``), then validated."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mistral_gateway.errors import BadRequest
from mistral_gateway.protocol.audio import TranscriptionRequest, TranscriptionStreamRequest, form_body


def test_fields_become_typed_values() -> None:
    body = form_body({"model": ["voxtral-mini-latest"], "stream": ["true"], "diarize": ["False"],
                      "temperature": ["0.25"], "context_bias": ["Voxtral", "Mistral_AI"],
                      "timestamp_granularities": ["segment", "word"], "language": ["fr"], "unknown": ["x"]})
    assert body == {"model": "voxtral-mini-latest", "stream": True, "diarize": False, "temperature": 0.25,
                    "context_bias": ["Voxtral", "Mistral_AI"], "timestamp_granularities": ["segment", "word"],
                    "language": "fr"}
    request = TranscriptionStreamRequest.model_validate(body)
    assert request.stream is True and request.temperature == 0.25


def test_an_array_may_come_as_one_json_field_and_empty_values_are_unset() -> None:
    body = form_body({"model": ["m"], "context_bias": ['["a", "b"]'], "file_url": [""], "file_id": ["null"],
                      "timestamp_granularities": [""]})
    assert body == {"model": "m", "context_bias": ["a", "b"]}


def test_bad_values_are_left_for_validation() -> None:
    body = form_body({"model": ["m"], "stream": ["maybe"], "temperature": ["warm"]})
    assert body == {"model": "m", "stream": "maybe", "temperature": "warm"}
    with pytest.raises(ValidationError) as info:
        TranscriptionRequest.model_validate(body)
    assert {e["loc"][0] for e in info.value.errors()} == {"stream", "temperature"}


def test_a_repeated_single_field_or_bad_json_is_a_400() -> None:
    with pytest.raises(BadRequest, match="'model' is given 2 times"):
        form_body({"model": ["a", "b"]})
    with pytest.raises(BadRequest, match="'context_bias' is not valid JSON"):
        form_body({"model": ["m"], "context_bias": ["[not json"]})


def test_the_stream_flag_picks_the_model() -> None:
    with pytest.raises(ValidationError):
        TranscriptionRequest.model_validate({"model": "m", "stream": True})
    with pytest.raises(ValidationError):
        TranscriptionStreamRequest.model_validate({"model": "m", "stream": False})
