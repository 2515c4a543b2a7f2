"""``decode_data_url`` decodes the payload in place (no slice of the whole URL, no bytes copy of the text): it must
accept and refuse exactly what ``base64.b64decode(payload, validate=True)`` does, and find the payload after the
first comma as before."""

from __future__ import annotations

import base64
import binascii
import random

import pytest

from mistral_gateway.security.fetch import FetchRefused, decode_data_url

PAYLOADS = ["", "QQ==", "QUI=", "QUJD", "QQ", "QQ=", "QQ===", "=QQ=", "QQ==QQ==", "QU JD", "QUJD\n", " QUJD",
            "QUJD\x00", "QUJ\u00e9", "QUJ-", "QUJ_", "QUJ+", "QUJ/", "Q===", "QUJD" * 1000, "QUI=QUJD", "QQ=a",
            "QUJD=", "QUJD==", "/BAQ=", "QUJDRA==", "QUJDRA=", "QUJDRA", "QR==", "QUK=",  # pybase64 and binascii differ

            base64.b64encode(bytes(range(256))).decode()]


def _expected(payload: str) -> bytes | None:
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None


@pytest.mark.parametrize("payload", PAYLOADS)
def test_the_payload_decodes_as_strict_base64(payload: str) -> None:
    url = "data:application/pdf;base64," + payload
    expected = _expected(payload)
    if expected is None:
        with pytest.raises(FetchRefused, match="not valid base64"):
            decode_data_url(url, what="document_url", max_bytes=1 << 20)
    else:
        assert decode_data_url(url, what="document_url", max_bytes=1 << 20).data == expected


def test_random_payloads_decode_as_strict_base64() -> None:
    """Short strings over base64's alphabet, padding, white space and foreign characters (seeded): the fast decoder
    and its fallback together answer as binascii's strict mode on every one."""
    rng = random.Random(12)
    alphabet = "AQw+/=\n -_\u00e9\x00"
    for _ in range(20_000):
        payload = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
        expected = _expected(payload)
        try:
            got: bytes | None = decode_data_url("data:;base64," + payload, what="x", max_bytes=100).data
        except FetchRefused:
            got = None
        assert got == expected, payload


@pytest.mark.parametrize(("url", "data"), [
    ("DATA:image/png;BASE64,QUJD", b"ABC"),  # the scheme and the marker in any case
    ("data:text/plain;charset=utf-8;base64,QUJD", b"ABC"),
    ("data:;base64,QUJD", b"ABC"),
])
def test_headers(url: str, data: bytes) -> None:
    assert decode_data_url(url, what="x", max_bytes=10).data == data


@pytest.mark.parametrize("url", ["data:application/pdf,QUJD", "data:application/pdf;base64", "data:,QUJD",
                                 "data:a,b;base64,QUJD", "https://example.com/a;base64,QUJD", "dat:;base64,QUJD",
                                 "data;base64,QUJD", ""])
def test_not_base64_data_urls(url: str) -> None:
    with pytest.raises(FetchRefused, match="must be a base64 data URL"):
        decode_data_url(url, what="x", max_bytes=10)


def test_the_size_is_checked_before_and_after_decoding() -> None:
    assert decode_data_url("data:;base64," + base64.b64encode(bytes(10)).decode(), what="x",
                           max_bytes=10).data == bytes(10)
    for size in (11, 12, 13, 100):
        with pytest.raises(FetchRefused, match="larger than 10 bytes"):
            decode_data_url("data:;base64," + base64.b64encode(bytes(size)).decode(), what="x", max_bytes=10)
