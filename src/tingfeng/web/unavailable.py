"""503 for a database that is locked, read-only, full or out of reach (tingfeng.db.faults).

Without this such a request ends in a bare 500. The failed write was rolled back whole, so the
answer says what is wrong and that the same request can be sent again; Retry-After says when.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from tingfeng.db.faults import fault_of

RETRY_AFTER_S = 5


def register(app: FastAPI) -> None:
    @app.exception_handler(SQLAlchemyError)
    async def _database_fault(_request: Request, exc: SQLAlchemyError) -> JSONResponse:
        fault = fault_of(exc)
        if fault is None:
            raise exc  # a bug: the server error it is
        return JSONResponse(
            {"error": f"The database cannot take this request now: {fault.message} "
             "Send the same request again later.", "fault": fault.kind},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )  # fmt: skip
