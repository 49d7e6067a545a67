"""Text analysis stages, each callable on its own.

clean -> normalize -> language / segment / duplicates. Typical use per post::

    text = clean_text(raw)                  # untrusted HTML or text -> plain text
    norm = normalize(text)                  # Simplified, half-width, lower case, single spaces
    lang = detect_language(norm)            # "zh", "en" or "other"
    words = segmenter.tokens(norm)          # space-joined words (one Segmenter per process)
    key = strip_for_dedup(norm)             # own words, without repost chains/URLs/mentions
    digest = content_hash(key, stripped=True)
    group = index.find_or_add(post_id, key) # NearDuplicateIndex(..., prestripped=True)
"""

from tingfeng.analyze.clean import clean_text, html_to_text, looks_like_html
from tingfeng.analyze.duplicates import (
    NearDuplicateIndex,
    choose_bands,
    content_hash,
    shingle_jaccard,
    strip_for_dedup,
)
from tingfeng.analyze.language import Language, detect_language
from tingfeng.analyze.normalize import normalize, to_simplified
from tingfeng.analyze.segment import Segmenter, UserWord, read_user_dict

__all__ = [
    "Language",
    "NearDuplicateIndex",
    "Segmenter",
    "UserWord",
    "choose_bands",
    "clean_text",
    "content_hash",
    "detect_language",
    "html_to_text",
    "looks_like_html",
    "normalize",
    "read_user_dict",
    "shingle_jaccard",
    "strip_for_dedup",
    "to_simplified",
]
