"""`tingfeng demo seed`: a fresh database filled with a realistic demonstration.

A county office (departments, people of every role, routing rules, case templates, a duty
shift), the example topics with alert rules and escalation policies, the real CED Weibo posts
ingested through the normal pipeline (so readings, events and alerts are what Tingfeng makes of
them), cases in every state built from those alerts, events and posts by the people whose job
each step is, and evidence captured from pages that show the key posts.

Each part runs in its own transaction; a part that fails stops the seed, and the error says
which parts were done, so a half-seeded database never passes for a whole one.

The cases are given a plausible history: they are played on a clock that starts three days ago
(the posts are taken to have been collected just before), so case pages, deadlines and the
ledger look like an office at work rather than a burst of actions in one second.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import islice
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, func, select

from tingfeng.collect.connectors.imports.ced import EMPTY_REPOST_TEXT as EMPTY_REPOST
from tingfeng.db.engine import write_transaction
from tingfeng.db.models import (
    Alert,
    AlertRule,
    BoardMessage,
    Case,
    CaseTask,
    CaseTemplate,
    Department,
    Event,
    EventPost,
    Evidence,
    Post,
    Reply,
    ReplyVersion,
    RoutingRule,
    User,
)
from tingfeng.office.people import ROLES, Person
from tingfeng.problems import ProblemsError
from tingfeng.settings import Settings

PASSWORD = "tingfeng-demo"
CED_SOURCE = "演示·CED 微博数据集（demo seed）"
# Reposts kept per story: the first N items of CED would otherwise be a handful of stories
# with hundreds of reposts each; capped, the same number of posts covers many stories.
REPOSTS_PER_STORY = 20
MIN_POSTS = 100
# The cases' history is played from this long ago up to shortly before now.
HISTORY = timedelta(hours=72)

# (name, parent)
DEPARTMENTS: list[tuple[str, str | None]] = [
    ("县委网信办", None),
    ("县委宣传部", "县委网信办"),
    ("城管局", "县委网信办"),
    ("环卫所", "城管局"),
    ("卫健局", "县委网信办"),
    ("县人民医院", "卫健局"),
    ("教育局", "县委网信办"),
    ("市场监管局", "县委网信办"),
    ("城关镇政府", "县委网信办"),
]
# (username, display name, role, department)
PEOPLE: list[tuple[str, str, str, str | None]] = [
    ("admin", "管理员", "admin", "县委网信办"),
    ("zhangmin", "张敏（监测员）", "analyst", "县委网信办"),
    ("liqiang", "李强（监测员）", "analyst", "县委网信办"),
    ("wangjianguo", "王建国（网信办主任）", "approver", "县委网信办"),
    ("zhaoweidong", "赵卫东（城管局副局长）", "approver", "城管局"),
    ("chenjing", "陈静（卫健局副局长）", "approver", "卫健局"),
    ("liuyang", "刘洋（城管局）", "handler", "城管局"),
    ("sunlei", "孙磊（环卫所）", "handler", "环卫所"),
    ("zhoufang", "周芳（卫健局）", "handler", "卫健局"),
    ("wumin", "吴敏（教育局）", "handler", "教育局"),
    ("machao", "马超（市场监管局）", "handler", "市场监管局"),
    ("hexue", "何雪（宣传部）", "handler", "县委宣传部"),
    ("zhengxiao", "郑晓（城关镇联络员）", "liaison", "城关镇政府"),
    ("qianli", "钱丽（只读）", "viewer", "县委宣传部"),
]
# Words that occur in the first stories of CED; rules earlier in the list win ties.
ROUTES: list[tuple[str, str, list[str], int]] = [
    ("环卫事项", "环卫所", ["环卫", "清运", "垃圾点"], 90),
    ("城管事项", "城管局", ["城管", "小贩", "占道", "执法", "拆"], 100),
    ("卫健事项", "卫健局", ["医院", "医生", "患者", "护士", "红十字"], 100),
    ("教育事项", "教育局", ["学生", "学校", "老师", "教师", "高考", "幼儿园"], 100),
    ("市场监管事项", "市场监管局", ["地沟油", "食品", "奶粉", "添加剂", "超市"], 100),
    ("城关镇事项", "城关镇政府", ["拆迁", "征地", "村民"], 100),
    ("不实信息澄清", "县委宣传部", ["谣言", "辟谣", "不实"], 200),
]
ANALYSTS = ("zhangmin", "liqiang")
CHIEF = "wangjianguo"


class SeedRefused(ProblemsError):
    """The database is not fresh: nothing was changed."""

    what = "database"


class SeedFailed(ProblemsError):
    """A part of the seed failed; `done` says which parts were completed before it."""

    def __init__(self, message: str, done: list[str]) -> None:
        super().__init__(message)
        self.done = done


# --- the parts ---------------------------------------------------------------------------------


def check_fresh(conn: Connection) -> None:
    """SeedRefused unless the database has no cases and none of the demo's names."""
    problems = []
    cases = conn.execute(select(func.count(Case.id))).scalar() or 0
    if cases:
        problems.append(
            f"This database already has {cases} case(s): `demo seed` fills a fresh database "
            "only. Use a new one, e.g. `tingfeng --db sqlite:///demo.db demo seed`."
        )
    names = [n for n, _ in DEPARTMENTS]
    taken = list(conn.execute(select(Department.name).where(Department.name.in_(names))).scalars())
    users = [u for u, *_ in PEOPLE]
    taken += list(conn.execute(select(User.username).where(User.username.in_(users))).scalars())
    if taken and not cases:
        problems.append(
            f"This database already has {', '.join(taken[:5])}: an earlier seed may have "
            "stopped part-way. Use a fresh database."
        )
    if problems:
        raise SeedRefused(problems)


@dataclass
class Office:
    departments: dict[str, int]
    parents: dict[int, int | None]
    people: dict[str, Person]

    def in_department(self, department: str, role: str) -> Person | None:
        """The first person of `role` in the department or, failing that, above it."""
        did: int | None = self.departments[department]
        while did is not None:
            for p in self.people.values():
                if p.role == role and p.department_id == did:
                    return p
            did = self.parents.get(did)
        return None

    def name_of(self, department_id: int | None) -> str:
        return next((n for n, i in self.departments.items() if i == department_id), "")


def seed_office(conn: Connection, settings: Settings, now: datetime) -> Office:
    from tingfeng.alerts.duty import add_shift
    from tingfeng.cases.routing import add_rule
    from tingfeng.cases.templates import add_template
    from tingfeng.office.people import add_department, add_user, set_password

    departments = {name: add_department(conn, name, parent) for name, parent in DEPARTMENTS}
    parents = {departments[n]: departments[p] if p else None for n, p in DEPARTMENTS}
    people: dict[str, Person] = {}
    for username, display, role, department in PEOPLE:
        people[username] = add_user(conn, username, display, role=role, department=department)
        set_password(conn, people[username].id, PASSWORD)
    for name, department, words, priority in ROUTES:
        add_rule(conn, name, department, {"keywords": words}, priority=priority)
    admin = people["admin"]
    add_template(conn, "督办件", origin="assigned", approval_levels=2, actor=admin)
    add_template(
        conn,
        "媒体来电",
        origin="onsite",
        tasks=[
            {"title": "核实情况", "kind": "verify", "due": "2h"},
            {"title": "准备口径", "kind": "materials", "due": "4wh"},
        ],
        actor=admin,
    )
    today = now.astimezone(ZoneInfo(settings.default_timezone)).date()
    add_shift(
        conn, "日间值班", "08:30", 9, days="workdays", starts_on=today,
        rotation={"A": [people[a].id for a in ANALYSTS], "B": [people["hexue"].id]}, now=now,
    )  # fmt: skip
    return Office(departments, parents, people)


def seed_alerting(engine: Engine, office: Office, now: datetime) -> list[int]:
    """The example topics, the alert rules and the escalation policies; returns topic ids."""
    from tingfeng.alerts.escalation import set_policy
    from tingfeng.alerts.service import create_rule
    from tingfeng.demo import ensure_demo_topics
    from tingfeng.topics.store import list_topics

    ensure_demo_topics(engine)
    chief = office.people[CHIEF].id
    with write_transaction(engine) as conn:
        topic_ids = [t.id for t in list_topics(conn)]
        create_rule(
            conn,
            {
                "name": "监测方案命中（按事件）",
                "conditions": {"topic_ids": topic_ids},
                "per": "event",
                "recipients": {"roles": ["analyst"], "on_duty": True},
                "note": "演示：每个命中监测方案的事件发一条预警。",
            },
            now,
        )
        create_rule(
            conn,
            {
                "name": "事件升至较大及以上",
                "conditions": {"level_rises": True, "min_level": "serious"},
                "recipients": {"roles": ["analyst"], "user_ids": [chief]},
                "level": "serious",
                "note": "演示：事件定级升到较大、重大或特大时告诉主任。",
            },
            now,
        )
        # Slower for a general event, faster the more serious it is.
        for level, first, second in (
            ("general", 60, 240),
            ("serious", 30, 120),
            ("major", 15, 60),
            ("critical", 5, 15),
        ):
            set_policy(
                conn,
                level,
                [
                    {"after_minutes": first, "recipients": {"on_duty": True, "roles": ["analyst"]}},
                    {"after_minutes": second, "recipients": {"user_ids": [chief]}},
                ],
                now=now,
            )
    return topic_ids


def story_items(path: Path, limit: int) -> Iterator[Any]:
    """The first `limit` items of CED, each story with at most REPOSTS_PER_STORY reposts."""
    from tingfeng.collect.connectors.imports import read_items
    from tingfeng.collect.items import RawItem

    reposts = 0

    def keep(item: Any) -> bool:
        nonlocal reposts
        if not isinstance(item, RawItem):
            return False
        if item.kind != "repost":
            reposts = 0
            return True
        reposts += 1
        return reposts <= REPOSTS_PER_STORY

    return islice(filter(keep, read_items(path, format="ced")), limit)


def seed_posts(
    engine: Engine, settings: Settings, path: Path, limit: int, at: datetime
) -> dict[str, int]:
    """Ingest the posts as if collected at `at`, then profile and grade every event."""
    from tingfeng.alerts.signals import level_listener
    from tingfeng.events.profile import grading_model_for, refresh_event
    from tingfeng.ingest.files import import_source
    from tingfeng.ingest.ingestor import Ingestor

    def clock() -> datetime:
        return at

    source = import_source(
        engine, settings, CED_SOURCE, {"path": str(path), "format": "ced", "platform": "weibo"}
    )
    stats = Ingestor(engine, settings, now=clock).ingest(source, story_items(path, limit))
    model = grading_model_for(settings.grading_model)
    on_level = level_listener(settings, clock)
    with engine.connect() as conn:
        events = list(conn.execute(select(Event.id).where(Event.status == "open")).scalars())
    for eid in events:
        with write_transaction(engine) as conn:
            refresh_event(conn, eid, model=model, on_level=on_level)
    return {"read": stats.read, "stored": stats.stored, "errors": stats.errors}


# --- where cases come from ---------------------------------------------------------------------


@dataclass
class Origin:
    """A real alert, event or post a case is opened from, and where routing would send it."""

    alert_id: int | None
    event_id: int | None
    post_id: int
    title: str
    department: str | None
    used: int = 0

    def link(self) -> dict[str, int]:
        if self.alert_id is not None:
            return {"alert_id": self.alert_id}
        if self.event_id is not None:
            return {"event_id": self.event_id}
        return {"post_id": self.post_id}


def find_origins(conn: Connection, office: Office) -> list[Origin]:
    """Alerts (largest events first), then events without one, then stories' first posts."""
    from tingfeng.cases.routing import FACT_POSTS, facts_of_posts, suggest

    out: list[Origin] = []
    seen_events: set[int] = set()
    sizes = dict(conn.execute(select(Event.id, Event.posts)).all())
    alerts = conn.execute(
        select(Alert.id, Alert.event_id, Alert.post_id, Alert.title).where(Alert.kind == "rule")
    ).all()
    for a in sorted(alerts, key=lambda a: (-(sizes.get(a.event_id) or 0), a.id)):
        if a.event_id in seen_events or a.post_id is None:
            continue
        seen_events.add(a.event_id)
        out.append(Origin(a.id, a.event_id, a.post_id, a.title, None))
    for e in conn.execute(
        select(Event.id, Event.first_post_id, Event.title).order_by(Event.posts.desc(), Event.id)
    ).all():
        if e.id not in seen_events and e.first_post_id is not None:
            seen_events.add(e.id)
            out.append(Origin(None, e.id, e.first_post_id, e.title, None))
    in_events = select(EventPost.post_id)
    for p in conn.execute(
        select(Post.id, Post.text_clean)
        .where(Post.kind == "post", Post.id.not_in(in_events))
        .order_by(Post.id)
    ).all():
        out.append(Origin(None, None, p.id, p.text_clean[:60], None))
    for o in out:
        ids = [o.post_id]
        if o.event_id is not None:
            ids = list(
                conn.execute(
                    select(EventPost.post_id)
                    .where(EventPost.event_id == o.event_id)
                    .order_by(EventPost.post_id)
                    .limit(FACT_POSTS)
                ).scalars()
            ) or [o.post_id]
        facts = facts_of_posts(conn, ids)
        facts.text += f"\n{o.title}".lower()
        hits = suggest(conn, facts)
        if hits:
            o.department = office.name_of(hits[0].department_id)
    return out


def pick(origins: list[Origin], wanted: tuple[str, ...] = (), *, plain: bool = False) -> Origin:
    """The first unused origin routed to one of `wanted` (any unused one, then the least used);
    `plain`: a post that is in no event, if there is one left."""
    if not origins:
        raise SeedFailed("No posts to open cases from: the CED file gave none.", [])
    pool = [o for o in origins if o.used == 0]
    if plain:
        pool = [o for o in pool if o.event_id is None] or pool
    chosen = next((o for o in pool if o.department in wanted), None) if wanted else None
    chosen = chosen or (pool[0] if pool else min(origins, key=lambda o: o.used))
    chosen.used += 1
    return chosen


# --- playing the cases -------------------------------------------------------------------------

Work = Callable[[Connection, datetime], Any]


def _short(title: str, size: int = 24) -> str:
    text = " ".join(title.split())
    return text if len(text) <= size else text[:size] + "…"


def _story_label(conn: Connection, post_id: int) -> str | None:
    """CED's verdict on the story a post belongs to: rumor, non-rumor or None."""
    row = conn.execute(select(Post.extra, Post.reposts_of_id).where(Post.id == post_id)).first()
    for _ in range(5):
        if row is None:
            return None
        label = (row.extra or {}).get("label")
        if label or row.reposts_of_id is None:
            return str(label) if label else None
        row = conn.execute(
            select(Post.extra, Post.reposts_of_id).where(Post.id == row.reposts_of_id)
        ).first()
    return None


def reply_text(stage: str, title: str, label: str | None) -> str:
    t = _short(title)
    if stage == "facts":
        return (
            f"关于网传“{t}”一事：我们已关注到相关信息，正会同有关部门核实，核实情况将及时公布。"
            "请广大网友以官方发布为准，不信谣、不传谣。"
        )
    if stage == "progress":
        return (
            f"关于“{t}”的进展：有关部门已调取记录并走访当事人，网传部分内容与事实有出入，"
            "调查仍在进行，结果将第一时间公布。"
        )
    if stage == "point":
        return (
            f"网友您好，您关心的“{t}”一事我们已核实，详细情况请见本单位官方微博发布的情况说明。"
            "感谢您的关注！"
        )
    if label == "non-rumor":
        return (
            f"关于“{t}”的处置结果：经核实，反映的情况基本属实，有关部门已依法依规处置，"
            "并完善了相关制度。感谢广大网友的关心和监督。"
        )
    return (
        f"关于“{t}”的核查结果：经核实，网传内容与事实不符。我们已向平台提交澄清说明，"
        "对编造、故意传播虚假信息的行为将依法处理。感谢广大网友的监督。"
    )


@dataclass
class Plan:
    """Steps on a clock: scheduled per case, played in time order in one transaction."""

    origin: datetime
    steps: list[tuple[datetime, int, Work]] = field(default_factory=list)

    def chain(self, start_h: float, steps: list[tuple[float, Work]]) -> None:
        """`steps` one after another from `start_h` hours; each waits its own hours first."""
        at = self.origin + timedelta(hours=start_h)
        for wait_h, work in steps:
            at += timedelta(hours=wait_h)
            self.steps.append((at, len(self.steps), work))

    def play(self, conn: Connection) -> None:
        for at, _n, work in sorted(self.steps, key=lambda s: (s[0], s[1])):
            work(conn, at)


@dataclass
class Cases:
    """The case scripts: who does what, in which order, to which case."""

    settings: Settings
    office: Office
    origins: list[Origin]
    ids: dict[str, int] = field(default_factory=dict)
    replies: dict[str, int] = field(default_factory=dict)
    departments: dict[str, str] = field(default_factory=dict)

    def p(self, username: str) -> Person:
        return self.office.people[username]

    # building blocks: each returns the work for one step

    def start(self, key: str, who: str, source: Origin | None, **kw: Any) -> Work:
        from tingfeng.alerts.ack import acknowledge
        from tingfeng.cases.service import open_case

        def work(conn: Connection, at: datetime) -> None:
            links = source.link() if source is not None else {}
            person = self.p(who)
            self.ids[key] = open_case(conn, person, self.settings, now=at, **links, **kw)
            if source is not None and source.alert_id is not None:
                acknowledge(
                    conn, source.alert_id, by=person.display_name, via="web", now=at,
                    user_id=person.id,
                )  # fmt: skip

        return work

    def act(self, key: str, who: str, action: str, **kw: Any) -> Work:
        from tingfeng.cases.service import act

        def work(conn: Connection, at: datetime) -> None:
            act(conn, self.p(who), self.settings, self.ids[key], action, now=at, **kw)

        return work

    def draft(self, key: str, who: str, stage: str, reply: str, point: bool = False) -> Work:
        from tingfeng.cases.replies import draft_reply
        from tingfeng.cases.service import get_case

        def work(conn: Connection, at: datetime) -> None:
            case = get_case(conn, self.ids[key])
            label = _story_label(conn, case.post_id) if case.post_id else None
            target = _asking_post(conn, case) if point else None
            self.replies[reply] = draft_reply(
                conn, self.p(who), case.id, reply_text(stage, case.title, label),
                stage=stage, in_reply_to_post_id=target, now=at,
            )  # fmt: skip

        return work

    def reply(self, reply: str, who: str, step: str, **kw: Any) -> Work:
        from tingfeng.cases import replies

        def work(conn: Connection, at: datetime) -> None:
            rid, person = self.replies[reply], self.p(who)
            if step == "submit":
                replies.submit_reply(conn, person, self.settings, rid, now=at)
            elif step == "approve":
                replies.approve_reply(conn, person, self.settings, rid, now=at)
            elif step == "return":
                replies.return_reply(conn, person, self.settings, rid, kw["reason"], now=at)
            elif step == "revise":
                current = conn.execute(
                    select(ReplyVersion.text)
                    .where(ReplyVersion.reply_id == rid)
                    .order_by(ReplyVersion.version.desc())
                ).scalar()
                replies.revise_reply(conn, person, rid, f"{current}{kw['add']}", note=kw["note"],
                                     now=at)  # fmt: skip
            elif step == "publish":
                replies.publish_reply(
                    conn, person, self.settings, rid, platform=kw.get("platform", "微博"),
                    account=kw["account"], published_at=at, now=at,
                )  # fmt: skip

        return work

    def progress(self, key: str, who: str, text: str) -> Work:
        from tingfeng.cases.tasks import add_progress

        def work(conn: Connection, at: datetime) -> None:
            add_progress(conn, self.p(who), self.ids[key], text, now=at)

        return work

    def task(self, key: str, who: str, title: str, kind: str, assignee: str, due: str) -> Work:
        from tingfeng.cases.tasks import add_task

        def work(conn: Connection, at: datetime) -> None:
            add_task(conn, self.p(who), self.settings, self.ids[key], title, kind=kind,
                     assignee=self.p(assignee).id, due=due, now=at)  # fmt: skip

        return work

    def finish_first_task(self, key: str, who: str, note: str) -> Work:
        from tingfeng.cases.tasks import complete_task

        def work(conn: Connection, at: datetime) -> None:
            task = conn.execute(
                select(CaseTask.id)
                .where(CaseTask.case_id == self.ids[key], CaseTask.status == "open")
                .order_by(CaseTask.id)
                .limit(1)
            ).scalar_one()
            complete_task(conn, self.p(who), task, note=note, now=at)

        return work

    # the people of a department

    def route(self, key: str, origin: Origin, fallback: str) -> tuple[str, str, str]:
        """The department the case goes to (routing's choice when someone there can take it),
        its handler and its approver."""
        department = origin.department or fallback
        if self.office.in_department(department, "handler") is None:
            department = fallback
        handler = self.office.in_department(department, "handler")
        approver = self.office.in_department(department, "approver")
        assert handler is not None and approver is not None
        self.departments[key] = department
        return department, handler.username, approver.username

    def account(self, key: str) -> str:
        return f"@{self.departments[key]}官方微博"

    def to_verifying(
        self, key: str, analyst: str, department: str, handler: str
    ) -> list[tuple[float, Work]]:
        """Assess, approve, assign (to `department`), accept."""
        return [
            (0.5, self.act(key, analyst, "assess", level="一般",
                           handling=f"交{department}核实，24小时内报送核查情况，视情发布权威信息")),
            (1.0, self.act(key, CHIEF, "approve_handling")),
            (0.3, self.act(key, analyst, "assign", department=department)),
            (1.0, self.act(key, handler, "accept")),
        ]  # fmt: skip

    def plan(self, plan: Plan, board_message: Callable[[Connection, datetime], int]) -> None:
        """Every script, those that most want a fitting story first (they choose first)."""
        self.following(plan)
        self.archived(plan)
        self.published(plan)
        self.board(plan, board_message)
        self.reply_approved(plan)
        self.drafted(plan)
        self.verifying(plan)
        self.media(plan)
        self.assigned(plan)
        self.dismissed(plan)
        self.approved(plan)
        self.assessed(plan)
        self.fresh(plan)

    def following(self, plan: Plan) -> None:
        """跟踪中: a matter the city office assigned (督办件, two approval levels), answered in
        stages while it is followed; the result is being drafted."""
        a1, k = ANALYSTS[0], "following"
        o = pick(self.origins, ("卫健局", "城管局", "环卫所", "县人民医院"))
        dept, handler, lead = self.route(k, o, "卫健局")
        if lead == CHIEF:  # two levels need two different leaders
            dept, handler, lead = "卫健局", "zhoufang", "chenjing"
            self.departments[k] = dept
        deadline = plan.origin + timedelta(days=5)
        plan.chain(2, [
            (0, self.start(k, a1, o, origin="assigned", template="督办件", origin_detail={
                "office": "市委网信办",
                "instructions": "请迅速核实网传情况，依法依规处置，及时回应社会关切，"
                                "限期内书面报告处置结果。",
                "deadline": deadline.isoformat(),
            })),
            (0.5, self.act(k, a1, "assess", level="较大",
                           handling=f"按督办要求交{dept}核实，分阶段发布信息")),
            (1.0, self.act(k, CHIEF, "approve_handling")),
            (0.3, self.act(k, a1, "assign", department=dept)),
            (1.0, self.act(k, handler, "accept")),
            (1.0, self.draft(k, handler, "facts", "facts")),
            (0.1, self.reply("facts", handler, "submit")),
            (0.5, self.reply("facts", lead, "approve")),
            (0.5, self.reply("facts", CHIEF, "approve")),
            (0.3, self.reply("facts", handler, "publish", account=self.account(k))),
            (0.2, self.act(k, handler, "follow_up")),
            (10.0, self.progress(k, handler, "已约谈信息首发账号，调查组进驻核查。")),
            (2.0, self.draft(k, handler, "progress", "progress")),
            (0.1, self.reply("progress", handler, "submit")),
            (0.5, self.reply("progress", lead, "approve")),
            (0.5, self.reply("progress", CHIEF, "approve")),
            (0.3, self.reply("progress", handler, "publish", account=self.account(k))),
            (0.2, self.act(k, handler, "follow_up")),
            (24.0, self.draft(k, handler, "result", "result")),
        ])  # fmt: skip

    def archived(self, plan: Plan) -> None:
        """已归档: the whole way (its evidence is captured afterwards)."""
        a2, k = ANALYSTS[1], "archived"
        o = pick(self.origins, ("城管局", "市场监管局", "县委宣传部"))
        dept, handler, lead = self.route(k, o, "县委宣传部")
        plan.chain(0.5, [
            (0, self.start(k, a2, o)),
            *self.to_verifying(k, a2, dept, handler),
            (3.0, self.draft(k, handler, "result", k)),
            (0.2, self.reply(k, handler, "submit")),
            (1.0, self.reply(k, lead, "approve")),
            (0.5, self.reply(k, handler, "publish", account=self.account(k))),
            (12.0, self.act(k, handler, "follow_up")),
            (24.0, self.act(k, a2, "close", result="已澄清，网上讨论回落，转入常态监测")),
            (12.0, self.act(k, CHIEF, "archive")),
        ])  # fmt: skip

    def published(self, plan: Plan) -> None:
        """已发布: a point-to-point reply to a poster's question."""
        a2, k = ANALYSTS[1], "published"
        o = pick(self.origins)
        dept, handler, lead = self.route(k, o, "县委宣传部")
        plan.chain(10, [
            (0, self.start(k, a2, o)),
            *self.to_verifying(k, a2, dept, handler),
            (2.0, self.draft(k, handler, "point", "point", point=True)),
            (0.2, self.reply("point", handler, "submit")),
            (1.0, self.reply("point", lead, "approve")),
            (0.5, self.reply("point", handler, "publish", account=self.account(k))),
        ])  # fmt: skip

    def board(self, plan: Plan, board_message: Callable[[Connection, datetime], int]) -> None:
        """已办结: a message on the public board, answered there."""
        a2, k = ANALYSTS[1], "board"
        dept, handler, lead = "环卫所", "sunlei", "zhaoweidong"
        self.departments[k] = dept

        def open_board(conn: Connection, at: datetime) -> None:
            mid = board_message(conn, at - timedelta(hours=1))
            self.start(k, a2, None, origin="board", board_message_id=mid,
                       title="留言：幸福小区垃圾多日无人清运")(conn, at)  # fmt: skip

        plan.chain(6, [
            (0, open_board),
            *self.to_verifying(k, a2, dept, handler),
            (4.0, self.draft_board(k, handler)),
            (0.2, self.reply(k, handler, "submit")),
            (1.0, self.reply(k, lead, "approve")),
            (0.3, self.reply(k, handler, "publish", platform="留言板", account="县城管局环卫所")),
            (24.0, self.act(k, handler, "follow_up")),
            (24.0, self.act(k, a2, "close", result="已清运，该点位纳入每日清运范围")),
        ])  # fmt: skip

    def reply_approved(self, plan: Plan) -> None:
        """回复已审批"""
        a1, k = ANALYSTS[0], "reply_approved"
        o = pick(self.origins, ("城管局", "环卫所", "卫健局"))
        dept, handler, lead = self.route(k, o, "城管局")
        plan.chain(25, [
            (0, self.start(k, a1, o)),
            *self.to_verifying(k, a1, dept, handler),
            (2.0, self.draft(k, handler, "facts", k)),
            (0.2, self.reply(k, handler, "submit")),
            (1.5, self.reply(k, lead, "approve")),
        ])  # fmt: skip

    def drafted(self, plan: Plan) -> None:
        """回复待审, once returned by the department's leader and revised."""
        a2, k = ANALYSTS[1], "drafted"
        o = pick(self.origins, ("卫健局", "城管局"))
        dept, handler, lead = self.route(k, o, "卫健局")
        plan.chain(20, [
            (0, self.start(k, a2, o)),
            *self.to_verifying(k, a2, dept, handler),
            (3.0, self.draft(k, handler, "facts", k)),
            (0.2, self.reply(k, handler, "submit")),
            (2.0, self.reply(k, lead, "return", reason="请写明核实的时间和责任单位")),
            (1.0, self.reply(k, handler, "revise", note="按领导意见补充",
                             add=f"（{dept}，核实工作已于当日启动）")),
            (0.1, self.reply(k, handler, "submit")),
        ])  # fmt: skip

    def verifying(self, plan: Plan) -> None:
        """核查中, with a task and a progress note."""
        a1, k = ANALYSTS[0], "verifying"
        o = pick(self.origins, ("教育局", "卫健局"))
        dept, handler, _ = self.route(k, o, "教育局")
        plan.chain(40, [
            (0, self.start(k, a1, o)),
            *self.to_verifying(k, a1, dept, handler),
            (0.2, self.task(k, a1, "联系发帖网友了解情况", "contact", handler, "1wd")),
            (4.0, self.progress(k, handler, "已联系涉事单位调取记录，正在逐一核对网传细节。")),
        ])  # fmt: skip

    def media(self, plan: Plan) -> None:
        """核查中 too: a journalist's call (媒体来电) about one of the stories, with the
        template's tasks."""
        a1, k = ANALYSTS[0], "media"
        o = pick(self.origins, ("卫健局", "教育局"))
        dept, handler, _ = self.route(k, o, "卫健局")
        question = f"网传“{_short(o.title)}”是否属实？有关部门如何处置？"
        plan.chain(45, [
            (0, self.start(k, a1, None, origin="onsite", template="媒体来电",
                           title=f"记者来电：{_short(o.title, 40)}", event_id=o.event_id,
                           post_id=o.post_id, origin_detail={
                               "caller": "李记者", "outlet": "某都市报", "question": question})),
            *self.to_verifying(k, a1, dept, handler),
            (1.5, self.finish_first_task(k, handler, "已电话核实，情况已向记者说明")),
        ])  # fmt: skip

    def assigned(self, plan: Plan) -> None:
        """已交办, after the first department sent it back."""
        a1, k = ANALYSTS[0], "assigned"
        o = pick(self.origins, ("卫健局", "教育局", "市场监管局", "县委宣传部"))
        dept, _handler, _ = self.route(k, o, "县委宣传部")
        wrong = "城管局" if dept != "城管局" else "教育局"
        wrong_handler = self.office.in_department(wrong, "handler")
        assert wrong_handler is not None
        plan.chain(30, [
            (0, self.start(k, a1, o)),
            (1.0, self.act(k, a1, "assess", level="一般", handling=f"交{wrong}核实")),
            (1.5, self.act(k, CHIEF, "approve_handling")),
            (0.5, self.act(k, a1, "assign", department=wrong)),
            (3.0, self.act(k, wrong_handler.username, "reject_assignment",
                           reason=f"不属本单位职责，建议交{dept}办理")),
            (1.0, self.act(k, a1, "assign", department=dept)),
        ])  # fmt: skip

    def dismissed(self, plan: Plan) -> None:
        """已办结 without handling: an old rumour already cleared up."""
        a1, k = ANALYSTS[0], "dismissed"
        o = pick(self.origins)
        plan.chain(12, [
            (0, self.start(k, a1, o)),
            (1.0, self.act(k, a1, "assess", level="一般",
                           handling="系多年前旧闻翻炒，已有权威辟谣，建议不予处置，持续关注")),
            (2.0, self.act(k, CHIEF, "dismiss", reason="已有权威部门辟谣，本地无关联，不予处置")),
        ])  # fmt: skip

    def approved(self, plan: Plan) -> None:
        """已批准处置"""
        a1, k = ANALYSTS[0], "approved"
        o = pick(self.origins)
        plan.chain(55, [
            (0, self.start(k, a1, o)),
            (1.0, self.act(k, a1, "assess", level="一般", handling="交属地核实")),
            (2.0, self.act(k, CHIEF, "approve_handling")),
        ])  # fmt: skip

    def assessed(self, plan: Plan) -> None:
        """已研判, after the director returned the first assessment."""
        a2, k = ANALYSTS[1], "assessed"
        o = pick(self.origins)
        plan.chain(50, [
            (0, self.start(k, a2, o)),
            (0.5, self.act(k, a2, "assess", level="重大", handling="全网监测，准备通稿")),
            (2.0, self.act(k, CHIEF, "return_assessment",
                           reason="等级偏高：系旧闻翻炒，传播面有限，请复核后重新研判")),
            (1.0, self.act(k, a2, "assess", level="一般",
                           handling="持续监测，必要时由宣传部发布澄清说明")),
        ])  # fmt: skip

    def fresh(self, plan: Plan) -> None:
        """新建: an alert just turned into a case, and a liaison's report of a post."""
        o = pick(self.origins)
        plan.chain(68, [(0, self.start("new", ANALYSTS[0], o))])
        o = pick(self.origins, plain=True)
        plan.chain(70, [(0, self.start("new_liaison", "zhengxiao", None, post_id=o.post_id,
                                       origin="liaison",
                                       origin_detail={"liaison": "城关镇网格员郑晓"}))])  # fmt: skip

    def draft_board(self, key: str, who: str) -> Work:
        from tingfeng.cases.replies import draft_reply

        def work(conn: Connection, at: datetime) -> None:
            self.replies[key] = draft_reply(
                conn, self.p(who), self.ids[key],
                "王女士您好：您反映的幸福小区垃圾清运问题已由县城管局环卫所办理。环卫所已于当日"
                "安排车辆清运，并将该点位纳入每日清运范围。感谢您的监督！",
                stage="result", now=at,
            )  # fmt: skip

        return work


def _asking_post(conn: Connection, case: Any) -> int:
    """A post in the case's story that a point-to-point reply answers (the case's own post when
    no one else said anything)."""
    candidates = select(Post.id).where(Post.id != case.post_id, Post.text_clean != EMPTY_REPOST)
    if case.event_id is not None:
        in_event = select(EventPost.post_id).where(EventPost.event_id == case.event_id)
        found = conn.execute(candidates.where(Post.id.in_(in_event)).order_by(Post.id)).scalar()
        if found:
            return int(found)
    found = conn.execute(
        candidates.where(Post.reposts_of_id == case.post_id).order_by(Post.id)
    ).scalar()
    return int(found or case.post_id)


def seed_cases(conn: Connection, settings: Settings, office: Office, origin: datetime) -> Cases:
    from tingfeng.cases import board

    def board_message(c: Connection, at: datetime) -> int:
        mid, _token = board.submit_message(
            c, kind="complaint", title="幸福小区垃圾多日无人清运",
            body="城关镇幸福小区3号楼旁的垃圾点已经三天没有清运，天气热气味很大，希望尽快处理。",
            name="王女士", now=at,
        )  # fmt: skip
        return mid

    cases = Cases(settings, office, find_origins(conn, office))
    plan = Plan(origin)
    cases.plan(plan, board_message)
    plan.play(conn)
    return cases


# --- evidence ----------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    pages: ClassVar[dict[str, bytes]] = {}

    def do_GET(self) -> None:
        body = self.pages.get(self.path.split("?")[0])
        self.send_response(200 if body is not None else 404)
        body = body if body is not None else b"not found"
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def serve_pages(pages: dict[str, bytes]) -> Iterator[str]:
    """A throwaway HTTP server on 127.0.0.1 (a free port) serving `pages`; yields its base URL."""
    handler = type("Pages", (_Handler,), {"pages": pages})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="demo-pages", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def page_html(title: str, meta: str, text: str) -> bytes:
    """A plain page showing one post (everything escaped: the texts are collected ones)."""
    paragraphs = "".join(f"<p>{html.escape(line)}</p>" for line in text.splitlines() if line)
    return (
        "<!doctype html><html lang='zh-CN'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>"
        "body{font-family:sans-serif;max-width:720px;margin:2em auto;line-height:1.7}"
        ".meta{color:#666}.note{background:#fff7e0;border:1px solid #eed8a0;padding:.5em}"
        "</style></head><body>"
        "<p class='note'>演示页面：CED 数据集中的微博原文已无法在线访问，此页由 tingfeng demo "
        "seed 在本机临时重现，用于演示取证。</p>"
        f"<h1>{html.escape(title)}</h1><p class='meta'>{html.escape(meta)}</p>{paragraphs}"
        "</body></html>"
    ).encode()


@dataclass
class Key:
    """A page to capture as evidence for a case."""

    path: str
    case_id: int
    category: str
    title: str
    meta: str
    text: str
    post_id: int | None
    published_at: datetime | None
    discovered_at: datetime | None
    reported_at: datetime
    handling_result: str


def _post_key(conn: Connection, case: Any, post_id: int, category: str, tz: str) -> Key:
    p = conn.execute(select(Post.__table__).where(Post.id == post_id)).one()
    when = (
        p.published_at.astimezone(ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M") if p.published_at else ""
    )
    counts = f"转发 {p.reposts or 0} · 评论 {p.comments or 0}" if p.kind == "post" else "转发"
    title = _short(p.text_clean, 30) or "微博"
    return Key(
        f"/weibo/{p.external_id or p.id}", case.id, category, title,
        f"新浪微博 · {when} · {counts}", p.text_clean, p.id, p.published_at, p.fetched_at,
        case.created_at, case.result or "",
    )  # fmt: skip


def story_posts(conn: Connection, post_id: int) -> tuple[int, int | None]:
    """The story's first post (the one reposted) and a repost of it with words of its own."""
    root, parent = (
        post_id,
        conn.execute(select(Post.reposts_of_id).where(Post.id == post_id)).scalar(),
    )
    for _ in range(20):  # repost chains in CED are short; a cycle must not hang the seed
        if parent is None:
            break
        root = parent
        parent = conn.execute(select(Post.reposts_of_id).where(Post.id == root)).scalar()
    worded = select(Post.id).where(Post.text_clean != EMPTY_REPOST, Post.id != root)
    if post_id != root and conn.execute(worded.where(Post.id == post_id)).first():
        return root, post_id
    # The wordiest of the first reposts: "[吐]" is a repost too, but shows little.
    first = worded.where(Post.reposts_of_id == root).order_by(Post.id).limit(50).subquery()
    repost = conn.execute(
        select(first.c.id)
        .join(Post, Post.id == first.c.id)
        .order_by(func.length(Post.text_clean).desc(), Post.id)
    ).scalar()
    return root, int(repost) if repost else None


def evidence_keys(conn: Connection, cases: Cases, tz: str) -> list[Key]:
    """The key pages: the first post and the office's published reply of the 督办件, the first
    post and a repost of the archived case."""
    from tingfeng.cases.service import get_case

    keys: list[Key] = []
    following = get_case(conn, cases.ids["following"])
    if following.post_id:
        root, _repost = story_posts(conn, following.post_id)
        keys.append(_post_key(conn, following, root, "post", tz))
    reply = conn.execute(select(Reply.__table__).where(Reply.id == cases.replies["facts"])).one()
    if reply.published_text:
        statement = Key(
            f"/reply/{reply.id}", following.id, "reply", f"{reply.account}：情况通报",
            f"{reply.platform} · {reply.account}", reply.published_text, None,
            reply.published_at, reply.published_at, following.created_at, "",
        )  # fmt: skip
        keys.append(statement)
    archived = get_case(conn, cases.ids["archived"])
    if archived.post_id:
        root, repost = story_posts(conn, archived.post_id)
        keys.append(_post_key(conn, archived, root, "post", tz))
        if repost is not None:
            keys.append(_post_key(conn, archived, repost, "repost", tz))
    return keys


def seed_evidence(engine: Engine, settings: Settings, cases: Cases) -> dict[str, Any]:
    """Capture each key page (WARC + screenshot) from a local server, as the analyst."""
    from tingfeng.cases.evidence import CaptureFailed, capture_evidence

    loopback = settings.model_copy(update={"fetch_allowed_networks": ["127.0.0.1/32"]})
    with engine.connect() as conn:
        keys = evidence_keys(conn, cases, settings.default_timezone)
    pages = {k.path: page_html(k.title, k.meta, k.text) for k in keys}
    captured, failed, notes = 0, 0, []
    analyst = cases.p(ANALYSTS[0])
    with serve_pages(pages) as base:
        for k in keys:
            try:
                capture_evidence(
                    engine, loopback, base + k.path, case_id=k.case_id, post_id=k.post_id,
                    category=k.category, title=k.title, published_at=k.published_at,
                    discovered_at=k.discovered_at, reported_at=k.reported_at,
                    handling_result=k.handling_result, actor=analyst,
                )  # fmt: skip
                captured += 1
            except CaptureFailed as exc:
                failed += 1
                notes.append(f"capture of {k.path} failed: {exc}")
    with engine.connect() as conn:
        errors = conn.execute(
            select(Evidence.error).where(Evidence.status == "captured", Evidence.png_path.is_(None))
        ).scalars()
        notes.extend(f"no screenshot (the WARC is kept): {e}" for e in errors)
    return {"captured": captured, "failed": failed, "notes": notes}


# --- the whole seed ----------------------------------------------------------------------------


def seed_demo(
    settings: Settings,
    engine: Engine,
    *,
    ced_path: Path,
    posts: int = 3000,
    evidence: bool = True,
    progress: Callable[[str], None] | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Fill a fresh database; returns the summary (see `summary`). SeedRefused when it is not
    fresh (nothing changed), SeedFailed naming the parts done when a part fails."""
    say = progress or (lambda _line: None)
    now = (now or datetime.now(UTC)).replace(second=0, microsecond=0)
    origin = now - HISTORY
    collected = origin - timedelta(hours=1)
    with engine.connect() as conn:
        check_fresh(conn)
    done: list[str] = []
    notes: list[str] = []

    def part(name: str, work: Callable[[], Any]) -> Any:
        try:
            result = work()
        except Exception as exc:
            detail = str(exc) or type(exc).__name__
            finished = "; ".join(done) if done else "nothing"
            raise SeedFailed(
                f"the {name} part failed ({type(exc).__name__}: {detail}). Done before it: "
                f"{finished}. Start again on a fresh database.",
                list(done),
            ) from exc
        done.append(name)
        return result

    def office_part() -> Office:
        with write_transaction(engine) as conn:
            return seed_office(conn, settings, now)

    office = part("office", office_part)
    say(f"office: {len(DEPARTMENTS)} departments, {len(PEOPLE)} users (password {PASSWORD})")
    part("alerting", lambda: seed_alerting(engine, office, collected))
    say("topics, alert rules and escalation policies added")
    say(f"ingesting up to {posts} CED posts from {ced_path} …")
    ingested = part("posts", lambda: seed_posts(engine, settings, ced_path, posts, collected))
    say(f"posts: {ingested['stored']} stored")

    def cases_part() -> Cases:
        with write_transaction(engine) as conn:
            return seed_cases(conn, settings, office, origin)

    cases = part("cases", cases_part)
    say(f"cases: {len(cases.ids)} opened and worked on")
    if evidence:
        say("capturing evidence pages (WARC + screenshot) …")
        got = part("evidence", lambda: seed_evidence(engine, settings, cases))
        notes.extend(got["notes"])
    with engine.connect() as conn:
        return summary(conn, settings, done, notes, ingested)


def summary(
    conn: Connection,
    settings: Settings,
    done: list[str],
    notes: list[str],
    ingested: dict[str, int],
) -> dict[str, Any]:
    from tingfeng.cases.states import STATES
    from tingfeng.db.models import Topic

    def count(column: Any, *where: Any) -> int:
        return int(conn.execute(select(func.count(column)).where(*where)).scalar() or 0)

    by_state = dict(
        conn.execute(select(Case.state, func.count(Case.id)).group_by(Case.state)).all()
    )
    departments = dict(conn.execute(select(Department.id, Department.name)).all())
    users = [
        {"username": u.username, "name": u.display_name, "role": u.role,
         "department": departments.get(u.department_id)}
        for u in conn.execute(select(User.__table__).order_by(User.id)).all()
    ]  # fmt: skip
    return {
        "parts": done,
        "password": PASSWORD,
        "departments": len(departments),
        "users": users,
        "roles": sorted({u["role"] for u in users}, key=list(ROLES).index),
        "routing_rules": count(RoutingRule.id),
        "case_templates": count(CaseTemplate.id),
        "topics": count(Topic.id),
        "alert_rules": count(AlertRule.id),
        "posts": count(Post.id),
        "posts_ingested": ingested,
        "events": count(Event.id),
        "alerts": count(Alert.id),
        "cases": sum(by_state.values()),
        "cases_by_state": {s: int(by_state.get(s, 0)) for s in STATES},
        "replies": count(Reply.id),
        "replies_published": count(Reply.id, Reply.state == "published"),
        "board_messages": count(BoardMessage.id),
        "board_answered": count(BoardMessage.id, BoardMessage.status == "answered"),
        "evidence": count(Evidence.id),
        "evidence_screenshots": count(Evidence.id, Evidence.png_path.is_not(None)),
        "notes": notes,
    }


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The summary for a person."""
    from rich.cells import cell_len

    from tingfeng.cases.states import STATES

    states = "、".join(f"{STATES[s]} {n}" for s, n in report["cases_by_state"].items())
    lines = [
        f"演示数据已生成 (parts: {', '.join(report['parts'])})",
        f"  departments:  {report['departments']}",
        f"  users:        {len(report['users'])} ({', '.join(report['roles'])})",
        f"  topics:       {report['topics']}, alert rules: {report['alert_rules']}, "
        f"routing rules: {report['routing_rules']}, case templates: {report['case_templates']}",
        f"  posts:        {report['posts']} real Weibo posts from CED (2012–2016; each story with "
        f"up to {REPOSTS_PER_STORY} of its reposts)",
        f"  events:       {report['events']}, alerts: {report['alerts']}",
        f"  cases:        {report['cases']} ({states})",
        f"  replies:      {report['replies']} ({report['replies_published']} published)",
        f"  board:        {report['board_messages']} message(s), "
        f"{report['board_answered']} answered",
        f"  evidence:     {report['evidence']} ({report['evidence_screenshots']} with screenshot)",
        "",
        f"Sign in with any of these users; the password of all of them is {report['password']!r}"
        " (for this demo only: never use it on a real installation).",
    ]
    for u in report["users"]:
        department = u["department"] or ""
        pad = " " * max(0, 12 - cell_len(department))
        lines.append(f"  {u['username']:<12} {u['role']:<9} {department}{pad} {u['name']}")
    lines.append(
        "The posts are from 2012–2016 (the CED data set); the cases' history was played over the "
        "last three days, so some deadlines are already overdue, as in a real office."
    )
    lines.extend(f"note: {n}" for n in report["notes"])
    return lines
