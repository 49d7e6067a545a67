"""The Chinese labels the API hands to the pages' scripts, and their translations.

The JSON API keeps its Chinese labels (`level_zh`, `label_zh`, …: scripts and exports rely on
them); a page that shows them from JavaScript gets `label_map()` in its template and looks each
label up there, so the English page shows English.
"""

from __future__ import annotations

from tingfeng.web.i18n import N_, gettext

POLARITY_ZH = {
    "negative": N_("负面"),
    "neutral": N_("中性"),
    "positive": N_("正面"),
    "unknown": N_("未知"),
}
EMOTION_ZH = {
    "neutral": N_("中性"),
    "angry": N_("愤怒"),
    "happy": N_("喜悦"),
    "sad": N_("悲伤"),
    "fear": N_("恐惧"),
    "surprise": N_("惊奇"),
    "unknown": N_("未知"),
}
ROLE_ZH = {
    "admin": N_("管理员"),
    "approver": N_("领导"),
    "handler": N_("经办人"),
    "analyst": N_("监测员"),
    "liaison": N_("联络员"),
    "viewer": N_("只读"),
}
LEVEL_ZH = {
    "general": N_("一般"),
    "serious": N_("较大"),
    "major": N_("重大"),
    "critical": N_("特大"),
}


def label_map() -> dict[str, str]:
    """Every label of the API → its text in the request's language."""
    from tingfeng.cases.service import STEP_LABELS
    from tingfeng.cases.states import STATES

    labels: set[str] = set()
    for table in (POLARITY_ZH, EMOTION_ZH, LEVEL_ZH, STATES, STEP_LABELS):
        labels.update(str(v) for v in table.values())
    return {label: gettext(label) for label in sorted(labels)}
