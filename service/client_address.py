"""Who a request comes from, for rate limits and trending: one key per client network.

An IPv4 client is its address. An IPv6 client is its /64: ISPs hand each subscriber at least a
/64 (RFC 6177), so keying by the full address would let one client rotate through 2^64
identities, each with its own rate limit and its own trending vote. An IPv4-mapped IPv6
address (``::ffff:192.0.2.1``, what a dual-stack socket reports) is the IPv4 client it maps.

The address is ``request.remote_addr``, which ProxyFix rewrites only for the hops
``RECS_TRUSTED_PROXIES`` trusts (service/ratelimit.py).
"""

from __future__ import annotations

import ipaddress
import logging

from flask import request

log = logging.getLogger(__name__)

IPV6_PREFIX = 64
# A request without a peer address (a UNIX socket with no proxy header): all such share a key.
UNKNOWN = "unknown"

_warned_forwarded = False


def network_key(address: str | None) -> str | None:
    """The key of a client address (``None`` when there is none)."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a link-local zone id is not ours
    except ValueError:
        return address  # not an IP address (a test client, a socket name): itself
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def client_key() -> str:
    """The current request's client key (Flask-Limiter's ``key_func``)."""
    global _warned_forwarded
    if not _warned_forwarded and "X-Forwarded-For" in request.headers:
        if "werkzeug.proxy_fix.orig" not in request.environ:
            _warned_forwarded = True
            # Behind a proxy with no hops trusted every reader is the proxy: one shared limit.
            log.warning(
                "requests carry X-Forwarded-For but RECS_TRUSTED_PROXIES is 0: every client"
                " behind that proxy shares one rate limit; set it to the number of proxies"
                " in front of the API (docs/security.md)"
            )
    return network_key(request.remote_addr) or UNKNOWN
