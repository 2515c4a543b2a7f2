"""The operator's exceptions to the private-address rule for URLs the server fetches (setting ``fetch_allow``).

An entry is either a network in CIDR notation (``10.1.2.0/24``, ``::1/128``; a bare address is a /32 or /128) or an
exact ``host:port`` (``intranet.example:443``, ``[::1]:8080``): an address inside an allowed network may be fetched
although private, and so may every address of a URL whose host and port are listed (the port is the URL's, or 80/443
when it names none). Everything else still gets the full check of ``security.netcheck``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["AllowList"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_ENTRIES = 256


@dataclass(frozen=True)
class AllowList:
    networks: tuple[Network, ...] = ()
    hosts: frozenset[tuple[str, int]] = frozenset()

    @classmethod
    def parse(cls, entries: Iterable[str]) -> AllowList:
        """Raises ValueError naming the first entry that is neither a network nor ``host:port``."""
        networks: list[Network] = []
        hosts: set[tuple[str, int]] = set()
        for entry in entries:
            entry = entry.strip()
            try:
                networks.append(ipaddress.ip_network(entry))  # strict: 10.0.0.1/8 is a typo, not 10.0.0.0/8
                continue
            except ValueError:
                pass
            try:
                parts = urlsplit(f"//{entry}")
                port = parts.port
            except ValueError:
                port = None
            if not parts.hostname or port is None or f"//{entry}" != f"//{parts.netloc}" or "@" in entry:
                raise ValueError(f"fetch_allow entry {entry[:100]!r} is neither a network (10.0.0.0/8, ::1/128) "
                                 "nor host:port (intranet.example:443, [::1]:8080)")
            hosts.add((parts.hostname.lower().rstrip("."), port))
        if len(networks) + len(hosts) > MAX_ENTRIES:
            raise ValueError(f"fetch_allow takes at most {MAX_ENTRIES} entries")
        return cls(tuple(networks), frozenset(hosts))

    def permits_host(self, host: str, port: int) -> bool:
        return (host.lower().strip("[]").rstrip("."), port) in self.hosts

    def permits_address(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        # an IPv4 address written as IPv4-mapped IPv6 is the same host: either spelling may be listed
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(ip in net or (mapped is not None and mapped in net) for net in self.networks)
