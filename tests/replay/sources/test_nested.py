"""Child tables of child rows, and child tables under an object: rebuilt at any depth,
one query per child table per batch, the same from real PostgreSQL and from the
in-memory rows `shadow rules test` uses."""
from __future__ import annotations

import textwrap
import uuid
from datetime import date
from pathlib import Path

import asyncpg

from shadow.compare.diff import compare
from shadow.model import Outcome
from shadow.replay.sources.postgres import PostgresSource
from shadow.rules import load_rules
from shadow.ruletools.testing import rebuild_from_rows

RULES = """\
entity: boards
collection: boards
table: boards
key_type: string
fields:
  _id: legacy_object_id
  columns:
    rows: board_columns
    fk: board_id
    order_by: position
    fields:
      title: title
      cards: {rows: cards, fk: column_id, order: unordered, key: name, fields: {name: name}}
  settings:
    object:
      theme: theme
      owner: {child: board_owners, fk: board_id, fields: {email: email}}
"""


async def test_grandchildren_and_children_under_objects(pg_dsn: str, tmp_path: Path) -> None:
    (tmp_path / "boards.yaml").write_text(textwrap.dedent(RULES))
    entity = load_rules(tmp_path).entities["boards"]
    board, todo, done = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    connection = await asyncpg.connect(pg_dsn)
    await connection.execute("""
        CREATE TABLE boards (id uuid PRIMARY KEY, legacy_object_id text, theme text);
        CREATE TABLE board_columns (id uuid PRIMARY KEY, board_id uuid, position int, title text);
        CREATE TABLE cards (column_id uuid, name text);
        CREATE TABLE board_owners (board_id uuid PRIMARY KEY, email text);
        CREATE TABLE id_map (collection text, legacy_object_id text, new_id uuid);""")
    tables = {
        "boards": [{"id": board, "legacy_object_id": "b1", "theme": "dark"}],
        "board_columns": [{"id": done, "board_id": board, "position": 1, "title": "Done"},
                          {"id": todo, "board_id": board, "position": 0, "title": "To do"}],
        "cards": [{"column_id": todo, "name": "b"}, {"column_id": todo, "name": "a"}, {"column_id": done, "name": "c"}],
        "board_owners": [{"board_id": board, "email": "o@example.com"}],
    }
    for table, rows in tables.items():
        columns = list(rows[0])
        await connection.executemany(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(f'${i + 1}' for i in range(len(columns)))})",
            [tuple(row[column] for column in columns) for row in rows])
    await connection.close()
    expected = {"_id": "b1", "columns": [{"title": "To do", "cards": [{"name": "a"}, {"name": "b"}]},
                                         {"title": "Done", "cards": [{"name": "c"}]}],
                "settings": {"theme": "dark", "owner": {"email": "o@example.com"}}}
    source = await PostgresSource.create(pg_dsn)
    try:
        candidate = (await source.fetch(entity, ["b1"]))["b1"]
        assert source.round_trips == 4  # boards, board_columns, cards, board_owners (no uuid refs)
    finally:
        await source.close()
    assert compare(entity, expected, candidate, date(2026, 11, 22)).outcome is Outcome.MATCH, candidate
    offline = rebuild_from_rows(entity, "b1", tables)
    assert compare(entity, expected, offline, date(2026, 11, 22)).outcome is Outcome.MATCH, offline
    wrong = expected | {"columns": [expected["columns"][0] | {"cards": [{"name": "a"}]}, expected["columns"][1]]}
    verdict = compare(entity, wrong, candidate, date(2026, 11, 22))
    assert [(d.path, d.at, d.kind) for d in verdict.diffs] == [("columns[*].cards[*]", "columns[0].cards[+1]", "extra_in_candidate")]
