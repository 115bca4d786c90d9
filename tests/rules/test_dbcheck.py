"""`shadow rules check DIR --pg DSN`: the rules' tables and columns exist in PostgreSQL."""
from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import asyncpg

from shadow.demo.marketplace import apply_schema

SHIPPED = Path(__file__).resolve().parents[2] / "rules" / "marketplace"


async def check(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shadow", "rules", "check", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_shipped_rules_match_the_marketplace_schema_and_typos_are_caught(pg_dsn: str, tmp_path: Path) -> None:
    connection = await asyncpg.connect(pg_dsn)
    try:
        await apply_schema(connection)
    finally:
        await connection.close()
    code, out, err = await check(str(SHIPPED), "--pg", pg_dsn)
    assert code == 0, err
    assert "tables and columns found in PostgreSQL" in out

    folder = tmp_path / "rules"
    folder.mkdir()
    for path in SHIPPED.glob("*.yaml"):
        text = path.read_text()
        if path.name == "disputes.yaml":
            text = text.replace("      actorId: {ref: actor_id, to: users}", "      actorId: {ref: actor_uuid, to: users}")
            text = text.replace("rows: dispute_evidence", "rows: dispute_evidences")
        (folder / path.name).write_text(text)
    code, _, err = await check(str(folder), "--pg", pg_dsn)
    assert code == 1
    assert f"{folder / 'disputes.yaml'}:13: entity 'disputes': table 'dispute_evidences' does not exist" in err
    assert f"{folder / 'disputes.yaml'}:29: entity 'disputes': column 'actor_uuid' does not exist in table 'dispute_timeline'" in err
    assert err.count("does not exist") == 2


async def test_unreachable_database_is_exit_2(tmp_path: Path) -> None:
    code, _, err = await check(str(SHIPPED), "--pg", f"postgresql://nobody@/none?host={tmp_path}")
    assert code == 2 and "cannot check against PostgreSQL" in err


async def test_view_rules_are_checked_by_what_they_read(pg_dsn: str, tmp_path: Path) -> None:
    """A `distinct:` entity reads one column (not legacy_object_id / id); aggregates and
    list routes (through tables, lookups, reader sets, sort columns) are checked too."""
    from tests.replay.sources.test_listfilters import RULES as LISTS
    from tests.replay.sources.test_viewmodel import RULES as VIEWS
    from tests.replay.sources.test_viewmodel import seed

    await seed(pg_dsn)
    connection = await asyncpg.connect(pg_dsn)
    try:
        await connection.execute("CREATE TABLE follows (follower_id uuid NOT NULL, followee_id uuid NOT NULL)")
    finally:
        await connection.close()
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "views.yaml").write_text(VIEWS)
    lists = LISTS.replace("entity: article\n", "entity: article_list\n").replace("entity: current_user", "entity: me")
    lists = lists.replace("GET /api/", "GET /v2/")  # beside the views' routes
    (folder / "lists.yaml").write_text(lists)
    code, _, err = await check(str(folder), "--pg", pg_dsn)
    assert code == 0, err
    broken = lists.replace("{query: tag, through: article_tags", "{query: tag, through: article_tag")
    broken = broken.replace("select: followee_id", "select: followed_id").replace("slug: slug}}", "slug: slugg}}")
    (folder / "lists.yaml").write_text(broken)
    code, _, err = await check(str(folder), "--pg", pg_dsn)
    assert code == 1
    assert "entity 'article_list': table 'article_tag' does not exist" in err
    assert "entity 'article_list': column 'followed_id' does not exist in table 'follows'" in err
    assert "entity 'article_list': column 'slugg' does not exist in table 'articles'" in err
    assert "tags" not in err
