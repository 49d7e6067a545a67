"""Topics (监测方案): the query language and the stream matcher. See docs/topics.md."""

from tingfeng.topics.matcher import (
    Topic,
    TopicDoc,
    TopicHit,
    TopicMatcher,
    evaluate,
    highlight_spans,
    topic_matches,
)
from tingfeng.topics.prefilter import required_literals
from tingfeng.topics.syntax import (
    And,
    Field,
    Filter,
    Near,
    Node,
    Not,
    Or,
    QuerySyntaxError,
    Term,
    parse_query,
    to_text,
)

__all__ = [
    "And",
    "Field",
    "Filter",
    "Near",
    "Node",
    "Not",
    "Or",
    "QuerySyntaxError",
    "Term",
    "Topic",
    "TopicDoc",
    "TopicHit",
    "TopicMatcher",
    "evaluate",
    "highlight_spans",
    "parse_query",
    "required_literals",
    "to_text",
    "topic_matches",
]
