"""A PostgREST-compatible test server over real HTTP, backed by a real PostgreSQL.

It speaks only the part of PostgREST's wire format that supabase-py sends for the daemon's
operations, so the production client code runs unchanged against it:

- ``POST /rest/v1/{table}`` with a JSON object or array, ``?on_conflict=a,b`` and ``?columns=...``,
  and ``Prefer: return=minimal|representation, resolution=merge-duplicates|ignore-duplicates``;
  rows are converted by PostgreSQL itself (``jsonb_populate_recordset``), as PostgREST does;
- ``GET /rest/v1/{table}?select=a,b&col=eq.v&order=c.desc,d.asc&limit=n&offset=m``;
- errors as PostgREST JSON (``code``, ``message``, ``details``, ``hint``) with PostgREST's status
  mapping: class 22 and 23 data errors 400, unique and foreign-key violations 409, unknown table
  404 (``PGRST205``), unknown column 400 (``PGRST204``), bad key 401 (``PGRST301``).

Outages are simulated for real: ``stop()`` closes the listening socket and every open connection
(clients see connection refused), ``start()`` listens again on the same port. ``fail_status``
answers every request with an error status instead (a PostgREST that lost its database answers
503), and ``delay`` slows every answer down.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from aiohttp import web
from psycopg import sql

from .procs import LOOPBACK, free_port

FILTER_OPERATORS = {"eq": "=", "neq": "<>", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
RESERVED_PARAMS = {"select", "order", "limit", "offset", "on_conflict", "columns"}  # not filters


class PostgrestError(Exception):
    def __init__(self, status: int, code: str, message: str, details: str | None = None,
                 hint: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details, self.hint = (
            status, code, message, details, hint)

    def response(self) -> web.Response:
        return _json({"code": self.code, "message": self.message, "details": self.details,
                      "hint": self.hint}, status=self.status)


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, headers=headers,
                        content_type="application/json", charset="utf-8")


def _status_for_sqlstate(code: str) -> int:
    """PostgREST's mapping of PostgreSQL error codes to HTTP statuses (the part we meet)."""
    if code in ("23503", "23505"):
        return 409
    if code.startswith(("22", "23")) or code in ("42703", "P0001"):
        return 400
    if code == "42501":
        return 403
    if code == "42P01":
        return 404
    if code.startswith("08") or code in ("53300", "57P01"):
        return 503
    return 500


def _unquote(name: str) -> str:
    name = name.strip()
    if len(name) >= 2 and name[0] == name[-1] == '"':
        return name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return name


def _split(value: str) -> list[str]:
    return [_unquote(part) for part in value.split(",") if part.strip()]


@dataclass
class RecordedRequest:
    method: str
    table: str
    params: dict[str, str]
    prefer: str
    status: int = 0


@dataclass
class PostgrestTestServer:
    """Serve ``tables`` of the database at ``dsn`` under ``/rest/v1`` on a loopback port."""

    dsn: str
    api_key: str
    tables: tuple[str, ...] = ("conversations", "messages")
    schema: str = "public"
    port: int = field(default_factory=free_port)
    fail_status: int | None = None
    delay: float = 0.0
    requests: list[RecordedRequest] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._conn: psycopg.AsyncConnection | None = None
        self._lock = asyncio.Lock()
        self._columns: dict[str, dict[str, str]] = {}

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    async def start(self) -> PostgrestTestServer:
        if self._runner is not None:
            return self
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("GET", "/rest/v1/{table}", self._get)
        app.router.add_route("POST", "/rest/v1/{table}", self._post)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        site = web.TCPSite(runner, LOOPBACK, self.port, reuse_address=True)
        await site.start()
        self._runner = runner
        return self

    async def stop(self) -> None:
        """Go down: stop listening and drop every open connection."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def aclose(self) -> None:
        await self.stop()
        if self._conn is not None:
            await self._conn.close()
            self._conn = None

    # --- plumbing -----------------------------------------------------------------------------

    async def _connection(self) -> psycopg.AsyncConnection:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        return self._conn

    async def _table_columns(self, table: str) -> dict[str, str]:
        if table not in self._columns:
            conn = await self._connection()
            cur = await conn.execute(
                "select a.attname, format_type(a.atttypid, a.atttypmod) from pg_attribute a "
                "where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped",
                (f"{self.schema}.{table}",))
            self._columns[table] = {name: typ for name, typ in await cur.fetchall()}
        return self._columns[table]

    def _check(self, request: web.Request) -> str:
        table = request.match_info["table"]
        bearer = request.headers.get("Authorization", "")
        if request.headers.get("apikey") != self.api_key or bearer != f"Bearer {self.api_key}":
            raise PostgrestError(401, "PGRST301", "No suitable key or wrong key type")
        if table not in self.tables:
            raise PostgrestError(
                404, "PGRST205",
                f"Could not find the table '{self.schema}.{table}' in the schema cache")
        return table

    async def _columns_of(self, table: str, names: list[str]) -> dict[str, str]:
        known = await self._table_columns(table)
        for name in names:
            if name not in known:
                raise PostgrestError(
                    400, "PGRST204",
                    f"Could not find the '{name}' column of '{table}' in the schema cache")
        return {name: known[name] for name in names}

    async def _run(self, request: web.Request, handler) -> web.Response:
        record = RecordedRequest(request.method, request.match_info.get("table", ""),
                                 dict(request.query), request.headers.get("Prefer", ""))
        self.requests.append(record)
        if self.delay:
            await asyncio.sleep(self.delay)
        try:
            if self.fail_status is not None:
                raise PostgrestError(self.fail_status, "PGRST001",
                                     "Could not connect with the database (simulated outage)")
            response = await handler(request, self._check(request))
        except PostgrestError as exc:
            response = exc.response()
        except psycopg.Error as exc:
            diag = exc.diag
            code = diag.sqlstate or "XX000"
            response = PostgrestError(_status_for_sqlstate(code), code,
                                      diag.message_primary or str(exc), diag.message_detail,
                                      diag.message_hint).response()
            if isinstance(exc, psycopg.OperationalError) and self._conn is not None:
                await self._conn.close()
                self._conn = None
        record.status = response.status
        return response

    # --- GET ----------------------------------------------------------------------------------

    async def _get(self, request: web.Request) -> web.Response:
        return await self._run(request, self._select)

    async def _select(self, request: web.Request, table: str) -> web.Response:
        query = request.query
        select = query.get("select", "*")
        if "(" in select or ":" in select:
            raise PostgrestError(400, "PGRST100", "embedding and renaming are not supported here")
        known = await self._table_columns(table)
        names = list(known) if select.strip() == "*" else _split(select)
        await self._columns_of(table, names)

        where, args = [], []
        for key, value in query.items():
            if key in RESERVED_PARAMS:
                continue
            column = _unquote(key)
            await self._columns_of(table, [column])
            negate = value.startswith("not.")
            op, _, operand = value.removeprefix("not.").partition(".")
            if op == "is" and operand in ("null", "true", "false"):
                clause = sql.SQL("{} is {}").format(sql.Identifier(column), sql.SQL(operand))
            elif op in FILTER_OPERATORS:
                clause = sql.SQL("{} {} cast({} as {})").format(
                    sql.Identifier(column), sql.SQL(FILTER_OPERATORS[op]), sql.Placeholder(),
                    sql.SQL(known[column]))
                args.append(_unquote(operand))
            else:
                raise PostgrestError(400, "PGRST100", f"unsupported filter operator: {op}")
            where.append(sql.SQL("not ({})").format(clause) if negate else clause)

        order = []
        for term in _split(query.get("order", "")):
            parts = term.split(".")
            await self._columns_of(table, [parts[0]])
            spec = sql.SQL("{} {}").format(sql.Identifier(parts[0]),
                                           sql.SQL("desc" if "desc" in parts[1:] else "asc"))
            if "nullsfirst" in parts[1:] or "nullslast" in parts[1:]:
                spec = sql.SQL("{} {}").format(spec, sql.SQL(
                    "nulls first" if "nullsfirst" in parts[1:] else "nulls last"))
            order.append(spec)

        statement = sql.SQL("select to_jsonb(q) from (select {cols} from {table}").format(
            cols=sql.SQL(", ").join(sql.Identifier(n) for n in names),
            table=sql.Identifier(self.schema, table))
        if where:
            statement += sql.SQL(" where ") + sql.SQL(" and ").join(where)
        if order:
            statement += sql.SQL(" order by ") + sql.SQL(", ").join(order)
        for name in ("limit", "offset"):
            if name in query:
                try:
                    count = int(query[name])
                except ValueError:
                    raise PostgrestError(400, "PGRST100", f"{name} must be an integer") from None
                statement += sql.SQL(f" {name} {{}}").format(sql.Literal(count))
        statement += sql.SQL(") q")

        async with self._lock:
            conn = await self._connection()
            cur = await conn.execute(statement, args)
            rows = [row[0] for row in await cur.fetchall()]
        end = f"{len(rows) - 1}" if rows else ""
        return _json(rows, headers={"Content-Range": f"0-{end}/*" if rows else "*/*"})

    # --- POST (insert / upsert) ---------------------------------------------------------------

    async def _post(self, request: web.Request) -> web.Response:
        return await self._run(request, self._insert)

    async def _insert(self, request: web.Request, table: str) -> web.Response:
        prefer = {k.strip(): v.strip() for k, _, v in
                  (p.partition("=") for p in request.headers.get("Prefer", "").split(",") if p)}
        try:
            body = json.loads(await request.read() or b"null")
        except ValueError:
            raise PostgrestError(400, "PGRST102", "Empty or invalid json") from None
        rows = body if isinstance(body, list) else [body]
        if not all(isinstance(row, dict) for row in rows):
            raise PostgrestError(400, "PGRST102", "All object keys must match")
        if not rows:
            return _json([], status=201)

        names = _split(request.query["columns"]) if "columns" in request.query else list(rows[0])
        await self._columns_of(table, names)
        conflict = _split(request.query.get("on_conflict", ""))
        resolution = prefer.get("resolution")
        if resolution and not conflict:
            # PostgREST falls back to the primary key; the daemon always names its key.
            conflict = ["id"]
        await self._columns_of(table, conflict)

        cols = sql.SQL(", ").join(sql.Identifier(n) for n in names)
        target = sql.Identifier(self.schema, table)
        statement = sql.SQL(
            "with ins as (insert into {target} ({cols}) select {cols} from "
            "jsonb_populate_recordset(null::{target}, cast({rows} as jsonb))").format(
            target=target, cols=cols, rows=sql.Placeholder())
        if resolution in ("merge-duplicates", "ignore-duplicates"):
            updates = [n for n in names if n not in conflict]
            statement += sql.SQL(" on conflict ({})").format(
                sql.SQL(", ").join(sql.Identifier(n) for n in conflict))
            if resolution == "merge-duplicates" and updates:
                statement += sql.SQL(" do update set ") + sql.SQL(", ").join(
                    sql.SQL("{c} = excluded.{c}").format(c=sql.Identifier(n)) for n in updates)
            else:
                statement += sql.SQL(" do nothing")
        statement += sql.SQL(" returning *) select to_jsonb(ins) from ins")

        async with self._lock:
            conn = await self._connection()
            cur = await conn.execute(statement, [json.dumps(rows)])
            returned = [row[0] for row in await cur.fetchall()]
        if prefer.get("return") == "representation":
            select = request.query.get("select", "*").strip()
            if select != "*":
                wanted = _split(select)
                await self._columns_of(table, wanted)
                returned = [{k: row[k] for k in wanted} for row in returned]
            return _json(returned, status=201)
        return web.Response(status=201)
