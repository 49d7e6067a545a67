"""Static files of the pages: our own (web/static) and the front-end libraries from npm.

The libraries (ECharts) are installed by `scripts/install-web.sh` into the repository's
node_modules/ and never committed; `TINGFENG_NODE_MODULES` points elsewhere (a packaged
install). Only the files named in VENDOR are served, never the rest of node_modules.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")
VENDOR = {"echarts.min.js": Path("echarts/dist/echarts.min.js")}


def node_modules() -> Path:
    configured = os.environ.get("TINGFENG_NODE_MODULES")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "node_modules"


def register(app: FastAPI) -> None:
    app.mount("/static/app", StaticFiles(directory=STATIC), name="static")

    @app.get("/static/vendor/{name}", include_in_schema=False)
    def vendor(name: str) -> FileResponse:
        if name not in VENDOR:
            raise HTTPException(404, f"No front-end library called {name}.")
        path = node_modules() / VENDOR[name]
        if not path.is_file():
            raise HTTPException(
                404,
                f"{name} is not installed: run `make install` (npm ci) to get the pages' "
                "front-end libraries.",
            )
        return FileResponse(path, media_type="text/javascript", headers={
            "Cache-Control": "public, max-age=86400"})  # fmt: skip
