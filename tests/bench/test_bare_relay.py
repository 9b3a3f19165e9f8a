"""The real-CLI benchmark's durable floor (``bench/bare_relay.py --durable``) does the work
its figures are said to cost: a wrong token is refused, and what passes is stored before it
goes on (the relay's app over the relay's in-process transport, its SQLite file on disk)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import trio

from bench.bare_relay import TOKEN, _app, _Store
from relay.inprocess import InProcessTransport

GOOD = {"authorization": f"Bearer {TOKEN}"}
BAD = {"authorization": "Bearer not-the-token"}


def _rows(directory: Path, table: str) -> list[str]:
    with sqlite3.connect(directory / "relay.sqlite") as db:
        return [body for (body,) in db.execute(f"SELECT body FROM {table} ORDER BY id")]


async def test_the_durable_floor_checks_tokens_and_stores_before_passing_on(
    tmp_path: Path,
) -> None:
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            # rcd's own in-process transport: it closes a body the app left unread.
            transport = InProcessTransport(
                app=_app(_Store(tmp_path)), nursery=nursery, server=("relay", 80)
            )
            async with httpx.AsyncClient(transport=transport, base_url="http://relay") as client:
                for headers in (BAD, {}):
                    refused = await client.post("/in", content=b'{"a":1}', headers=headers)
                    assert refused.status_code == 401
                assert _rows(tmp_path, "inputs") == []
                taken = await client.post("/in", content=b'{"a":1}', headers=GOOD)
                assert taken.status_code == 202
                assert _rows(tmp_path, "inputs") == ['{"a":1}']

                # Each line up the open request carries the token too; a wrong one ends it.
                token = TOKEN.encode()
                good = token + b'\t{"n":1}\n' + token + b'\t{"n":2}\n'
                assert (await client.post("/up", content=good, headers=GOOD)).status_code == 200
                assert _rows(tmp_path, "lines") == ['{"n":1}', '{"n":2}']
                forged = b'wrong\t{"n":3}\n'
                assert (await client.post("/up", content=forged, headers=GOOD)).status_code == 401
                assert _rows(tmp_path, "lines") == ['{"n":1}', '{"n":2}']
