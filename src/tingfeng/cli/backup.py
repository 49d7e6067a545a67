"""`tingfeng backup` and `tingfeng restore`: one portable archive of the database and the files
that matter, restorable into SQLite or PostgreSQL whichever it came from (docs/backup.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from tingfeng.cli.main import app, engine_of, fail, print_table, settings_of

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _say(line: str) -> None:
    # Progress on stderr, so that --json output stays one document on stdout.
    typer.echo(line, err=True)


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _verified(path: Path, as_json: bool) -> None:
    """Check an archive and say what it holds."""
    from tingfeng.backup import BackupError, verify

    try:
        manifest = verify(path)
        problem = ""
    except BackupError as exc:
        problem = str(exc)
    # Outside the except block: the database-fault report of the command line
    # (tingfeng.cli.faults) looks at the exception a failure was raised in.
    if problem:
        fail(problem)
    db = manifest["database"]
    summary: dict[str, Any] = {
        "path": str(path),
        "ok": True,
        "created_at": manifest.get("created_at"),
        "tingfeng": manifest.get("tingfeng"),
        "database": db,
        "tables": len(manifest["tables"]),
        "rows": sum(t["rows"] for t in manifest["tables"]),
        "files": len(manifest["files"]),
    }
    if as_json:
        typer.echo(json.dumps(summary, ensure_ascii=False))
        return
    typer.echo(
        f"{path}: a complete Tingfeng backup, every checksum matches\n"
        f"  made {summary['created_at']} by Tingfeng {summary['tingfeng']} from "
        f"{db['dialect']} at schema revision {db['schema_revision']}\n"
        f"  {summary['tables']} tables, {summary['rows']} rows, files: {summary['files']}"
    )


@app.command("backup")
def backup_command(
    ctx: typer.Context,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="The archive to write (e.g. tingfeng-2026-11-22.zip)."),
    ] = None,
    verify: Annotated[
        Path | None,
        typer.Option("--verify", help="Check an archive (complete, checksums right); no database."),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Back up the whole database and the evidence, report and key files into one archive."""
    from tingfeng.backup import BackupError, backup

    if (out is None) == (verify is None):
        fail("give either --out FILE (write a backup) or --verify FILE (check one)")
    if verify is not None:
        _verified(verify, as_json)
        return
    assert out is not None
    try:
        result = backup(
            engine_of(ctx, migrate=False), settings_of(ctx), out, say=None if as_json else _say
        )
        problem = ""
    except BackupError as exc:
        problem = str(exc)
    if problem:
        fail(problem)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False))
        return
    typer.echo(
        f"backup written: {result['path']} ({_megabytes(result['bytes'])})\n"
        f"  schema revision {result['schema_revision']}: {result['tables']} tables, "
        f"{result['rows']} rows; files: {result['files']} ({_megabytes(result['file_bytes'])})\n"
        f"  {result['seconds']:.1f} s, {result['rows_per_s']} rows/s\n"
        f"check it with: tingfeng backup --verify {result['path']}"
    )


@app.command("restore")
def restore_command(
    ctx: typer.Context,
    archive: Annotated[Path, typer.Argument(help="The archive `tingfeng backup` wrote.")],
    check: Annotated[
        bool, typer.Option("--check", help="Only check the archive, as `backup --verify`.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into a new, empty database (--db), made here, and this data directory.

    Every checksum is checked first; a database that holds data is refused."""
    from sqlalchemy.exc import OperationalError

    from tingfeng.backup import BackupError, restore

    if check:
        _verified(archive, as_json)
        return
    settings = settings_of(ctx)
    problem = ""
    try:
        result = restore(
            engine_of(ctx, migrate=False), settings, archive, say=None if as_json else _say
        )
    except BackupError as exc:
        problem = str(exc)
    except OperationalError as exc:
        problem = (
            f"cannot open the database {settings.database_url}: {exc.orig}. For PostgreSQL, "
            "create the empty database first (createdb NAME)."
        )
    if problem:  # outside the except blocks, as in `_verified`
        fail(problem)
    data = result.as_dict()
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
        return
    typer.echo(f"restored into {settings.database_url}:")
    print_table(
        ["table", "rows", "read back"],
        [[t["name"], t["rows"], "same as the backup"] for t in data["tables"]],
    )
    revisions = data["schema_revision"]
    if revisions["backup"] != revisions["database"]:
        typer.echo(f"schema upgraded from {revisions['backup']} to {revisions['database']}")
    typer.echo(
        f"search index rebuilt for {data['indexed_posts']} posts; "
        f"{data['sequences_moved']} id sequences moved past the largest ids\n"
        f"files: {data['files_written']} written, {data['files_already_there']} already there"
        + (
            f"; {data['report_paths_moved']} report paths moved"
            if data["report_paths_moved"]
            else ""
        )
        + f"\n{data['rows']} rows in {data['seconds']:.1f} s ({data['rows_per_s']} rows/s)"
    )
    for note in data["notes"]:
        typer.echo(f"note: {note}")
    for path in data["conflicts"]:
        typer.echo(f"  kept (differs from the backup): {path}")
