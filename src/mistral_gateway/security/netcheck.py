"""Refusing URLs that point into private networks: every URL the server fetches passes through here.

A host name is resolved and every address it maps to is checked, so a public name pointing at 10.0.0.1 is refused
as well. Operators opt in per upstream (``allow_private_network``) for backends on loopback or the LAN.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import SplitResult, urlsplit

__all__ = ["PrivateAddressError", "check_public_url", "is_private_address", "literal_address", "resolve_url"]


class PrivateAddressError(ValueError):
    pass


def is_private_address(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # an IPv4 address inside an IPv6 one (mapped, 6to4, NAT64) is judged as that IPv4 address
        embedded = ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
                                                        if ip in _NAT64 else None)
        if embedded is not None:
            ip = embedded
    return (ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_reserved or ip.is_multicast
            or ip.is_unspecified or ip in _SHARED)


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_SHARED = ipaddress.IPv4Network("100.64.0.0/10")  # carrier-grade NAT: not public either


def literal_address(host: str) -> str | None:
    """The address a host names without DNS: an IP literal, or one of the legacy IPv4 spellings that resolvers
    accept (``2130706433``, ``0x7f.1``, ``0177.0.0.1``, ``127.1``)."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        pass
    if host and all(c in "0123456789abcdefxABCDEFX." for c in host) and host[0].isdigit():
        try:
            return socket.inet_ntoa(socket.inet_aton(host))
        except OSError:
            return None
    return None


def resolve_url(url: str, *, allow_private: bool = False) -> list[str]:
    """The addresses ``url``'s host resolves to, resolved once, every one checked (unless ``allow_private``). A
    fetcher connects to one of them, so a DNS answer that changes later cannot send it elsewhere."""
    parts, literal = _split(url, allow_private=allow_private)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or (443 if parts.scheme == "https" else 80),
                                       type=socket.SOCK_STREAM)
        except (OSError, UnicodeError) as exc:
            raise PrivateAddressError(f"cannot resolve {parts.hostname!r}: {exc}") from exc
        addresses = sorted({str(info[4][0]) for info in infos})
    private = [a for a in addresses if is_private_address(a)]
    if private and not allow_private:
        raise PrivateAddressError(f"{url!r} resolves to a private or loopback address ({', '.join(private)})")
    return addresses


def check_public_url(url: str, *, resolve: bool = True) -> None:
    """Raise PrivateAddressError if ``url`` is not http(s) or its host is (or resolves to) a private address."""
    if resolve:
        resolve_url(url)
        return
    _, literal = _split(url, allow_private=False)
    if literal is not None and is_private_address(literal):
        raise PrivateAddressError(f"{url!r} resolves to a private or loopback address ({literal})")


def _split(url: str, *, allow_private: bool) -> tuple[SplitResult, str | None]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PrivateAddressError(f"{url!r} is not an http(s) URL with a host")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError as exc:
        raise PrivateAddressError(f"{url!r} has an invalid port") from exc
    host = parts.hostname.lower()
    if not allow_private and (host == "localhost" or host.endswith(".localhost")):
        raise PrivateAddressError(f"{url!r} points at loopback")
    return parts, literal_address(host)
