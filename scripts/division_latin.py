"""Write the Latin spellings of province and city names: `python scripts/division_latin.py`.

English posts name Chinese places in pinyin ("Floods in Guangdong", "a Shenzhen factory"). The
region finder matches those spellings from src/tingfeng/analyze/division_latin.json, which this
script generates from the division table (the `cpca` package) with pypinyin, so the service
never loads pypinyin (it holds ~55 MB) and the forms can be reviewed in one file.

Needs `pip install pypinyin` (MIT); run it again when the division table changes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pypinyin import lazy_pinyin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from tingfeng.analyze.regions import DivisionTable, short_name  # noqa: E402

OUT = ROOT / "src" / "tingfeng" / "analyze" / "division_latin.json"
# Names written in English other than as their pinyin (exonyms and postal spellings), and the
# spelling that tells 陕西 from 山西 (both "shanxi" in plain pinyin).
EXONYMS = {
    "香港": ["hong kong"],
    "澳门": ["macau", "macao"],
    "内蒙古": ["inner mongolia"],
    "西藏": ["tibet", "xizang"],
    "陕西": ["shaanxi"],
    "哈尔滨": ["harbin"],
    "乌鲁木齐": ["urumqi"],
    "呼和浩特": ["hohhot"],
    "拉萨": ["lhasa"],
    "喀什": ["kashgar"],
}
# Plain pinyin that is wrong for these place names (pypinyin reads the common sound).
CORRECTIONS = {"漯河": "luohe", "朝阳": "chaoyang", "六安": "lu'an", "吕梁": "lüliang"}
# Forms this short are English words or given names ("ali" for 阿里地区): not matched.
MIN_LETTERS = 4
# Spellings that in English text mostly mean something else (found by reading the regions the
# finder gave the English posts of ../shared/data/events): Luan, a Portuguese given name (六安
# keeps "lu'an"); Nanyang, Singapore's university and polytechnic (南阳).
NOT_PLACES = frozenset({"luan", "nanyang"})


def spellings(form: str) -> list[str]:
    """Pinyin of `form` as English writes it: one word, with an apostrophe before a syllable
    that starts with a vowel (西安 xi'an), and the same without it (xian)."""
    if form in CORRECTIONS:
        word = CORRECTIONS[form]
    else:
        syllables = lazy_pinyin(form, v_to_u=True)
        word = syllables[0] + "".join(("'" + s if s[0] in "aoe" else s) for s in syllables[1:])
    out = [word, word.replace("'", "")]
    if "ü" in word:
        out += [word.replace("ü", "v"), word.replace("ü", "u")]
    return [
        w
        for w in dict.fromkeys(out)
        if sum(ch.isalpha() for ch in w) >= MIN_LETTERS and w not in NOT_PLACES
    ]


def main() -> None:
    table = DivisionTable.load()
    forms: dict[str, list[str]] = {}
    for division in table:
        if division.level not in ("province", "city"):
            continue
        form = short_name(division.name) or division.name
        if form in forms or not all("\u4e00" <= ch <= "\u9fff" for ch in form):
            continue
        spelled = list(dict.fromkeys(spellings(form) + EXONYMS.get(form, [])))
        if spelled:
            forms[form] = spelled
    missing = sorted(set(EXONYMS) - set(forms))
    if missing:
        raise SystemExit(f"exonyms for forms the table does not have: {', '.join(missing)}")
    lines = [
        f"{json.dumps(form, ensure_ascii=False)}: {json.dumps(forms[form], ensure_ascii=False)}"
        for form in sorted(forms)
    ]
    OUT.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    print(f"wrote {len(forms)} forms to {OUT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
