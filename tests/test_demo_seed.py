"""`tingfeng demo seed` on the real CED posts: an office with every role, events and alerts from
the pipeline, cases in every state worked by the right roles, replies, the board answered,
evidence whose files match their hashes, an intact audit chain, and a second seed refused."""

from __future__ import annotations

import gzip
import hashlib
import html
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner, Result

from tests.conftest import CED
from tingfeng.cases.service import OPENERS
from tingfeng.cases.states import ACTIONS, STATES
from tingfeng.cli.main import app
from tingfeng.db.engine import make_engine
from tingfeng.db.models import (
    Alert,
    AuditEntry,
    BoardMessage,
    Case,
    CaseTask,
    CaseTransition,
    Event,
    Evidence,
    Post,
    Reply,
    ReplyApproval,
    User,
)
from tingfeng.office.people import ROLES


@dataclass
class Seeded:
    url: str
    data_dir: Path
    report: dict[str, Any]
    engine: Engine

    def cli(self, *args: str) -> Result:
        env = {"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(self.data_dir)}
        return CliRunner().invoke(app, ["--db", self.url, *args], env=env)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    if not CED.exists():
        pytest.fail(
            f"The CED data set is missing ({CED}): `demo seed` is tested on the real posts, "
            "so ../shared/data must be present next to the checkout.",
            pytrace=False,
        )
    tmp = tmp_path_factory.mktemp("seed")
    url = f"sqlite:///{tmp / 'demo.db'}"
    engine = make_engine(url)
    s = Seeded(url, tmp / "var", {}, engine)
    result = s.cli("demo", "seed", "--posts", "600", "--ced", str(CED), "--json")
    assert result.exit_code == 0, result.output
    s.report = json.loads(result.stdout)
    yield s
    engine.dispose()


def test_every_state_and_role_from_real_alerts_events_and_posts(seeded: Seeded) -> None:
    report = seeded.report
    assert report["parts"] == ["office", "alerting", "posts", "cases", "evidence"]
    assert report["password"] == "tingfeng-demo"
    with seeded.engine.connect() as conn:
        states = set(conn.execute(select(Case.state)).scalars())
        assert states == set(STATES)
        assert set(conn.execute(select(User.role)).scalars()) == set(ROLES)
        assert conn.execute(select(func.count(Post.id))).scalar() == 600
        assert conn.execute(select(func.count(Event.id))).scalar()
        assert conn.execute(select(func.count(Alert.id))).scalar()
        # Online cases come from what the pipeline raised: real alerts, events and posts.
        online = conn.execute(select(Case.__table__).where(Case.origin == "online")).all()
        assert any(c.alert_id for c in online)
        assert all(c.post_id for c in online)
        linked = conn.execute(
            select(Alert.status).where(Alert.id.in_([c.alert_id for c in online if c.alert_id]))
        ).scalars()
        assert set(linked) == {"acknowledged"}
        assert report["cases_by_state"] == {
            s: sum(1 for _ in conn.execute(select(Case.id).where(Case.state == s))) for s in STATES
        }


def test_each_step_was_taken_by_a_role_allowed_to_take_it(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        roles = dict(conn.execute(select(User.id, User.role)).all())
        history = conn.execute(select(CaseTransition.__table__)).all()
    taken = {h.action for h in history}
    assert {"return_assessment", "reject_assignment", "return_reply", "dismiss", "archive"} <= taken
    for h in history:
        role = roles[h.user_id]
        if h.action == "open":
            assert role in OPENERS
        elif h.action in ACTIONS:
            assert role in ACTIONS[h.action].roles, (h.action, role)


def test_replies_staged_point_to_point_and_the_board_answered(seeded: Seeded) -> None:
    with seeded.engine.connect() as conn:
        replies = conn.execute(select(Reply.__table__)).all()
        assert any(r.state == "published" for r in replies)
        following = conn.execute(select(Case.__table__).where(Case.state == "following")).one()
        assert following.origin == "assigned" and following.origin_detail["office"]
        staged = [r for r in replies if r.case_id == following.id]
        assert [r.stage for r in staged] == ["facts", "progress", "result"]
        # Two levels of approval, by two different leaders, for each published stage.
        for r in staged[:2]:
            assert r.state == "published" and r.approvals_needed == 2
            approvers = conn.execute(
                select(ReplyApproval.user_id).where(ReplyApproval.reply_id == r.id)
            ).scalars()
            assert len(set(approvers)) == 2
        point = next(r for r in replies if r.stage == "point")
        assert point.state == "published" and point.in_reply_to_post_id is not None
        message = conn.execute(select(BoardMessage.__table__)).one()
        board_case = conn.execute(
            select(Case.__table__).where(Case.board_message_id == message.id)
        ).one()
        published = next(r for r in replies if r.case_id == board_case.id)
        assert message.status == "answered" and message.answer == published.published_text
        media = conn.execute(select(Case.__table__).where(Case.origin == "onsite")).one()
        assert media.origin_detail["outlet"] and media.origin_detail["question"]
        tasks = conn.execute(
            select(CaseTask.title, CaseTask.status).where(CaseTask.case_id == media.id)
        ).all()
        assert sorted(tasks) == [("准备口径", "open"), ("核实情况", "done")]


def test_evidence_files_match_their_hashes_and_show_the_posts(seeded: Seeded) -> None:
    root = seeded.data_dir / "evidence"
    with seeded.engine.connect() as conn:
        rows = conn.execute(select(Evidence.__table__).order_by(Evidence.id)).all()
        texts = dict(conn.execute(select(Post.id, Post.text_clean)).all())
    assert len(rows) >= 3
    assert {r.category for r in rows} >= {"post", "reply"}
    for r in rows:
        assert r.status == "captured" and r.http_status == 200
        warc = (root / r.warc_path).read_bytes()
        assert hashlib.sha256(warc).hexdigest() == r.warc_sha256
        if r.png_path:
            png = (root / r.png_path).read_bytes()
            assert hashlib.sha256(png).hexdigest() == r.png_sha256
        if r.post_id is not None:
            assert r.published_at is not None and r.discovered_at is not None
            shown = html.escape(texts[r.post_id][:12]).encode()
            assert shown in gzip.decompress(warc)
    check = seeded.cli("evidence", "verify", str(rows[0].id))
    assert check.exit_code == 0, check.output
    assert "intact" in check.stdout


def test_audit_chain_is_intact(seeded: Seeded) -> None:
    result = seeded.cli("audit", "verify")
    assert result.exit_code == 0, result.output
    with seeded.engine.connect() as conn:
        actions = set(conn.execute(select(AuditEntry.action)).scalars())
    assert {"case.open", "reply.publish", "evidence.capture", "board.answer"} <= actions


def test_a_second_seed_is_refused_and_changes_nothing(seeded: Seeded) -> None:
    def snapshot() -> dict[str, Any]:
        with seeded.engine.connect() as conn:
            return {
                t.__tablename__: conn.execute(select(func.count()).select_from(t)).scalar()
                for t in (Post, Case, User, Alert, Reply, Evidence, AuditEntry, BoardMessage)
            } | {"head": conn.execute(select(func.max(AuditEntry.id))).scalar()}

    before = snapshot()
    again = seeded.cli("demo", "seed", "--posts", "600", "--ced", str(CED))
    assert again.exit_code == 2
    assert "fresh database" in again.stderr
    assert snapshot() == before


def test_a_failing_part_stops_the_seed_and_says_what_was_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tingfeng.demo import seed

    def broken(*_args: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(seed, "seed_posts", lambda *_a: {"read": 0, "stored": 0, "errors": 0})
    monkeypatch.setattr(seed, "seed_cases", broken)
    url = f"sqlite:///{tmp_path / 'x.db'}"
    result = CliRunner().invoke(
        app,
        ["--db", url, "demo", "seed", "--ced", str(CED), "--no-evidence"],
        env={"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 1
    assert "the cases part failed (RuntimeError: disk full)" in result.stderr
    assert "Done before it: office; alerting; posts" in result.stderr
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(func.count(Case.id))).scalar() == 0
        assert conn.execute(select(func.count(User.id))).scalar() == len(seed.PEOPLE)
    engine.dispose()


def test_seed_refuses_a_missing_ced_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["--db", f"sqlite:///{tmp_path / 'x.db'}", "demo", "seed", "--ced", str(tmp_path / "no")],
        env={"TINGFENG_CONFIG": "/nonexistent.toml", "TINGFENG_DATA_DIR": str(tmp_path)},
    )
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_demo_help_keeps_the_replay_options_and_offers_seed() -> None:
    result = CliRunner().invoke(app, ["demo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for option in ("--speed", "--feeds", "--ced", "--port", "seed"):
        assert option in result.stdout
