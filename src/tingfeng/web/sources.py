"""Sources (信源): list with health, add with a test fetch, schedules, hot mode."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.templating import Jinja2Templates

from tingfeng.settings import Settings


def register(app: FastAPI, engine: Any, templates: Jinja2Templates, settings: Settings) -> None:
    """Adds the pages and API routes of this area."""
