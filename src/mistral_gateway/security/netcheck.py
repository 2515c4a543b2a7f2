"""Refusing URLs that point into private networks: every URL the server fetches passes through here.

A host name is resolved and every address it maps to is checked, so a public name pointing at 10.0.0.1 is refused
as well. Operators opt in per upstream (``allow_private_network``) for backends on loopback or the LAN.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

__all__ = ["PrivateAddressError", "check_public_url", "is_private_address"]


class PrivateAddressError(ValueError):
    pass


def is_private_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified)


def check_public_url(url: str, *, resolve: bool = True) -> None:
    """Raise PrivateAddressError if ``url`` is not http(s) or its host is (or resolves to) a private address."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PrivateAddressError(f"{url!r} is not an http(s) URL with a host")
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            raise PrivateAddressError(f"{url!r} points at loopback") from None
        if not resolve:
            return
        try:
            infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                       type=socket.SOCK_STREAM)
        except OSError as exc:
            raise PrivateAddressError(f"cannot resolve {host!r}: {exc}") from exc
        addresses = sorted({str(info[4][0]) for info in infos})
    private = [a for a in addresses if is_private_address(a)]
    if private:
        raise PrivateAddressError(f"{url!r} resolves to a private or loopback address ({', '.join(private)})")
