"""The case state machine: every action, the states it leaves from, where it goes, who may take it.

new → assessed → approved → assigned → verifying → drafted → reply_approved → published →
following → closed → archived, with the ways back: an approver returns an assessment or a reply
draft with a reason, a department rejects an assignment it is not responsible for with a reason,
and a closed case reopens (by hand, or by the relapse watch). Staged replies (facts, progress,
result) go round drafted → reply_approved → published again while the case is followed.

Whether a person may take an action on a particular case also depends on the case's department:
that is `tingfeng.cases.permissions`.
"""

from __future__ import annotations

from dataclasses import dataclass

from tingfeng.problems import ProblemsError
from tingfeng.web.i18n import N_

STATES: dict[str, str] = {
    "new": N_("新建"),
    "assessed": N_("已研判"),
    "approved": N_("已批准处置"),
    "assigned": N_("已交办"),
    "verifying": N_("核查中"),
    "drafted": N_("回复待审"),
    "reply_approved": N_("回复已审批"),
    "published": N_("已发布"),
    "following": N_("跟踪中"),
    "closed": N_("已办结"),
    "archived": N_("已归档"),
}
# Cases still in hand: counted in the ledger and watched by the deadline clock.
OPEN_STATES = frozenset(STATES) - {"closed", "archived"}


@dataclass(frozen=True)
class Action:
    name: str
    label: str
    sources: frozenset[str]
    target: str
    roles: frozenset[str]
    needs_reason: bool = False


def _a(
    name: str, label: str, sources: str, target: str, roles: str, *, reason: bool = False
) -> Action:
    return Action(name, label, frozenset(sources.split()), target, frozenset(roles.split()), reason)


# Approvals (approve_handling, approve_reply and the returns) are acts of leadership: only the
# approver role takes them, not the administrator, whose job is the system, not the matter.
ACTIONS: dict[str, Action] = {
    a.name: a
    for a in (
        _a("assess", N_("研判"), "new", "assessed", "analyst admin"),
        _a("return_assessment", N_("退回研判"), "assessed", "new", "approver", reason=True),
        _a("approve_handling", N_("批准处置"), "assessed", "approved", "approver"),
        _a("assign", N_("交办"), "approved", "assigned", "analyst approver admin"),
        _a(
            "reject_assignment",
            N_("退回交办"),
            "assigned",
            "approved",
            "handler approver",
            reason=True,
        ),
        _a("accept", N_("签收核查"), "assigned", "verifying", "handler"),
        _a("submit_reply", N_("提交回复"), "verifying following", "drafted", "handler analyst"),
        _a("return_reply", N_("退回回复"), "drafted", "verifying", "approver", reason=True),
        _a("approve_reply", N_("审批回复"), "drafted", "reply_approved", "approver"),
        _a("publish", N_("发布回复"), "reply_approved", "published", "handler analyst"),
        _a("follow_up", N_("跟踪"), "published", "following", "handler analyst"),
        _a("close", N_("办结"), "published following", "closed", "analyst approver"),
        # A matter that needs no handling (not ours, already solved) is closed after assessment,
        # by an approver and with the reason on record.
        _a("dismiss", N_("不予处置"), "assessed", "closed", "approver", reason=True),
        _a("reopen", N_("重新打开"), "closed", "following", "analyst approver", reason=True),
        _a("archive", N_("归档"), "closed", "archived", "analyst approver admin"),
    )
}


class TransitionError(ProblemsError):
    """An action that the state machine or the person's role does not allow; says why."""


def action(name: str) -> Action:
    try:
        return ACTIONS[name]
    except KeyError:
        raise TransitionError(f"No action {name!r}: use one of {', '.join(ACTIONS)}.") from None


def check_role(name: str, role: str) -> Action:
    """The action, if `role` may ever take it; TransitionError otherwise."""
    a = action(name)
    if role not in a.roles:
        raise TransitionError(
            f"The {role} role may not {a.label} ({a.name}); roles that may: "
            f"{', '.join(sorted(a.roles))}."
        )
    return a


def check(name: str, state: str, role: str) -> Action:
    """The action, if it may leave `state` and `role` may take it; TransitionError otherwise."""
    a = action(name)
    if state not in a.sources:
        allowed = "、".join(STATES[s] for s in sorted(a.sources))
        raise TransitionError(
            f"Cannot {a.label} a case that is {STATES.get(state, state)} ({state}): "
            f"only from {allowed}."
        )
    return check_role(name, role)


def available(state: str, role: str) -> list[Action]:
    """The actions someone of `role` could take on a case in `state` (the page's buttons)."""
    return [a for a in ACTIONS.values() if state in a.sources and role in a.roles]
