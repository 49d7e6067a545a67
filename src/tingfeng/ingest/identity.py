"""What makes two items the same post: platform id, canonical URL, or content.

A post's `uid` is a hash of its identity key; the unique index on it is what keeps a re-run
batch, a re-imported file or the same article in two feeds from creating a second row.
"""

from __future__ import annotations

from hashlib import blake2b
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from tingfeng.collect.items import RawItem

# Query parameters that only track the reader; dropping them makes one article one URL.
_TRACKING = {
    "spm",
    "from",
    "fromsource",
    "share_token",
    "share_from",
    "wfr",
    "timestamp",
    "isappinstalled",
    "scene",
    "clicktime",
    "enterid",
    "fbclid",
    "gclid",
    "ref",
    "src",
}


def digest(key: str) -> str:
    return blake2b(key.encode("utf-8"), digest_size=16).hexdigest()


def canonical_url(url: str | None) -> str | None:
    """Lower-case scheme and host, no default port, no fragment, no tracking parameters."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    port = (
        parts.port
        if parts.port and (scheme, parts.port) not in (("http", 80), ("https", 443))
        else None
    )
    netloc = f"{host}:{port}" if port else host
    query = [
        (k, v)
        for k, v in parse_qsl(parts.query, keep_blank_values=True)
        if not k.lower().startswith("utm_") and k.lower() not in _TRACKING
    ]
    path = parts.path or "/"
    return urlunsplit((scheme, netloc, path, urlencode(sorted(query)), ""))


def identity_key(item: RawItem, source_id: int, canonical: str | None, content_digest: str) -> str:
    if item.platform and item.external_id:
        return f"p:{item.platform}:{item.external_id}"
    if canonical:
        return f"u:{canonical}"
    if item.external_id:
        return f"s:{source_id}:{item.external_id}"
    return f"h:{source_id}:{content_digest}"


def parent_uid(ref: str | None, item: RawItem, source_id: int) -> str | None:
    """The uid the parent post has (or will have) for a `reposts_of` / `reply_to` reference."""
    if not ref:
        return None
    if ref.startswith(("http://", "https://")):
        canon = canonical_url(ref)
        return digest(f"u:{canon}") if canon else None
    if item.platform:
        return digest(f"p:{item.platform}:{ref}")
    return digest(f"s:{source_id}:{ref}")
