"""Items pushed to Tingfeng over HTTP (`POST /api/push/...` with the source's token).

A push source collects nothing by itself: its items arrive through the push API, which hands
the request body to `parse_push_payload`. The body is `{"posts": [...]}` (optionally with a
default "platform"), a bare list of posts, or one post object. Each post is validated on its
own: a bad one becomes an `ItemError("posts[3]", "published_at: ...")` and the others are kept.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tingfeng.collect.connectors.base import CollectContext, Connector, register
from tingfeng.collect.connectors.imports import _as_kind, json_type, parse_time
from tingfeng.collect.errors import CollectError
from tingfeng.collect.items import ItemError, RawItem

MAX_PUSH_POSTS = 1000
PUSH_FIELDS = (
    "text", "html", "title", "url", "id", "author", "published_at", "kind", "lang",
    "reposts_of", "reply_to", "reposts", "comments", "likes", "views", "platform", "extra",
)  # fmt: skip
_TOP_LEVEL = frozenset({"posts", "platform"})


class PushPayloadError(CollectError, ValueError):
    """The payload as a whole cannot be used (wrong shape, too many posts): a client error.

    A CollectError, so the push endpoint answers it with its message (422) like other
    collection errors.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, permanent=True)


class PushConfig(BaseModel):
    """Defaults for pushed posts that do not say."""

    model_config = ConfigDict(extra="forbid")

    platform: str | None = Field(None, max_length=40, description="Platform of pushed posts.")
    kind: Literal["article", "post", "comment", "repost"] | None = Field(
        None, description="Kind of pushed posts that give none (default post)."
    )


def _identifier(value: Any) -> Any:
    # Numeric ids are common in JSON (tweet ids, mids); they are stored as text.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, str):
        return value.strip() or None
    return value


class PushPost(BaseModel):
    """One pushed post, as the API accepts it."""

    model_config = ConfigDict(extra="forbid")

    text: str | None = Field(None, max_length=1_000_000)
    html: str | None = Field(None, max_length=4_000_000)
    title: str | None = Field(None, max_length=10_000)
    url: str | None = Field(None, max_length=4096)
    id: str | None = Field(None, max_length=200)
    author: str | None = Field(None, max_length=200)
    published_at: datetime | None = None
    kind: str | None = None
    lang: str | None = Field(None, max_length=16)
    reposts_of: str | None = Field(None, max_length=4096)
    reply_to: str | None = Field(None, max_length=4096)
    reposts: int | None = Field(None, ge=0)
    comments: int | None = Field(None, ge=0)
    likes: int | None = Field(None, ge=0)
    views: int | None = Field(None, ge=0)
    platform: str | None = Field(None, max_length=40)
    extra: dict[str, Any] | None = None

    _ids = field_validator("id", "reposts_of", "reply_to", mode="before")(_identifier)

    @field_validator("published_at", mode="before")
    @classmethod
    def _time(cls, value: Any) -> Any:
        # The same readings as file imports: ISO 8601, epochs in s/ms, "2024年3月5日 10:20"...
        try:
            return parse_time(value)
        except ValueError as exc:
            raise ValueError(f"{exc} (send ISO 8601, e.g. 2024-03-05T10:20:00+08:00)") from exc

    @field_validator("kind", mode="before")
    @classmethod
    def _kind(cls, value: Any) -> Any:
        return None if value is None or value == "" else _as_kind(value)

    @model_validator(mode="after")
    def _has_content(self) -> PushPost:
        if not any(v and v.strip() for v in (self.text, self.html, self.title)):
            raise ValueError("a post needs text, html or a title")
        return self


def _problems(exc: ValidationError) -> str:
    """Pydantic's errors as "field: problem" phrases."""
    parts: list[str] = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"])
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = f"unknown field (fields: {', '.join(PUSH_FIELDS)})"
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts)


def _posts_of(payload: Any) -> tuple[list[Any], str | None]:
    if isinstance(payload, list):
        return payload, None
    if not isinstance(payload, dict):
        raise PushPayloadError(
            'Expected a JSON object {"posts": [...]} or a list of posts, '
            f"not a {json_type(payload)}."
        )
    if "posts" not in payload:
        if any(key in payload for key in ("text", "html", "title")):
            return [payload], None  # a single post
        raise PushPayloadError('Expected {"posts": [...]}: the object has no "posts" list.')
    unknown = sorted(set(payload) - _TOP_LEVEL)
    if unknown:
        raise PushPayloadError(
            f"Unknown key(s) {', '.join(map(repr, unknown))} next to posts; "
            "only posts and platform belong there (other fields go inside each post)."
        )
    posts = payload["posts"]
    if not isinstance(posts, list):
        raise PushPayloadError(f'"posts" must be a list of post objects, not a {json_type(posts)}.')
    platform = payload.get("platform")
    if platform is not None and (not isinstance(platform, str) or len(platform) > 40):
        raise PushPayloadError('"platform" must be a short text such as "weibo".')
    return posts, platform


def parse_push_payload(
    payload: Any, *, platform: str | None = None, kind: str | None = None
) -> list[RawItem | ItemError]:
    """The items of a push request body, one per post, in order; bad posts as ItemErrors.

    Raises PushPayloadError when the body is not a list of posts or holds more than
    MAX_PUSH_POSTS. `platform` and `kind` are the source's defaults.
    """
    posts, payload_platform = _posts_of(payload)
    if len(posts) > MAX_PUSH_POSTS:
        raise PushPayloadError(
            f"{len(posts)} posts in one request; at most {MAX_PUSH_POSTS} are accepted: "
            "send them in several requests."
        )
    results: list[RawItem | ItemError] = []
    for number, entry in enumerate(posts):
        where = f"posts[{number}]"
        if not isinstance(entry, dict):
            results.append(ItemError(where, f"expected a post object, found a {json_type(entry)}"))
            continue
        try:
            post = PushPost.model_validate(entry)
        except ValidationError as exc:
            results.append(ItemError(where, _problems(exc)))
            continue
        results.append(
            RawItem(
                text=post.text,
                html=post.html,
                title=post.title,
                url=post.url,
                external_id=post.id,
                platform=post.platform or payload_platform or platform,
                author=post.author,
                published_at=post.published_at,
                kind=post.kind or kind or "post",
                lang=post.lang,
                reposts_of=post.reposts_of,
                reply_to=post.reply_to,
                reposts=post.reposts,
                comments=post.comments,
                likes=post.likes,
                views=post.views,
                extra=dict(post.extra or {}),
            )
        )
    return results


@register
class PushConnector(Connector):
    """Receives items through the HTTP push API; nothing to fetch."""

    kind: ClassVar[str] = "push"
    title: ClassVar[str] = "Push API (items sent to Tingfeng)"
    Config: ClassVar[type[BaseModel]] = PushConfig
    uses_network: ClassVar[bool] = False

    def collect(self, ctx: CollectContext) -> Iterator[RawItem]:
        """Nothing: pushed items go straight to ingestion through `parse_push_payload`."""
        return iter(())

    def parse(self, payload: Any) -> list[RawItem | ItemError]:
        """`parse_push_payload` with this source's defaults."""
        config = self.config
        assert isinstance(config, PushConfig)
        return parse_push_payload(payload, platform=config.platform, kind=config.kind)
