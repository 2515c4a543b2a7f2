"""Model ids on the real default catalog: a dated ministral id reaches the real SmolLM2-135M through the official
SDK, with the caller's id echoed and the same answer as through the canonical alias (greedy decoding)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from mistralai.client import Mistral

from mistral_gateway.config import Settings
from support import serving

pytestmark = [pytest.mark.slow, pytest.mark.e2e]


@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Iterator[Mistral]:
    settings = Settings(data_dir=tmp_path_factory.mktemp("ids-real"), weights_path=weights_dir,
                        bootstrap_dev_token=False)
    with (serving(settings, "real") as (server, _, token),  # the default catalog and family table
          Mistral(api_key=token, server_url=server.base_url, timeout_ms=120_000) as client):
        yield client


def test_dated_ministral_id_on_the_real_small_model(sdk: Mistral) -> None:
    body = {"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 6, "temperature": 0}
    dated = sdk.chat.complete(model="ministral-8b-2410", **body)
    canonical = sdk.chat.complete(model="ministral-3b-latest", **body)
    assert dated.model == "ministral-8b-2410" and canonical.model == "ministral-3b-latest"
    assert dated.choices[0].message.content and dated.choices[0].message.content == canonical.choices[0].message.content
    assert sdk.models.retrieve(model_id="ministral-14b-2512").name == "smollm2-135m-instruct"
