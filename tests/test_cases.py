"""Cases: the whole lifecycle per role, forbidden transitions, the permission matrix, deadlines
across Spring Festival, staged replies with multi-level approval, overdue escalation, relapse,
the ledger, and the audit chain with tampering detected."""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, text, update

from tingfeng import audit
from tingfeng.alerts import clock
from tingfeng.alerts.engine import AlertContext
from tingfeng.alerts.escalation import set_policy
from tingfeng.cases import replies
from tingfeng.cases.detail import case_detail
from tingfeng.cases.permissions import PermissionDenied
from tingfeng.cases.routing import add_rule
from tingfeng.cases.service import CaseError, act, get_case, open_case
from tingfeng.cases.states import ACTIONS, STATES, TransitionError
from tingfeng.cases.templates import add_template
from tingfeng.db.engine import make_engine, write_transaction
from tingfeng.db.migrate import upgrade
from tingfeng.db.models import (
    Alert,
    AuditEntry,
    CaseDeadline,
    Delivery,
    Event,
    EventPost,
    Post,
    PostLabel,
    PostReading,
    Source,
)
from tingfeng.office.people import Person, add_department, add_user
from tingfeng.settings import Settings

SH = ZoneInfo("Asia/Shanghai")


def at(text_: str) -> datetime:
    return datetime.fromisoformat(text_).replace(tzinfo=SH).astimezone(UTC)


@dataclass
class Office:
    engine: Any
    settings: Settings
    people: dict[str, Person]

    def __getattr__(self, name: str) -> Person:
        people = self.__dict__.get("people", {})
        if name in people:
            return people[name]
        raise AttributeError(name)


def _office(url: str, tmp_path: Any) -> Office:
    settings = Settings(database_url=url, data_dir=tmp_path / "var")
    engine = make_engine(url)
    upgrade(engine)
    with write_transaction(engine) as conn:
        add_department(conn, "县委网信办")
        add_department(conn, "城管局", "县委网信办")
        add_department(conn, "环卫所", "城管局")
        add_department(conn, "卫健局", "县委网信办")
        spec = {
            "admin": ("admin", None),
            "ana": ("analyst", None),
            "chief": ("approver", "县委网信办"),
            "cg_boss": ("approver", "城管局"),
            "cg": ("handler", "城管局"),
            "hw": ("handler", "环卫所"),
            "wj": ("handler", "卫健局"),
            "wj_boss": ("approver", "卫健局"),
            "look": ("viewer", None),
            "lia": ("liaison", None),
        }
        people = {
            name: add_user(conn, name, name, role=role, department=dept)
            for name, (role, dept) in spec.items()
        }
        add_rule(conn, "城管事项", "城管局", {"keywords": ["垃圾", "占道"]})
        add_rule(conn, "卫健事项", "卫健局", {"keywords": ["医院"]})
    return Office(engine, settings, people)


@pytest.fixture
def office(settings: Settings, tmp_path) -> Any:  # type: ignore[no-untyped-def]
    o = _office(settings.database_url, tmp_path)
    yield o
    o.engine.dispose()


def _open(o: Office, who: str = "ana", **kw: Any) -> int:
    kw.setdefault("title", "某小区垃圾无人清运，居民投诉")
    kw.setdefault("level", "较大")
    with write_transaction(o.engine) as conn:
        return open_case(conn, o.people[who], o.settings, **kw)


def _act(o: Office, who: str, case_id: int, action: str, **kw: Any) -> Any:
    with write_transaction(o.engine) as conn:
        return act(conn, o.people[who], o.settings, case_id, action, **kw)


def _to_verifying(o: Office, case_id: int) -> None:
    _act(o, "ana", case_id, "assess", handling="交城管局核实")
    _act(o, "chief", case_id, "approve_handling")
    _act(o, "ana", case_id, "assign")
    _act(o, "cg", case_id, "accept")


# --- the whole lifecycle -------------------------------------------------------------------------


def test_the_whole_lifecycle_each_role_doing_its_part(db_url, tmp_path) -> None:  # type: ignore[no-untyped-def]
    o = _office(db_url, tmp_path)
    cid = _open(o, "lia", origin="liaison", origin_detail={"liaison": "城东社区网格员"})
    with o.engine.connect() as conn:
        case = get_case(conn, cid)
    assert case.number.endswith("-0001") and case.state == "new"
    # Routing suggests the department in charge from the words of the matter.
    assert case.suggested_department_id == find_user_dept(o, "cg")
    assert case.routing["suggestions"][0]["reasons"] == ["关键词 垃圾"]

    _act(o, "ana", cid, "assess", level="重大", handling="交城管局核实并公开回应")
    _act(o, "chief", cid, "return_assessment", reason="等级偏高，请复核")
    _act(o, "ana", cid, "assess", level="较大", handling="交城管局核实并公开回应")
    _act(o, "chief", cid, "approve_handling")
    _act(o, "ana", cid, "assign")  # the suggestion confirmed
    # The health bureau is not responsible: a handler there cannot even act on it…
    with pytest.raises(PermissionDenied):
        _act(o, "wj", cid, "reject_assignment", reason="不归我们")
    # …the city management bureau rejects it with a reason, the analyst overrides the routing.
    _act(o, "cg", cid, "reject_assignment", reason="属环卫所职责")
    _act(o, "ana", cid, "assign", department="环卫所")
    _act(o, "hw", cid, "accept")
    with write_transaction(o.engine) as conn:
        rid = replies.draft_reply(conn, o.hw, cid, "经核实，垃圾已于当日清运。")
        replies.submit_reply(conn, o.hw, o.settings, rid)
    with write_transaction(o.engine) as conn:
        replies.return_reply(conn, o.cg_boss, o.settings, rid, "请写明清运时间")
    with write_transaction(o.engine) as conn:
        assert replies.revise_reply(conn, o.hw, rid, "经核实，垃圾已于11月20日17时清运完毕。") == 2
        replies.submit_reply(conn, o.hw, o.settings, rid)
        assert replies.approve_reply(conn, o.cg_boss, o.settings, rid) is True
    with write_transaction(o.engine) as conn:
        replies.publish_reply(conn, o.hw, o.settings, rid, platform="微博",
                              account="@某县环卫所", url="https://weibo.com/123/abc")  # fmt: skip
    _act(o, "hw", cid, "follow_up")
    _act(o, "ana", cid, "close", result="已清运，建立日清制度")
    _act(o, "chief", cid, "archive")

    with o.engine.connect() as conn:
        d = case_detail(conn, o.chief, cid)
        assert d["state"] == "archived" and d["department"] == "环卫所"
        assert [h["action"] for h in d["history"]] == [
            "open", "assess", "return_assessment", "assess", "approve_handling", "assign",
            "reject_assignment", "assign", "accept", "submit_reply", "return_reply",
            "submit_reply", "approve_reply", "publish", "follow_up", "close", "archive",
        ]  # fmt: skip
        returned = next(h for h in d["history"] if h["action"] == "reject_assignment")
        assert returned["reason"] == "属环卫所职责" and returned["by"] == "cg"
        reply = d["replies"][0]
        assert reply["published_text"] == "经核实，垃圾已于11月20日17时清运完毕。"
        assert [v["version"] for v in reply["versions"]] == [1, 2]
        assert [x["decision"] for x in reply["decisions"]] == ["returned", "approved"]
        steps = {x["step"]: x["status"] for x in d["deadlines"]}
        assert steps["acknowledge"] == steps["report"] == steps["reply"] == "met"
        assert steps["close"] == "met"
        # Every action is in the audit log, and the chain holds.
        assert audit.verify(conn).ok
        actions = [e["action"] for e in audit.entries(conn, subject=f"case:{cid}", limit=100)]
        assert "case.reject_assignment" in actions and "case.archive" in actions
    o.engine.dispose()


def find_user_dept(o: Office, name: str) -> int | None:
    return o.people[name].department_id


# --- forbidden transitions -----------------------------------------------------------------------


def test_every_action_from_a_state_it_does_not_leave_is_rejected(office) -> None:  # type: ignore[no-untyped-def]
    """Walk a case through every state; at each, every action not allowed from it is refused
    (even for a role that may take it elsewhere) and the case does not move."""
    o = office
    cid = _open(o)
    path = [
        ("ana", "assess", {"handling": "核实"}),
        ("chief", "approve_handling", {}),
        ("ana", "assign", {}),
        ("cg", "accept", {}),
    ]
    seen_states = []

    def refuse_all_others(state: str) -> None:
        seen_states.append(state)
        for name, a in ACTIONS.items():
            if state in a.sources:
                continue
            role = sorted(a.roles)[0]
            actor = next(p for p in o.people.values() if p.role == role)
            with pytest.raises(TransitionError), write_transaction(o.engine) as conn:
                act(conn, actor, o.settings, cid, name, reason="x", handling="x", result="x")
            with o.engine.connect() as conn:
                assert get_case(conn, cid).state == state

    refuse_all_others("new")
    for who, name, kw in path:
        _act(o, who, cid, name, **kw)
        refuse_all_others(_state(o, cid))
    with write_transaction(o.engine) as conn:
        rid = replies.draft_reply(conn, o.cg, cid, "回复")
        replies.submit_reply(conn, o.cg, o.settings, rid)
    refuse_all_others("drafted")
    with write_transaction(o.engine) as conn:
        replies.approve_reply(conn, o.cg_boss, o.settings, rid)
    refuse_all_others("reply_approved")
    with write_transaction(o.engine) as conn:
        replies.publish_reply(conn, o.cg, o.settings, rid, platform="微博", account="@城管")
    refuse_all_others("published")
    _act(o, "cg", cid, "follow_up")
    refuse_all_others("following")
    _act(o, "ana", cid, "close", result="已办结")
    refuse_all_others("closed")
    _act(o, "ana", cid, "archive")
    refuse_all_others("archived")
    assert set(seen_states) == set(STATES)


def test_reasons_are_required_where_a_case_goes_back(office) -> None:  # type: ignore[no-untyped-def]
    o = office
    cid = _open(o)
    with pytest.raises(CaseError, match="proposes the handling"):
        _act(o, "ana", cid, "assess")
    _act(o, "ana", cid, "assess", handling="核实")
    for who, action in (("chief", "return_assessment"), ("chief", "dismiss")):
        with pytest.raises(CaseError, match="needs a reason"):
            _act(o, who, cid, action)
        assert _state(o, cid) == "assessed"
    _act(o, "chief", cid, "approve_handling")
    _act(o, "ana", cid, "assign")
    with pytest.raises(CaseError, match="needs a reason"):
        _act(o, "cg", cid, "reject_assignment", reason="   ")
    assert _state(o, cid) == "assigned"


def _state(o: Office, cid: int) -> str:
    with o.engine.connect() as conn:
        return str(get_case(conn, cid).state)


# --- the permission matrix -----------------------------------------------------------------------

# (action, actor) -> allowed, on a case assigned to 城管局 (under 县委网信办; 环卫所 is under it).
MATRIX_ASSIGNED = {
    ("accept", "cg"): True,  # the department's handler
    ("accept", "hw"): False,  # a unit under that department works on its own cases only
    ("accept", "wj"): False,  # another department's handler
    ("accept", "cg_boss"): False,  # approvers do not accept work
    ("accept", "ana"): False,
    ("accept", "admin"): False,
    ("accept", "look"): False,
    ("accept", "lia"): False,
    ("reject_assignment", "cg"): True,
    ("reject_assignment", "cg_boss"): True,  # the department's approver
    ("reject_assignment", "chief"): True,  # the approver above it
    ("reject_assignment", "wj_boss"): False,  # another department's approver
    ("reject_assignment", "ana"): False,
    ("reject_assignment", "look"): False,
}


@pytest.mark.parametrize(("action", "who"), sorted(MATRIX_ASSIGNED))
def test_permission_matrix_on_an_assigned_case(office, action: str, who: str) -> None:  # type: ignore[no-untyped-def]
    o = office
    cid = _open(o)
    _act(o, "ana", cid, "assess", handling="核实")
    _act(o, "chief", cid, "approve_handling")
    _act(o, "ana", cid, "assign")
    allowed = MATRIX_ASSIGNED[(action, who)]
    if allowed:
        _act(o, who, cid, action, reason="不属本单位")
        assert _state(o, cid) != "assigned"
    else:
        with pytest.raises(TransitionError):
            _act(o, who, cid, action, reason="不属本单位")
        assert _state(o, cid) == "assigned"


def test_cases_opened_at_once_on_postgresql_take_consecutive_numbers(
    fresh_postgres_db: str, tmp_path: Any
) -> None:
    """Two processes opening a case at the same instant: the second waits for the first's
    number instead of taking it too and failing on the unique constraint."""
    o = _office(fresh_postgres_db, tmp_path)
    other_engine = make_engine(fresh_postgres_db)
    got: dict[str, Any] = {}

    def open_in_other_process() -> None:
        try:
            with write_transaction(other_engine) as conn:
                got["id"] = open_case(conn, o.ana, o.settings, title="第二件", level="一般")
        except Exception as exc:  # reported by the assertion below
            got["error"] = exc

    try:
        with write_transaction(o.engine) as conn:
            first = open_case(conn, o.ana, o.settings, title="第一件", level="一般")
            other = threading.Thread(target=open_in_other_process)
            other.start()
            other.join(1.0)
            assert other.is_alive(), "the second opening did not wait for the first"
        other.join(30)
        assert "error" not in got, got.get("error")
        with o.engine.connect() as conn:
            numbers = [get_case(conn, first).number, get_case(conn, got["id"]).number]
        year = datetime.now(SH).year
        assert numbers == [f"{year}-0001", f"{year}-0002"]
    finally:
        other_engine.dispose()
        o.engine.dispose()


def test_who_sees_which_cases(office) -> None:  # type: ignore[no-untyped-def]
    from tingfeng.cases.detail import list_cases

    o = office
    cg_case = _open(o)  # routed to 城管局 once assigned
    _act(o, "ana", cg_case, "assess", handling="核实")
    _act(o, "chief", cg_case, "approve_handling")
    _act(o, "ana", cg_case, "assign")
    wj_case = _open(o, title="县医院门诊楼漏雨")
    _act(o, "ana", wj_case, "assess", handling="核实")
    _act(o, "chief", wj_case, "approve_handling")
    _act(o, "ana", wj_case, "assign")
    lead = _open(o, "lia", title="联络员报送：某路段占道经营", origin="liaison")
    with o.engine.connect() as conn:

        def seen(who: str) -> set[int]:
            return {c["id"] for c in list_cases(conn, o.people[who])}

        everything = {cg_case, wj_case, lead}
        assert seen("ana") == seen("look") == seen("admin") == everything
        assert seen("chief") == everything  # the top approver also sees unassigned cases
        assert seen("cg") == seen("cg_boss") == {cg_case}
        assert seen("hw") == set()  # 环卫所 is under 城管局, not the other way round
        assert seen("wj") == seen("wj_boss") == {wj_case}
        assert seen("lia") == {lead}
        with pytest.raises(PermissionDenied):
            case_detail(conn, o.wj, cg_case)
        # The page offers each person only what they may do.
        names = [a["name"] for a in case_detail(conn, o.cg, cg_case)["actions"]]
        assert names == ["reject_assignment", "accept"]
    with pytest.raises(PermissionDenied), write_transaction(o.engine) as conn:
        open_case(conn, o.look, o.settings, title="只读用户不能登记")


def test_admin_cannot_approve_and_the_same_approver_cannot_approve_twice(office) -> None:  # type: ignore[no-untyped-def]
    o = office
    with write_transaction(o.engine) as conn:
        add_template(conn, "重大舆情", approval_levels=2)
    cid = _open(o, template="重大舆情")
    _act(o, "ana", cid, "assess", handling="核实")
    with pytest.raises(TransitionError, match="admin role may not"):
        _act(o, "admin", cid, "approve_handling")
    _act(o, "chief", cid, "approve_handling")
    _act(o, "ana", cid, "assign")
    _act(o, "cg", cid, "accept")
    with write_transaction(o.engine) as conn:
        rid = replies.draft_reply(conn, o.cg, cid, "情况通报")
        replies.submit_reply(conn, o.cg, o.settings, rid)
    with write_transaction(o.engine) as conn:
        assert replies.approve_reply(conn, o.cg_boss, o.settings, rid) is False
    assert _state(o, cid) == "drafted"  # one level of two
    with (
        pytest.raises(PermissionDenied, match="already approved"),
        write_transaction(o.engine) as conn,
    ):
        replies.approve_reply(conn, o.cg_boss, o.settings, rid)
    with write_transaction(o.engine) as conn:
        assert replies.approve_reply(conn, o.chief, o.settings, rid) is True
    assert _state(o, cid) == "reply_approved"
    with (
        pytest.raises(CaseError, match="differs from the approved"),
        write_transaction(o.engine) as conn,
    ):
        replies.publish_reply(conn, o.cg, o.settings, rid, platform="微博", account="@城管",
                              text="情况通报（改）")  # fmt: skip


# --- origins, staged replies, board ------------------------------------------------------------


def test_origins_record_what_the_practice_asks(office) -> None:  # type: ignore[no-untyped-def]
    o = office
    with pytest.raises(CaseError) as err:
        _open(o, origin="assigned", origin_detail={})
    assert "office" in str(err.value) and "instructions" in str(err.value)
    cid = _open(o, origin="assigned", title="市网信办督办：某小区垃圾问题",
                origin_detail={"office": "市委网信办", "instructions": "请于两日内核实回复",
                               "deadline": "2026-11-25 18:00"})  # fmt: skip
    call = _open(o, origin="onsite", title="记者来电询问医院漏雨",
                 origin_detail={"caller": "李记者", "outlet": "某都市报", "question": "是否有患者受伤"})  # fmt: skip
    with o.engine.connect() as conn:
        d = case_detail(conn, None, cid)
        assert d["origin_detail"]["office"] == "市委网信办"
        superior = next(x for x in d["deadlines"] if x["step"] == "superior")
        assert superior["due_at"] == at("2026-11-25T18:00").isoformat()
        assert case_detail(conn, None, call)["origin_detail"]["outlet"] == "某都市报"
        assert case_detail(conn, None, call)["suggested_department"] == "卫健局"


def test_staged_replies_while_following_and_the_board_answer(office) -> None:  # type: ignore[no-untyped-def]
    from tingfeng.cases import board

    o = office
    with write_transaction(o.engine) as conn:
        mid, token = board.submit_message(
            conn, kind="complaint", title="小区垃圾三天没人收", body="我们小区的垃圾已经三天没有清运了。",
            now=datetime.now(UTC),
        )  # fmt: skip
    cid = _open(o, origin="board", board_message_id=mid, title="留言：小区垃圾三天没人收")
    with o.engine.connect() as conn:
        assert board.find_by_token(conn, token)["status"] == "accepted"
    _to_verifying(o, cid)
    for stage, words in (
        ("facts", "已派员核实"),
        ("progress", "已清运大部分"),
        ("result", "已全部清运"),
    ):
        with write_transaction(o.engine) as conn:
            rid = replies.draft_reply(conn, o.cg, cid, words, stage=stage)
            replies.submit_reply(conn, o.cg, o.settings, rid)
            replies.approve_reply(conn, o.cg_boss, o.settings, rid)
            replies.publish_reply(
                conn, o.cg, o.settings, rid, platform="政府网站", account="县城管局"
            )
        assert _state(o, cid) == "published"
        _act(o, "cg", cid, "follow_up")
    with o.engine.connect() as conn:
        d = case_detail(conn, None, cid)
        assert [r["stage"] for r in d["replies"]] == ["facts", "progress", "result"]
        assert all(r["state"] == "published" for r in d["replies"])
        # The board shows the approved reply under the message (the latest one).
        followed = board.find_by_token(conn, token)
        assert followed["status"] == "answered" and followed["answer"] == "已全部清运"


# --- deadlines ---------------------------------------------------------------------------------


def test_case_deadlines_follow_the_working_day_calendar_across_spring_festival(office) -> None:  # type: ignore[no-untyped-def]
    o = office
    # Friday 13 February 2026, 16:00: the Spring Festival holiday runs 15–23 February; Saturday
    # 14 February is an adjusted working day.
    cid = _open(o, level="一般", now=at("2026-02-13T16:00"))
    crit = _open(o, level="特大", title="特大", now=at("2026-02-13T16:00"))
    with o.engine.connect() as conn:
        due = {d["step"]: d["due_at"] for d in case_detail(conn, None, cid)["deadlines"]}
        assert due["acknowledge"] == at("2026-02-14T16:00").isoformat()  # 1 working day: 调休
        assert due["report"] == at("2026-02-24T16:00").isoformat()  # 2: over the holiday
        due_crit = {d["step"]: d["due_at"] for d in case_detail(conn, None, crit)["deadlines"]}
        # 特大: acknowledge within 1 hour, report within 2 hours, holiday or not.
        assert due_crit["acknowledge"] == at("2026-02-13T17:00").isoformat()
        assert due_crit["report"] == at("2026-02-13T18:00").isoformat()


def test_reminder_then_overdue_alert_escalates_and_is_kept_for_statistics(office) -> None:  # type: ignore[no-untyped-def]
    o = office
    start = at("2026-11-23T09:00")
    cid = _open(o, level="特大", now=start)
    with write_transaction(o.engine) as conn:
        set_policy(
            conn,
            "critical",
            [{"after_minutes": 10, "recipients": {"roles": ["approver"]}}],
            now=start,
        )
    ctx = AlertContext(o.settings)
    clock.tick(o.engine, ctx, start + timedelta(minutes=5))  # 55 minutes before: no reminder yet
    with o.engine.connect() as conn:
        assert conn.execute(select(Alert.id).where(Alert.kind == "case")).all() == []
    r = clock.tick(o.engine, ctx, start + timedelta(minutes=30))
    assert r.case_alerts == 1
    with o.engine.connect() as conn:
        remind = conn.execute(select(Alert.__table__).where(Alert.kind == "case")).one()
        assert "【临期】" in remind.title and "签收" in remind.title
        assert remind.next_escalation_at is None  # a reminder does not climb the chain
        # Analysts are told while no department holds the case.
        told = (
            conn.execute(select(Delivery.user_id).where(Delivery.alert_id == remind.id))
            .scalars()
            .all()
        )
        assert told == [o.ana.id]
    clock.tick(o.engine, ctx, start + timedelta(minutes=61))
    clock.tick(o.engine, ctx, start + timedelta(minutes=62))  # once, not again
    with o.engine.connect() as conn:
        overdue = conn.execute(
            select(Alert.__table__).where(Alert.kind == "case", Alert.title.like("【超期】%"))
        ).one()
        assert overdue.level == "critical" and overdue.next_escalation_at is not None
        row = conn.execute(
            select(CaseDeadline.__table__).where(
                CaseDeadline.case_id == cid, CaseDeadline.step == "acknowledge"
            )
        ).one()
        assert row.overdue_at is not None and row.status == "open"
    # Ten minutes on, nobody acknowledged: the approvers are told (the warning chain).
    clock.tick(o.engine, ctx, start + timedelta(minutes=75))
    with o.engine.connect() as conn:
        escalated = set(
            conn.execute(
                select(Delivery.user_id).where(
                    Delivery.alert_id == overdue.id, Delivery.purpose == "escalation"
                )
            ).scalars()
        )
        assert escalated == {o.chief.id, o.cg_boss.id, o.wj_boss.id}
    # Assessing late meets the step; the overdue stays on record for the statistics.
    _act(o, "ana", cid, "assess", handling="核实", now=start + timedelta(minutes=80))
    with o.engine.connect() as conn:
        d = next(x for x in case_detail(conn, None, cid)["deadlines"] if x["step"] == "acknowledge")
        assert d["status"] == "met" and d["overdue"] is True
        from tingfeng.cases.ledger import deadline_stats

        stats = {
            x["step"]: x
            for x in deadline_stats(conn, start - timedelta(days=1), start + timedelta(hours=3))
        }
        assert (stats["acknowledge"]["late"], stats["acknowledge"]["on_time"]) == (1, 0)
        assert stats["report"]["overdue"] == 1 and stats["report"]["department"] == "未交办"


# --- relapse -----------------------------------------------------------------------------------


def _event_with_posts(o: Office, times: list[tuple[datetime, str]]) -> int:
    with write_transaction(o.engine) as conn:
        sid = (
            conn.execute(select(Source.id)).scalar()
            or conn.execute(
                insert(Source).values(name="微博", kind="push", config={})
            ).inserted_primary_key[0]
        )
        eid = (
            conn.execute(select(Event.id)).scalar()
            or conn.execute(
                insert(Event).values(title="某小区垃圾问题", level="serious")
            ).inserted_primary_key[0]
        )
        n = conn.execute(select(Post.id)).all()
        for i, (when, polarity) in enumerate(times, len(n)):
            pid = conn.execute(
                insert(Post).values(
                    uid=hashlib.md5(f"p{i}".encode()).hexdigest(), source_id=sid,
                    content_hash=f"h{i}", text_clean=f"垃圾 {i}", published_at=when,
                )
            ).inserted_primary_key[0]  # fmt: skip
            conn.execute(insert(PostReading).values(post_id=pid, version="t", polarity=polarity))
            conn.execute(insert(EventPost).values(post_id=pid, event_id=eid))
            conn.execute(insert(PostLabel).values(kind="region", value="330109", post_id=pid))
    return int(eid)


def test_relapse_reopens_a_closed_case_with_an_alert(office) -> None:  # type: ignore[no-untyped-def]
    o = office
    closed_at = at("2026-11-20T10:00")
    eid = _event_with_posts(o, [(closed_at - timedelta(hours=h), "negative") for h in range(1, 6)])
    cid = _open(o, event_id=eid, now=closed_at - timedelta(days=2))
    _to_verifying(o, cid)
    with write_transaction(o.engine) as conn:
        rid = replies.draft_reply(conn, o.cg, cid, "已清运")
        replies.submit_reply(conn, o.cg, o.settings, rid)
        replies.approve_reply(conn, o.cg_boss, o.settings, rid)
        replies.publish_reply(conn, o.cg, o.settings, rid, platform="微博", account="@城管",
                              published_at=closed_at - timedelta(hours=3), now=closed_at)  # fmt: skip
    _act(o, "cg", cid, "follow_up", now=closed_at)
    _act(o, "ana", cid, "close", result="已清运", now=closed_at)
    with o.engine.connect() as conn:
        case = get_case(conn, cid)
        assert case.watch_baseline["negative_per_day"] == 5
        effect = case_detail(conn, None, cid)["replies"][0]["effect"]
        assert effect["before"]["negative"] == 2 and effect["after"]["negative"] == 3
    ctx = AlertContext(o.settings)
    # A few negative posts after closing: below twice the day before (and the minimum).
    _event_with_posts(o, [(closed_at + timedelta(hours=h), "negative") for h in range(1, 5)])
    clock.tick(o.engine, ctx, closed_at + timedelta(hours=6))
    assert _state(o, cid) == "closed"
    # Then it flares up again: 4 + 8 = 12 negative posts within a day reopens it.
    _event_with_posts(
        o, [(closed_at + timedelta(hours=7, minutes=m), "negative") for m in range(8)]
    )
    r = clock.tick(o.engine, ctx, closed_at + timedelta(hours=8))
    assert r.case_alerts >= 1
    with o.engine.connect() as conn:
        d = case_detail(conn, None, cid)
        assert d["state"] == "following" and d["reopened"] == 1
        assert d["history"][-1]["action"] == "reopen" and d["history"][-1]["by"] == "系统"
        assert "舆情反弹" in d["history"][-1]["reason"]
        alert = conn.execute(select(Alert.__table__).where(Alert.title.like("【反弹】%"))).one()
        assert alert.level == "serious" and alert.subject == f"case:{cid}"
        assert audit.verify(conn).ok


# --- the audit log -----------------------------------------------------------------------------


def test_audit_log_is_append_only_and_tampering_is_found(office) -> None:  # type: ignore[no-untyped-def]
    o = office
    cid = _open(o)
    _act(o, "ana", cid, "assess", handling="核实")
    _act(o, "chief", cid, "approve_handling")
    with o.engine.connect() as conn:
        result = audit.verify(conn)
        assert result.ok and result.entries >= 3
        ids = conn.execute(select(AuditEntry.id).order_by(AuditEntry.id)).scalars().all()
    # The database itself refuses edits and deletions of entries.
    with pytest.raises(Exception, match="append only"), o.engine.begin() as conn:
        conn.execute(update(AuditEntry).where(AuditEntry.id == ids[1]).values(actor="chief"))
    # Someone with the power to change the schema edits an entry: the chain shows where.
    with o.engine.begin() as conn:
        conn.execute(text("DROP TRIGGER audit_log_no_update"))
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        conn.execute(
            update(AuditEntry).where(AuditEntry.id == ids[1]).values(detail={"level": "general"})
        )
    with o.engine.connect() as conn:
        result = audit.verify(conn)
        assert not result.ok and result.bad_id == ids[1] and "altered" in result.problem
    _office_cli_verify(o, expect_bad=ids[1])


def test_audit_removed_entry_is_found(office) -> None:  # type: ignore[no-untyped-def]
    o = office
    cid = _open(o)
    _act(o, "ana", cid, "assess", handling="核实")
    with o.engine.begin() as conn:
        ids = conn.execute(select(AuditEntry.id).order_by(AuditEntry.id)).scalars().all()
        conn.execute(text("DROP TRIGGER audit_log_no_delete"))
        conn.execute(AuditEntry.__table__.delete().where(AuditEntry.id == ids[-2]))
    with o.engine.connect() as conn:
        result = audit.verify(conn)
    assert result.bad_id == ids[-1] and "removed" in result.problem


def _office_cli_verify(o: Office, expect_bad: int) -> None:
    from typer.testing import CliRunner

    from tingfeng.cli.main import app

    r = CliRunner().invoke(app, ["--db", o.settings.database_url, "audit", "verify"])
    assert r.exit_code == 1 and f"entry {expect_bad}" in r.stderr


# --- the ledger --------------------------------------------------------------------------------


def test_ledger_lists_open_and_watched_cases_most_serious_first_and_exports(
    office, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    from openpyxl import load_workbook

    from tingfeng.cases.ledger import ledger, to_csv, to_xlsx

    o = office
    now = datetime.now(UTC)
    general = _open(o, level="一般", title='=HYPERLINK("http://x")垃圾')
    critical = _open(o, level="特大", title="医院火灾")
    done = _open(o, title="已办结无事件")
    _act(o, "ana", done, "assess", handling="无需处置")
    _act(o, "chief", done, "dismiss", reason="不属实")
    with write_transaction(o.engine) as conn:
        from tingfeng.cases.tasks import add_progress

        add_progress(conn, o.ana, general, "已联系街道")
    with o.engine.connect() as conn:
        rows = ledger(conn, None, now, "Asia/Shanghai")
        assert [r["id"] for r in rows] == [critical, general]  # closed without watch: not listed
        assert rows[1]["last_progress"] == "已联系街道" and rows[0]["next_step"] == "签收"
        assert [r["id"] for r in ledger(conn, o.wj, now, "Asia/Shanghai")] == []
    csv_text = to_csv(rows).decode("utf-8-sig")
    assert csv_text.splitlines()[0].startswith("编号,标题,等级")
    assert "'=HYPERLINK" in csv_text  # a formula in a collected title stays text
    path = tmp_path / "ledger.xlsx"
    path.write_bytes(to_xlsx(rows))
    ws = load_workbook(path).active
    assert ws["A1"].value == "编号" and ws["C2"].value == "特大" and ws.max_row == 3


def test_the_clock_keeps_going_for_cases_without_an_event(office, caplog) -> None:  # type: ignore[no-untyped-def]
    """A reply on a case with no event has no effect to measure (stored as JSON null): the
    clock skips it, and the deadlines in the same tick are still watched."""
    o = office
    start = at("2026-11-23T09:00")
    published = _open(o, now=start)
    _to_verifying(o, published)
    with write_transaction(o.engine) as conn:
        rid = replies.draft_reply(conn, o.cg, published, "已处理")
        replies.submit_reply(conn, o.cg, o.settings, rid)
        replies.approve_reply(conn, o.cg_boss, o.settings, rid)
        replies.publish_reply(conn, o.cg, o.settings, rid, platform="微博", account="@城管")
    late = _open(o, level="特大", title="无人签收", now=start)
    r = clock.tick(o.engine, AlertContext(o.settings), start + timedelta(hours=3))
    assert "failed" not in caplog.text  # no part of the clock broke
    assert r.case_alerts >= 2  # the 特大 case's acknowledge and report steps are overdue
    with o.engine.connect() as conn:
        titles = conn.execute(select(Alert.title).where(Alert.subject == f"case:{late}")).scalars()
        assert any(t.startswith("【超期】") for t in titles)
