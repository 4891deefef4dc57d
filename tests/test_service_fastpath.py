"""The fast path of `POST /v1/asks` answers as the FastAPI route does; tokens revoke at once.

A real uvicorn server (uvloop, httptools, as `onceonly serve` runs it) in a thread of
this process, on 127.0.0.1, so the tests can read the fast path's counter off the app;
a real HTTP client. The fast path takes only ``Content-Type: application/json``; the
same ask with ``application/json; charset=utf-8`` reaches the FastAPI route, which
makes the two comparable request by request.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from exchange import demo
from exchange.home import Home
from exchange.service import MAX_JSON_BYTES, create_app
from exchange.store import ExchangeStore
from exchange.tokens import TokenStore

FAST = {"content-type": "application/json"}
ROUTE = {"content-type": "application/json; charset=utf-8"}
PRINCIPALS = {
    "caseworker": "caseworker:hrss/zhang",
    "housing": "caseworker:housing/li",
    "steward": "steward:health/chen",
    "to_revoke": "caseworker:hrss/leaving",
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("fastpath")
    home = Home(root / "home")
    demo.run(home, root / "city", persons=300, seed=7, dirty_rate=0.0)
    store = TokenStore.open(home)
    tokens = {role: store.issue(principal) for role, principal in PRINCIPALS.items()}
    store.close()
    with ExchangeStore(home.exchange_db) as exchange_store:
        person = exchange_store.rows(
            'SELECT id_number FROM published."household_register" ORDER BY id_number LIMIT 1'
        )[0]["id_number"]
    app = create_app(home)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", loop="uvloop", http="httptools"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the server did not start"
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield {
            "base": f"http://127.0.0.1:{port}", "app": app, "home": home, "person": person,
            "tokens": {role: token for role, (token, _) in tokens.items()},
            "ids": {role: info.id for role, (_, info) in tokens.items()},
        }  # fmt: skip
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def _ask(person: str, **change: Any) -> dict[str, Any]:
    body = {"fact": "person.alive", "params": {"person_id": person},
            "service_matter": "RS-YL-01", "case_ref": "RS-2026-000123"}  # fmt: skip
    return body | change


def _post(
    served: dict[str, Any], role: str | None, content: bytes, headers: dict[str, str]
) -> tuple[httpx.Response, int]:
    """POST /v1/asks; (the response, how many asks the fast path answered meanwhile)."""
    if role is not None:
        headers = headers | {"authorization": f"Bearer {served['tokens'][role]}"}
    before = served["app"].state.fast_asks
    response = httpx.post(served["base"] + "/v1/asks", content=content, headers=headers)
    return response, served["app"].state.fast_asks - before


def _both(
    served: dict[str, Any], role: str | None, content: bytes
) -> tuple[httpx.Response, httpx.Response]:
    """The same request through the fast path and through the route; checks who served."""
    fast, served_fast = _post(served, role, content, FAST)
    route, served_route = _post(served, role, content, ROUTE)
    assert (served_fast, served_route) == (1, 0), "the fast path answered the first only"
    return fast, route


def _same_headers(fast: httpx.Response, route: httpx.Response) -> None:
    drop = {"date", "content-length"}  # the clock; an index one digit longer
    assert {k: v for k, v in fast.headers.items() if k not in drop} == {
        k: v for k, v in route.headers.items() if k not in drop
    }


def test_an_answer_from_the_fast_path_is_the_routes(served: dict[str, Any]) -> None:
    content = httpx.Request("POST", "/", json=_ask(served["person"])).content
    fast, route = _both(served, "caseworker", content)
    assert fast.status_code == route.status_code == 200, (fast.text, route.text)
    _same_headers(fast, route)
    a, b = fast.json(), route.json()
    assert list(a) == list(b)  # the same fields in the same order
    for same in ("fact", "version", "result", "relied_on", "params"):
        assert a[same] == b[same]
    assert b["ledger_index"] == a["ledger_index"] + 1  # each its own durable entry
    assert a["nonce"] != b["nonce"] and a["receipt"] and b["receipt"]


def test_a_policy_refusal_from_the_fast_path_is_the_routes(served: dict[str, Any]) -> None:
    content = httpx.Request(
        "POST", "/", json=_ask(served["person"], service_matter="ZJ-GF-01")
    ).content
    fast, route = _both(served, "housing", content)
    assert fast.status_code == route.status_code == 403, (fast.text, route.text)
    _same_headers(fast, route)
    a, b = fast.json(), route.json()
    assert a["code"] == b["code"] == "refused" and a["message"] == b["message"]
    assert b["ledger_index"] == a["ledger_index"] + 1  # refusals are ledgered, once each
    assert {k: v for k, v in a.items() if k != "ledger_index"} == {
        k: v for k, v in b.items() if k != "ledger_index"
    }


def test_an_unanswerable_ask_from_the_fast_path_is_the_routes(served: dict[str, Any]) -> None:
    """An error raised by the library: the route's exception handler, from the fast path."""
    content = httpx.Request("POST", "/", json=_ask(served["person"], as_of=1)).content
    fast, route = _both(served, "caseworker", content)
    assert fast.status_code == route.status_code == 409, (fast.text, route.text)
    a, b = fast.json(), route.json()
    assert a["code"] == b["code"] == "not_answerable" and a["message"] == b["message"]
    assert b["ledger_index"] == a["ledger_index"] + 1


@pytest.mark.parametrize(
    ("role", "content", "status"),
    [
        ("caseworker", b"{not json", 422),
        ("caseworker", b'{"fact": "person.alive"}', 422),
        (
            "caseworker",
            b'{"fact": "person.alive", "params": [1], "service_matter": "a", "case_ref": "b"}',
            422,
        ),
        ("caseworker", b"", 422),
        (None, b"ASK", 401),
        ("steward", b"ASK", 403),
    ],
)
def test_what_the_fast_path_does_not_take_the_route_answers(
    served: dict[str, Any], role: str | None, content: bytes, status: int
) -> None:
    """Bad bodies, no token, another role: handed on (body replayed), answered by the route."""
    if content == b"ASK":
        content = httpx.Request("POST", "/", json=_ask(served["person"])).content
    fast, served_fast = _post(served, role, content, FAST)
    route, _ = _post(served, role, content, ROUTE)
    assert served_fast == 0
    assert fast.status_code == route.status_code == status
    _same_headers(fast, route)
    assert fast.content == route.content  # byte for byte: the route answered both


def test_a_bogus_token_is_refused_by_the_route(served: dict[str, Any]) -> None:
    content = httpx.Request("POST", "/", json=_ask(served["person"])).content
    headers = FAST | {"authorization": "Bearer oo_deadbeef_notatoken"}
    before = served["app"].state.fast_asks
    response = httpx.post(served["base"] + "/v1/asks", content=content, headers=headers)
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"
    assert served["app"].state.fast_asks == before


def test_a_token_revoked_by_the_cli_fails_at_once(served: dict[str, Any]) -> None:
    """The server remembers verified tokens; a revocation in another process still counts."""
    content = httpx.Request("POST", "/", json=_ask(served["person"])).content
    for _ in range(3):  # remembered by now
        assert _post(served, "to_revoke", content, FAST)[0].status_code == 200
    subprocess.run(
        [sys.executable, "-m", "exchange.cli", "--home", str(served["home"].root),
         "token", "revoke", served["ids"]["to_revoke"]],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    response, served_fast = _post(served, "to_revoke", content, FAST)
    assert response.status_code == 401 and response.json()["code"] == "unauthenticated"
    assert served_fast == 0


def test_a_chunked_body_the_fast_path_reads_is_held_to_the_json_limit(tmp_path: Path) -> None:
    """With a token, the fast path reads the body itself: still inside `_BodyLimit` (413)."""
    app = create_app(Home(tmp_path / "home"))
    body = json.dumps({"fact": "person.alive", "params": {}, "pad": "x" * (4 << 20)}).encode()
    chunks = [body[i : i + (64 << 10)] for i in range(0, len(body), 64 << 10)]
    pulled, sent = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if not chunks:
            return {"type": "http.disconnect"}
        pulled += len(chunks[0])
        return {"type": "http.request", "body": chunks.pop(0), "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked"),
               (b"authorization", b"Bearer oo_deadbeef_x")]  # fmt: skip
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/asks", "raw_path": b"/v1/asks",
             "query_string": b"", "root_path": "", "headers": headers,
             "client": ("127.0.0.1", 1234), "server": ("127.0.0.1", 80)}  # fmt: skip
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and json.loads(sent[1]["body"])["code"] == "too_large"
    assert pulled <= MAX_JSON_BYTES + (64 << 10)
