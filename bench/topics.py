"""Topic matching benchmark: `TopicMatcher` at 100, 1,000 and 10,000 topics against a naive
regular-expression matcher, on real posts.

Corpus: CED Weibo posts (every source post, then random reposts; posts that normalise to nothing
left out) plus English CrisisLexT26 tweets. Topics are built from real keywords: Chinese words of
the shipped IDF table (a band of mid-frequency words for names and subjects, commoner words for
the "what happened" half) and the commonest English words of the tweets, in the shapes offices
write: `(A OR B OR C) AND (D OR E) NOT F`, phrases, NEAR/ONEAR, wildcards, field filters,
exclusions and source scoping. The 100 and 1,000 topic sets are the first topics of the 10,000.

Measured, single thread, best of a few rounds (runs take turns so a noisy minute hits all):
MB/s of post text (UTF-8 bytes) for normalisation alone, matching of normalised posts per
backend, and both together; the naive baseline (each topic one Python `re` pattern run on each
post) on a subset of the posts, and the matches both find on that subset (they must agree).

`.venv/bin/python -c "from bench.topics import run, print_table; from pathlib import Path;
print_table(run(Path('/work/shared/data'), quick=True))"`
"""

from __future__ import annotations

import gzip
import json
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

SEED = 20261122
SIZES = (100, 1_000, 10_000)
POSTS, QUICK_POSTS = 50_000, 10_000
TWEETS, QUICK_TWEETS = 3_000, 1_000
REPEATS, QUICK_REPEATS = 3, 2
# Posts the regex baseline sees per topic count: it costs ~topics x posts regex runs.
BASELINE_POSTS = {100: 5_000, 1_000: 1_000, 10_000: 200}
QUICK_BASELINE_POSTS = {100: 2_000, 1_000: 400, 10_000: 100}

FLOORS: list[tuple[str, str, float]] = [
    ("sizes.10000.best_mb_s", "matching at 10,000 topics, MB/s of post text", 20.0),
    ("sizes.10000.speedup", "speed-up over the regex baseline at 10,000 topics", 50.0),
]


def _chinese(word: str) -> bool:
    return len(word) >= 2 and all("\u4e00" <= c <= "\u9fff" for c in word)


_ENGLISH_STOP = frozenset(
    re.findall(
        r"\w+",
        "the and for that this with you are have from was what not but all they will just can "
        "our out about who has been get more now via after like how when were their one your "
        "there some any still its his her them than then also here http https",
    )
)


# --- Corpus and topics ------------------------------------------------------------------------


def load_posts(data: Path, n_posts: int, n_tweets: int, rng: random.Random) -> list[Any]:
    """TopicDocs: CED posts (all sources first, then random reposts) and CrisisLex tweets."""
    from tingfeng.analyze.normalize import normalize
    from tingfeng.topics import TopicDoc

    sources: list[str] = []
    reposts: list[str] = []
    with gzip.open(data / "rumor" / "ced" / "cascades.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            cascade = json.loads(line)
            sources.append(cascade.get("text") or "")
            reposts.extend(r.get("text") or "" for r in cascade.get("reposts", ()))
    texts = [t for t in sources if normalize(t)][:n_posts]
    for i in rng.sample(range(len(reposts)), len(reposts)):
        if len(texts) >= n_posts:
            break
        if normalize(reposts[i]):
            texts.append(reposts[i])
    docs = [TopicDoc(t, site="weibo.com", source="ced", source_id=1, lang="zh") for t in texts]
    tweets = []
    with (data / "events" / "crisislex26.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            tweets.append(json.loads(line)["text"])
    for text in rng.sample(tweets, min(n_tweets, len(tweets))):
        docs.append(TopicDoc(text, site="twitter.com", source="crisislex", source_id=2, lang="en"))
    rng.shuffle(docs)
    return docs


def keywords(data: Path, vocabulary: str = "idf") -> dict[str, list[str]]:
    """Real keywords, in two vocabularies (both reported):

    "idf": Chinese words of the shipped IDF table, independent of the benchmark posts: the
    3,000 commonest words left out as subjects (工具, 究竟: nobody watches them), subjects
    from ranks 3,000-40,000 (县委书记, 补偿款, 石梁河水库), "what happened" words from ranks
    500-5,000 (投诉, 事故, 警察), phrases from the words of 4+ characters.
    "ced": the TF-IDF keywords (tingfeng.analyze.keywords, 6 a post) of every CED source
    post, i.e. of the benchmark posts themselves: a stress case in which every post contains
    watched words. Keywords of 5+ posts are the "what happened" words, the rest subjects.
    English (both): CrisisLex tweet words by document frequency (subjects: 5-60 tweets;
    events: the commonest, stopwords out) and their commonest two-word sequences as phrases.
    """
    from tingfeng.analyze.normalize import normalize

    idf_path = Path(__file__).resolve().parent.parent / "src/tingfeng/models/idf.tsv.gz"
    ranked: list[str] = []
    with gzip.open(idf_path, "rt", encoding="utf-8") as fh:
        next(fh)
        for line in fh:
            word = line.split("\t", 1)[0]
            if _chinese(word):
                ranked.append(word)
    out: dict[str, list[str]] = {"phrases": [w for w in ranked[500:40_000] if len(w) >= 4]}
    if vocabulary == "idf":
        out["subjects"] = ranked[3_000:40_000]
        out["events"] = ranked[500:5_000]
    else:
        from tingfeng.analyze.keywords import KeywordExtractor, load_default_idf
        from tingfeng.analyze.segment import Segmenter

        extractor = KeywordExtractor(load_default_idf(), Segmenter())
        zh: Counter[str] = Counter()
        ced = data / "rumor" / "ced" / "cascades.jsonl.gz"
        with gzip.open(ced, "rt", encoding="utf-8") as fh:
            for line in fh:
                text = normalize(json.loads(line).get("text") or "")
                # Latin fragments of URLs and handles ("ttp", "cn") are not watched words.
                zh.update({k.word for k in extractor.tfidf(text, k=6) if _chinese(k.word)})
        out["subjects"] = sorted(w for w, n in zh.items() if n < 5)
        out["events"] = sorted(w for w, n in zh.items() if n >= 5)
    en: Counter[str] = Counter()
    pairs: Counter[str] = Counter()
    with (data / "events" / "crisislex26.jsonl").open(encoding="utf-8") as fh:
        for line in fh:
            words = re.findall(r"[a-z]{3,}", normalize(json.loads(line)["text"]))
            en.update({w for w in words if len(w) >= 4 and w not in _ENGLISH_STOP})
            pairs.update(
                f"{x} {y}"
                for x, y in pairwise(words)
                if x not in _ENGLISH_STOP and y not in _ENGLISH_STOP
            )
    out["en_subjects"] = sorted(w for w, n in en.items() if 5 <= n <= 60)
    out["en_events"] = [w for w, _ in en.most_common(400)][30:]
    out["en_phrases"] = [p for p, _ in pairs.most_common(600)][20:]
    return out


def build_topics(data: Path, n: int, rng: random.Random, vocabulary: str = "idf") -> list[Any]:
    """`n` topics in the shapes of the brief: mostly `(A OR B OR C) AND (D OR E) NOT F`, with
    phrases, NEAR/ONEAR, wildcards and field filters; some exclusions and source scopes."""
    from tingfeng.topics import Topic

    words = keywords(data, vocabulary)

    def stem(word: str) -> str:
        return word[: max(4, len(word) - 2)] + "*"

    topics = []
    for i in range(n):
        english = rng.random() < 0.12
        subj = words["en_subjects" if english else "subjects"]
        evt = words["en_events" if english else "events"]
        a, b, c = rng.sample(subj, 3)
        d, e, f = rng.sample(evt, 3)
        roll = rng.random()
        if roll < 0.50:
            query = f"({a} OR {b} OR {c}) AND ({d} OR {e}) NOT {f}"
        elif roll < 0.60:
            p, q = rng.sample(words["en_phrases" if english else "phrases"], 2)
            query = f'("{p}" OR "{q}" OR {a}) AND ({d} OR {e})'
        elif roll < 0.70:
            query = f"({a} OR {b}) NEAR/5 ({d} OR {e})"
        elif roll < 0.75:
            query = f"({a} OR {b}) ONEAR/5 {d}"
        elif roll < 0.85:
            if english:
                query = f"({stem(a)} OR {b} OR {c}) AND ({d} OR {stem(e)})"
            else:
                query = f"({a} OR {b} OR {c}) AND ({d} OR {e}) NOT {f}*"
        elif roll < 0.95:
            field = rng.choice(
                [
                    "lang:en" if english else "lang:zh",
                    "site:weibo.com",
                    "source:ced",
                    "-site:qq.com",
                ]
            )
            query = f"({a} OR {b} OR {c}) AND ({d} OR {e}) {field}"
        else:
            query = f"{a} AND {b} NOT {f}"
        exclusions = (rng.choice(evt),) if rng.random() < 0.1 else ()
        scope = frozenset({1}) if rng.random() < 0.05 else None
        topics.append(Topic(i, query, exclusions=exclusions, source_ids=scope))
    return topics


# --- The naive baseline -----------------------------------------------------------------------


def _baseline(topic: Any) -> Callable[[Any], bool]:
    """One Python `re` pattern for the topic's text logic (zero-width assertions at the start
    of the post), plus Python checks for top-level field filters and source scope."""
    from tingfeng.topics import And, Field, Filter, Near, Not, Or, Term
    from tingfeng.topics.matcher import filter_ok
    from tingfeng.topics.syntax import CJK_CLASS, has_cjk, is_word_char

    word = f"[^\\W_{CJK_CLASS}]"
    run = f"(?:{word}++|(?:(?=[{CJK_CLASS}])[^\\W_])++)"

    def term(t: Term) -> str:
        body = re.escape(t.text)
        if is_word_char(t.text[0]):
            body = f"(?<!{word}){body}"
        if is_word_char(t.text[-1]):
            body += f"{word}*+" if t.wildcard else f"(?!{word})"
        return body

    def alt(terms: list[Term]) -> str:
        return "(?:" + "|".join(term(t) for t in terms) + ")"

    def ordered(first: list[Term], second: list[Term], n: int) -> list[str]:
        # The unit of distance depends on the pair of literals: characters if either has CJK.
        f_cjk = [t for t in first if has_cjk(t.text)]
        f_lat = [t for t in first if not has_cjk(t.text)]
        s_cjk = [t for t in second if has_cjk(t.text)]
        s_lat = [t for t in second if not has_cjk(t.text)]
        out = []
        if s_cjk:
            out.append(f"{alt(first)}.{{0,{n}}}{alt(s_cjk)}")
        if f_cjk and s_lat:
            out.append(f"{alt(f_cjk)}.{{0,{n}}}{alt(s_lat)}")
        if f_lat and s_lat:
            out.append(f"{alt(f_lat)}[\\W_]*(?:{run}[\\W_]*){{0,{n}}}{alt(s_lat)}")
        return out

    def operands(node: Any) -> list[Term]:
        return [node] if isinstance(node, Term) else list(node.children)

    def assertion(node: Any) -> str:
        if isinstance(node, Term):
            return f"(?=.*?{term(node)})"
        if isinstance(node, Not):
            return f"(?!{assertion(node.child)})"
        if isinstance(node, And):
            return "".join(assertion(c) for c in node.children)
        if isinstance(node, Or):
            return "(?:" + "|".join(assertion(c) for c in node.children) + ")"
        if isinstance(node, Near):
            left, right = operands(node.left), operands(node.right)
            options = ordered(left, right, node.distance)
            if not node.ordered:
                options += ordered(right, left, node.distance)
            return "(?=.*?(?:" + "|".join(options) + "))"
        raise ValueError(f"the baseline does not handle {type(node).__name__} here")

    tree = topic.parsed()
    conjuncts = list(tree.children) if isinstance(tree, And) else [tree]

    def is_filter(node: Any) -> bool:
        return isinstance(node, Filter) or (isinstance(node, Not) and is_filter(node.child))

    checks = []
    for node in conjuncts:
        if is_filter(node):
            negated = isinstance(node, Not)
            leaf = node.child if negated else node
            checks.append((leaf.name, leaf.value, negated))
    text_part = [c for c in conjuncts if not is_filter(c)]
    if any(isinstance(c, Field) for c in text_part):
        raise ValueError("the baseline does not handle title:")
    source = "".join(assertion(c) for c in text_part)
    for phrase in topic.exclusion_terms():
        source += f"(?!.*?{term(phrase)})"
    pattern = re.compile(source, re.DOTALL)
    match = pattern.match
    scope = topic.source_ids

    def test(doc: Any) -> bool:
        if scope is not None and doc.source_id not in scope:
            return False
        if not all(filter_ok(name, value, doc) != negated for name, value, negated in checks):
            return False
        return match(doc.text) is not None

    return test


# --- Measurement ------------------------------------------------------------------------------


def _best(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, dict[str, float]]:
    """CPU and wall seconds per run, best of `repeats`, runs taking turns (noisy machine)."""
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    wall: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            c0, w0 = time.process_time(), time.perf_counter()
            fn()
            cpu[name].append(time.process_time() - c0)
            wall[name].append(time.perf_counter() - w0)
    return {name: {"cpu_s": min(cpu[name]), "wall_s": min(wall[name])} for name in runs}


def _mb_s(nbytes: int, seconds: float) -> float:
    return float(f"{nbytes / seconds / 1e6:.4g}") if seconds > 0 else float("inf")


# What the product runs ("auto" picks hyperscan where it is installed); "-bytes" is the same
# backend with two-character literals left to it instead of the pair table (the baseline of
# that change, prefilter._PairScanner).
SHIPPED = ("hyperscan", "aho")


def _matcher(topics: list[Any], backend: str) -> Any:
    from tingfeng.topics import TopicMatcher, prefilter

    if not backend.endswith("-bytes"):
        return TopicMatcher(topics, backend=backend)
    saved = prefilter.PAIR_TABLE_MIN
    prefilter.PAIR_TABLE_MIN = 1 << 62
    try:
        return TopicMatcher(topics, backend=backend.removesuffix("-bytes"))
    finally:
        prefilter.PAIR_TABLE_MIN = saved


def _measure(
    topics: list[Any],
    raw: list[Any],
    prepared: list[Any],
    normalize_s: float,
    backends: list[str],
    repeats: int,
    baseline_posts: int | None,
) -> dict[str, Any]:
    """One topic set: build and match time per backend, matches, and the regex baseline."""

    nbytes = sum(len(d.text.encode("utf-8")) for d in raw)
    entry: dict[str, Any] = {"topics": len(topics)}
    matchers = {}
    for backend in backends:
        b0 = time.perf_counter()
        matchers[backend] = _matcher(topics, backend)
        entry[f"{backend}_build_s"] = round(time.perf_counter() - b0, 2)
    outputs: dict[str, list[Any]] = {}

    def runner(backend: str) -> Callable[[], object]:
        def go() -> None:
            outputs[backend] = matchers[backend].match_many(prepared)

        return go

    for backend, t in _best({b: runner(b) for b in backends}, repeats).items():
        entry[backend] = {
            "cpu_s": round(t["cpu_s"], 3),
            "mb_s": _mb_s(nbytes, t["cpu_s"]),
            "mb_s_with_normalize": _mb_s(nbytes, t["cpu_s"] + normalize_s),
            "wall_mb_s": _mb_s(nbytes, t["wall_s"]),
        }
    ids = {b: [[h.topic_id for h in hits] for hits in out] for b, out in outputs.items()}
    first = backends[0]
    entry["matches"] = sum(len(x) for x in ids[first])
    entry["posts_matched"] = sum(bool(x) for x in ids[first])
    entry["backends_agree"] = all(ids[b] == ids[first] for b in ids)
    entry["best_mb_s"] = max(entry[b]["mb_s"] for b in backends if b in SHIPPED)
    # Why it costs what it costs: watched literals found per post (each one a scanner match
    # handled in Python) and topics evaluated per post after the numpy gate.
    matcher = matchers[first]
    entry["patterns"] = len(matcher.patterns)
    found = matcher._scanner.scan([d.text for d in prepared])
    entry["literals_found_per_post"] = round(len(found[0]) / len(prepared), 2)
    candidates = matcher._candidates(prepared)
    entry["evaluated_per_post"] = round(
        (len(candidates[0]) if candidates else 0) / len(prepared), 3
    )
    if baseline_posts is None:
        return entry
    # The subset: posts the matcher matched (up to half of it: matches are rare, and an
    # agreement check on posts nobody matches proves little), then the first others.
    matched = [i for i, x in enumerate(ids[first]) if x][: baseline_posts // 2]
    taken = set(matched)
    rest = [i for i in range(len(prepared)) if i not in taken][: baseline_posts - len(matched)]
    chosen = sorted(matched + rest)
    subset = [prepared[i] for i in chosen]
    sub_bytes = sum(len(raw[i].text.encode("utf-8")) for i in chosen)
    tests = [_baseline(t) for t in topics]
    naive_found: list[list[int]] = []

    def naive() -> None:
        naive_found[:] = [
            [t.id for t, ok in zip(topics, tests, strict=True) if ok(d)] for d in subset
        ]

    naive_s = _best({"regex": naive}, 1)["regex"]["cpu_s"]
    entry["baseline"] = {
        "posts": len(subset),
        "cpu_s": round(naive_s, 3),
        "mb_s": _mb_s(sub_bytes, naive_s),
        "posts_matched_by_matcher": len(matched),
        "matches": sum(map(len, naive_found)),
        "matcher_matches": sum(len(ids[first][i]) for i in chosen),
        "posts_agreeing": sum(
            naive == ids[first][i] for naive, i in zip(naive_found, chosen, strict=True)
        ),
    }
    entry["speedup"] = round(entry["best_mb_s"] / entry["baseline"]["mb_s"], 1)
    return entry


def run(data: Path, *, quick: bool = False) -> dict[str, Any]:
    from tingfeng.topics.prefilter import hyperscan_available

    rng = random.Random(SEED)
    repeats = QUICK_REPEATS if quick else REPEATS
    t0 = time.perf_counter()
    raw = load_posts(data, QUICK_POSTS if quick else POSTS, QUICK_TWEETS if quick else TWEETS, rng)
    nbytes = sum(len(d.text.encode("utf-8")) for d in raw)
    load_s = time.perf_counter() - t0

    prepared: list[Any] = []

    def prepare() -> None:
        prepared[:] = [d.prepare() for d in raw]

    normalize_s = _best({"normalize": prepare}, repeats)["normalize"]["cpu_s"]
    backends = ["hyperscan", "hyperscan-bytes", "aho"] if hyperscan_available() else ["aho"]
    result: dict[str, Any] = {
        "quick": quick,
        "corpus": {
            "posts": len(raw),
            "ced_posts": sum(d.source_id == 1 for d in raw),
            "tweets": sum(d.source_id == 2 for d in raw),
            "mb": round(nbytes / 1e6, 3),
            "mean_bytes": round(nbytes / len(raw), 1),
            "load_s": round(load_s, 1),
        },
        "normalize": {"cpu_s": round(normalize_s, 3), "mb_s": _mb_s(nbytes, normalize_s)},
        "backends": backends,
        "vocabulary": "idf",
        "sizes": {},
    }
    topics = build_topics(data, max(SIZES), random.Random(SEED + 1), "idf")
    baseline_posts = QUICK_BASELINE_POSTS if quick else BASELINE_POSTS
    for size in SIZES:
        result["sizes"][str(size)] = _measure(
            topics[:size], raw, prepared, normalize_s, backends, repeats, baseline_posts[size]
        )
    # Stress case: 10,000 topics whose words are the benchmark posts' own keywords.
    stress = build_topics(data, max(SIZES), random.Random(SEED + 2), "ced")
    result["stress_ced_keywords"] = _measure(
        stress, raw, prepared, normalize_s, backends, repeats, None
    )
    result["floors"] = {
        key: {
            "what": what,
            "floor": floor,
            "value": _get(result, key),
            "met": _get(result, key) >= floor,
        }
        for key, what, floor in FLOORS
    }
    return result


def _get(result: dict[str, Any], key: str) -> float:
    node: Any = result
    for part in key.split("."):
        node = node[part]
    return float(node)


def print_table(result: dict[str, Any]) -> None:
    corpus = result["corpus"]
    print(
        f"Topic matching: {corpus['posts']:,} posts ({corpus['ced_posts']:,} CED, "
        f"{corpus['tweets']:,} tweets), {corpus['mb']} MB, mean {corpus['mean_bytes']} bytes"
        f"{' (quick)' if result['quick'] else ''}; single thread, CPU time, best of rounds"
    )
    print(f"normalize alone: {result['normalize']['mb_s']} MB/s")
    print(
        f"{'topics':>7} {'backend':>15} {'build s':>8} {'MB/s':>8} {'+norm':>8} {'matches':>8}"
        f" {'lit/post':>8} {'eval/post':>9}"
    )
    rows = [(f"{size}", entry) for size, entry in result["sizes"].items()]
    rows.append(("10000*", result["stress_ced_keywords"]))
    for label, entry in rows:
        for backend in result["backends"]:
            t = entry[backend]
            print(
                f"{label:>7} {backend:>15} {entry[f'{backend}_build_s']:>8} {t['mb_s']:>8} "
                f"{t['mb_s_with_normalize']:>8} {entry['matches']:>8}"
                f" {entry['literals_found_per_post']:>8} {entry['evaluated_per_post']:>9}"
            )
        base = entry.get("baseline")
        if base:
            print(
                f"{label:>7} {'regex':>15} {'':>8} {base['mb_s']:>8} {'':>8} {base['matches']:>8}"
                f"  on {base['posts']:,} posts (matcher: {base['matcher_matches']}; "
                f"{base['posts_agreeing']}/{base['posts']} posts agree); "
                f"speed-up {entry['speedup']}x"
            )
        if not entry["backends_agree"]:
            print(f"{label:>7} BACKENDS DISAGREE")
    print("* stress case: topics made of the benchmark posts' own TF-IDF keywords (no baseline)")
    for key, floor in result["floors"].items():
        mark = "ok" if floor["met"] else "NOT MET"
        print(f"floor {floor['what']}: {floor['value']} (>= {floor['floor']}) {mark}  [{key}]")
