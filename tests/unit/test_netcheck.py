"""The private-address guard for URLs the server fetches."""

from __future__ import annotations

import pytest

from mistral_gateway.security.netcheck import (
    PrivateAddressError,
    check_public_url,
    is_private_address,
    literal_address,
    resolve_url,
)


@pytest.mark.parametrize("address", ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254",
                                     "::1", "fe80::1", "fc00::1", "::ffff:10.0.0.1", "0.0.0.0", "224.0.0.1"])  # noqa: S104
def test_private_addresses(address: str) -> None:
    assert is_private_address(address)


@pytest.mark.parametrize("address", ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111"])
def test_public_addresses(address: str) -> None:
    assert not is_private_address(address)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/x", "http://[::1]/", "http://localhost/", "http://a.localhost",
                                 "ftp://example.com/", "http:///nohost", "http://169.254.169.254/latest/meta-data"])
def test_refused_urls(url: str) -> None:
    with pytest.raises(PrivateAddressError):
        check_public_url(url)


def test_public_literal_is_accepted_and_names_wait_for_resolution() -> None:
    check_public_url("https://1.1.1.1/")
    check_public_url("https://api.mistral.ai", resolve=False)


@pytest.mark.parametrize("address", ["64:ff9b::a00:1", "2002:7f00:1::1", "100.64.0.1", "::ffff:169.254.169.254"])
def test_ipv4_inside_ipv6_and_shared_space_are_private(address: str) -> None:
    assert is_private_address(address)


@pytest.mark.parametrize(("host", "address"), [("2130706433", "127.0.0.1"), ("0x7f.1", "127.0.0.1"),
                                               ("0177.0.0.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
                                               ("[::1]", "::1"), ("example.com", None), ("1e3", None)])
def test_legacy_ipv4_spellings_are_read_without_dns(host: str, address: str | None) -> None:
    assert literal_address(host) == address


@pytest.mark.parametrize("url", ["http://2130706433/", "http://0x7f.1/", "http://127.1:9/x"])
def test_encoded_loopback_is_refused_even_without_resolving(url: str) -> None:
    with pytest.raises(PrivateAddressError):
        check_public_url(url, resolve=False)


def test_resolve_url_returns_the_checked_addresses() -> None:
    assert resolve_url("https://1.1.1.1/x") == ["1.1.1.1"]
    assert resolve_url("http://127.0.0.1:8080/", allow_private=True) == ["127.0.0.1"]
    assert resolve_url("http://localhost:8080/", allow_private=True)  # resolved, not refused
    for bad in ("http://127.0.0.1/", "http://x:99999/", "file:///etc/passwd"):
        with pytest.raises(PrivateAddressError):
            resolve_url(bad)
