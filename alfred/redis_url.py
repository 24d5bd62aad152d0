"""REDIS_URL's two forms: one Redis (`redis://`, `rediss://`, `unix://`), or Redis Sentinel.

    sentinel://[:password@]host:port[;sentinel://host:port…][/db]?master_name=NAME

one `sentinel://host:port` per sentinel, separated by `;` as kombu writes them; the password
(the master's and replicas', not the sentinels'), the database and `master_name` may sit on
any of them and must agree. config.py checks the URL at start-up; alfred/redis_client.py builds
the clients from it (docs/operations.md, Redis Sentinel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

SENTINEL_SCHEME = "sentinel://"
SENTINEL_DEFAULT_PORT = 26379


@dataclass(frozen=True)
class SentinelUrl:
    """A parsed Sentinel URL: where the sentinels are and which master they watch."""

    sentinels: tuple[tuple[str, int], ...]
    master_name: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel(url: str) -> bool:
    """Tell whether a REDIS_URL names sentinels rather than one Redis."""
    return url.startswith(SENTINEL_SCHEME)


def parse_sentinel_url(url: str) -> SentinelUrl:
    """Parse `sentinel://h1:p1;sentinel://h2:p2/db?master_name=NAME`; raise ValueError."""
    sentinels: list[tuple[str, int]] = []
    found: dict[str, set] = {"db": set(), "master_name": set(), "auth": set()}
    for number, part in enumerate(url.split(";"), start=1):
        if not part.startswith(SENTINEL_SCHEME):
            raise ValueError(f"REDIS_URL: part {number} does not start with sentinel://")
        split = urlsplit(part)
        if not split.hostname:
            raise ValueError(f"REDIS_URL: part {number} names no sentinel host")
        try:
            port = split.port or SENTINEL_DEFAULT_PORT
        except ValueError:
            raise ValueError(f"REDIS_URL: part {number} has a port that is not a number") from None
        sentinels.append((split.hostname, port))
        path = split.path.strip("/")
        if path:
            if not path.isdigit():
                raise ValueError(f"REDIS_URL: the database must be a number, not {path!r}")
            found["db"].add(int(path))
        query = parse_qs(split.query, keep_blank_values=True)
        unknown = set(query) - {"master_name"}
        if unknown:
            raise ValueError(f"REDIS_URL: unknown sentinel option(s) {sorted(unknown)}")
        found["master_name"].update(query.get("master_name", []))
        if split.password is not None or split.username:
            found["auth"].add(
                (unquote(split.username or "") or None, unquote(split.password or ""))
            )
    for name, values in found.items():
        if len(values) > 1:
            what = "password" if name == "auth" else name
            raise ValueError(f"REDIS_URL: the sentinels disagree on the {what}")
    if not found["master_name"] or not next(iter(found["master_name"])):
        raise ValueError("REDIS_URL: a sentinel URL needs ?master_name=NAME (the monitored master)")
    username, password = next(iter(found["auth"]), (None, None))
    return SentinelUrl(
        sentinels=tuple(sentinels),
        master_name=next(iter(found["master_name"])),
        db=next(iter(found["db"]), 0),
        username=username,
        password=password,
    )
