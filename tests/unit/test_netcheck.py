"""The private-address guard for URLs the server fetches."""

from __future__ import annotations

import pytest

from mistral_gateway.security.netcheck import PrivateAddressError, check_public_url, is_private_address


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
