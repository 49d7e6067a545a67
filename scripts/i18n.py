"""Keep the English catalogue in step with the pages: `python scripts/i18n.py [--fill F] [--check]`.

Extracts every `_()`/`N_()`/`gettext()` string from the templates and the code (the Chinese
text is the message id), merges them into src/tingfeng/locale/en/LC_MESSAGES/messages.po
(keeping the translations already there, dropping strings no longer used), optionally fills
translations from a JSON object {"中文": "English", ...}, and lists what is still untranslated.
`--check` changes nothing and exits 1 when a string lacks its translation (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po, write_po

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "tingfeng"
PO = ROOT / "src" / "tingfeng" / "locale" / "en" / "LC_MESSAGES" / "messages.po"
# The pages' templates, and every module (labels of the services are marked with N_).
METHODS = [("web/templates/**.html", "jinja2"), ("**.py", "python")]
KEYWORDS = {"_": None, "gettext": None, "ngettext": (1, 2), "N_": None}


def extracted() -> dict[str, list[tuple[str, int]]]:
    """msgid → where it is used."""
    found: dict[str, list[tuple[str, int]]] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(PACKAGE),
        METHODS,
        {"web/templates/**.html": {"extensions": "jinja2.ext.i18n"}},
        keywords=KEYWORDS,
    ):
        if isinstance(message, tuple):
            message = message[0]
        if message:
            found.setdefault(message, []).append((filename, lineno))
    return found


def load() -> Catalog:
    if PO.exists():
        with PO.open("rb") as f:
            return read_po(f, locale="en")
    return Catalog(locale="en", project="Tingfeng", fuzzy=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fill", type=Path, action="append", default=[],
                        help="JSON object of Chinese → English translations to add")  # fmt: skip
    parser.add_argument("--check", action="store_true", help="change nothing; fail if incomplete")
    args = parser.parse_args()
    old = load()
    known = {m.id: m.string for m in old if m.id}
    for path in args.fill:
        known.update({k: v for k, v in json.loads(path.read_text("utf-8")).items() if v})
    used = extracted()
    missing = sorted(m for m in used if not known.get(m))
    if args.check:
        for m in missing:
            where = ", ".join(f"{f}:{n}" for f, n in used[m][:3])
            print(f"untranslated: {m!r} ({where})")
        return 1 if missing else 0
    catalog = Catalog(locale="en", project="Tingfeng", fuzzy=False,
                      header_comment="# English translations of Tingfeng's pages "
                      "(scripts/i18n.py keeps this file in step).")  # fmt: skip
    for message in sorted(used):
        catalog.add(message, known.get(message, ""), locations=used[message][:5])
    PO.parent.mkdir(parents=True, exist_ok=True)
    with PO.open("wb") as f:
        write_po(f, catalog, width=100, omit_header=False, sort_output=True)
    print(f"{len(used)} strings, {len(missing)} untranslated → {PO.relative_to(ROOT)}")
    for m in missing:
        print(f"  {m}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
