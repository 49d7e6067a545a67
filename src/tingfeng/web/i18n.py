"""The pages' language: Simplified Chinese by default, English by a switch (Babel catalogues).

The templates are written in Chinese, the office's language, and every piece of text in them
goes through `_()` (the Jinja2 i18n extension), so the Chinese strings are the message ids and
`src/tingfeng/locale/en/LC_MESSAGES/messages.po` translates them to English. Python code that
builds labels for the pages marks them with `N_()` so `scripts/i18n.py` extracts them too, and
the templates translate them where they print them (`{{ _(label) }}`).

The catalogue is read from the .po file and compiled in memory once per process: no build step
and no generated .mo file to keep in step with the source.

The language of a request: `?lang=en` (which also sets the `tf_lang` cookie, so the choice
sticks), else the cookie, else the browser's Accept-Language, else Chinese.
"""

from __future__ import annotations

import gettext as _gettext
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from functools import cache
from http.cookies import SimpleCookie
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

LOCALE_DIR = Path(__file__).resolve().parent.parent / "locale"
DEFAULT = "zh_CN"
LANGUAGES = {"zh_CN": "简体中文", "en": "English"}
COOKIE = "tf_lang"
# The <html lang> value of each language.
HTML_LANG = {"zh_CN": "zh-CN", "en": "en"}

current_language: ContextVar[str] = ContextVar("tf_language", default=DEFAULT)


def N_(message: str) -> str:
    """Marks a string for the catalogue without translating it here (see the module doc)."""
    return message


@cache
def translations(language: str) -> _gettext.NullTranslations:
    """The compiled catalogue of a language; the default language needs none."""
    if language == DEFAULT or language not in LANGUAGES:
        return _gettext.NullTranslations()
    from babel.messages.mofile import write_mo
    from babel.messages.pofile import read_po
    from babel.support import Translations

    with (LOCALE_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po, locale=language)
    buffer = BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return Translations(buffer)


def gettext(message: str) -> str:
    return translations(current_language.get()).gettext(message)


def ngettext(singular: str, plural: str, n: int) -> str:
    return translations(current_language.get()).ngettext(singular, plural, n)


def _from_accept_language(header: str) -> str | None:
    weighted: list[tuple[float, str]] = []
    for part in header.split(","):
        tag, _, q = part.strip().partition(";q=")
        try:
            weight = float(q) if q else 1.0
        except ValueError:
            continue
        weighted.append((weight, tag.strip().lower()))
    for _weight, tag in sorted(weighted, key=lambda w: -w[0]):
        if tag.startswith("zh"):
            return "zh_CN"
        if tag.startswith("en"):
            return "en"
    return None


def negotiate(query_lang: str | None, cookie: str | None, accept_language: str) -> str:
    for choice in (query_lang, cookie):
        if choice in LANGUAGES:
            return choice
    return _from_accept_language(accept_language) or DEFAULT


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class LanguageMiddleware:
    """Picks the request's language and, on `?lang=`, remembers it in a cookie (pure ASGI, so
    the context variable reaches the endpoint and the templates it renders)."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        asked = (query.get("lang") or [None])[0]
        cookies = SimpleCookie()
        try:
            cookies.load(headers.get("cookie", ""))
        except Exception:  # a malformed cookie header only loses the remembered choice
            cookies = SimpleCookie()
        remembered = cookies[COOKIE].value if COOKIE in cookies else None
        language = negotiate(asked, remembered, headers.get("accept-language", ""))
        scope.setdefault("state", {})["language"] = language
        token = current_language.set(language)

        async def send_with_cookie(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start" and asked in LANGUAGES:
                cookie = f"{COOKIE}={asked}; Path=/; Max-Age=31536000; SameSite=Lax"
                message.setdefault("headers", []).append((b"set-cookie", cookie.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            current_language.reset(token)


def _template_gettext(message: str, **variables: Any) -> str:
    # A plain str, not Markup: the page escapes it like any other value, so neither a
    # translation nor a value put into it (`_("共 %(n)s 条", n=…)`) can carry HTML, and a
    # `_()` that is handed data by mistake cannot open a hole.
    text = gettext(message)
    return text % variables if variables else text


def _template_ngettext(singular: str, plural: str, n: int, **variables: Any) -> str:
    variables.setdefault("num", n)
    return ngettext(singular, plural, n) % variables


def switch_url(request: Any, language: str) -> str:
    """This page in another language, keeping its query (a search keeps its filters)."""
    from urllib.parse import urlencode

    query = [(k, v) for k, v in request.query_params.multi_items() if k != "lang"]
    return f"{request.url.path}?{urlencode([*query, ('lang', language)])}"


def install(env: Any) -> None:
    """Gives a Jinja2 environment `_()`/`ngettext()` in the request's language."""
    env.add_extension("jinja2.ext.i18n")
    env.globals.update(_=_template_gettext, gettext=_template_gettext, ngettext=_template_ngettext)
    env.globals["current_language"] = current_language.get
    env.globals["html_lang"] = lambda: HTML_LANG.get(current_language.get(), "zh-CN")
    env.globals["LANGUAGES"] = LANGUAGES
    env.globals["switch_url"] = switch_url
