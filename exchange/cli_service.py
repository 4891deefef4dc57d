"""`onceonly serve` and `onceonly token …`: the exchange as an HTTP service, a thin edge.

`exchange.cli` imports this module to register the commands; both take the consoles,
the global options and JSON output from `exchange.cli_common`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from exchange.cli_common import JsonOption, out, table
from exchange.cli_common import home as _home

token_app = typer.Typer(
    help="API tokens: issue (shown once, stored as a hash), list, revoke.", no_args_is_help=True
)


@token_app.command("issue")
def token_issue(
    principal: Annotated[
        str, typer.Option("--as", help="steward|caseworker|auditor:<department>/<user>")
    ],
    as_json: JsonOption = False,
) -> None:
    """Issue a token for a principal. The token is printed once; only its hash is kept."""
    from exchange.tokens import TokenStore

    store = TokenStore.open(_home())
    try:
        token, info = store.issue(principal)
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps({"token": token, **info.__dict__}) + "\n")
        return
    out.print(f"token {info.id} for {principal} (shown once; keep it secret):")
    sys.stdout.write(token + "\n")


@token_app.command("list")
def token_list(as_json: JsonOption = False) -> None:
    """Every token issued: id, principal, when, whether revoked (never the token)."""
    from exchange.tokens import TokenStore

    store = TokenStore.open(_home())
    try:
        rows = [t.__dict__ for t in store.list()]
    finally:
        store.close()
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    out.print(table("Tokens", rows, ["id", "principal", "issued_at", "revoked_at"]))


@token_app.command("revoke")
def token_revoke(token_id: Annotated[str, typer.Argument(help="The token's id.")]) -> None:
    """Revoke a token: it stops working at once."""
    from exchange.tokens import TokenStore

    store = TokenStore.open(_home())
    try:
        info = store.revoke(token_id)
    finally:
        store.close()
    out.print(f"revoked token {info.id} of {info.principal}")


DEMO_PRINCIPALS = (
    "caseworker:hrss/demo",
    "caseworker:civil_affairs/demo",
    "caseworker:education/demo",
    "steward:public_security/demo",
    "auditor:audit_office/demo",
)


def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo", help="First generate and publish a synthetic city; print demo tokens."
        ),
    ] = False,
    city: Annotated[Path, typer.Option("--city", help="The demo city's folder.")] = Path("city"),
    persons: Annotated[int, typer.Option("--persons", help="People in the demo city.")] = 10_000,
) -> None:
    """Start the exchange service (API under /v1, console at /console); the one DuckDB writer."""
    import uvicorn

    from exchange.service import SWITCH_INTERVAL, create_app
    from exchange.tokens import TokenStore

    home = _home()
    if demo:
        from exchange.demo import run

        out.print(f"generating and publishing a city of {persons:,} people into {home.root} …")
        run(home, city, persons=persons, seed=7, dirty_rate=0.01)
        store = TokenStore.open(home)
        try:
            out.print("demo tokens (paste one into the console's sign-in):")
            for principal in DEMO_PRINCIPALS:
                token, _ = store.issue(principal)
                sys.stdout.write(f"  {principal:<34} {token}\n")
        finally:
            store.close()
    home.require()
    out.print(f"onceonly service on http://{host}:{port}/console  (API: /v1, /openapi.json)")
    sys.stdout.flush()
    # Many request threads share one interpreter: hand the GIL on every millisecond
    # rather than every 5 (the default), so no ask waits long behind another's work.
    sys.setswitchinterval(SWITCH_INTERVAL)
    # uvloop and httptools (locked, through uvicorn[standard]) named rather than "auto",
    # which would fall back to asyncio and h11 without a word; no access log (at
    # "warning" it prints nothing, yet each request still formats its arguments).
    uvicorn.run(
        create_app(home),
        host=host,
        port=port,
        log_level="warning",
        loop="uvloop",
        http="httptools",
        access_log=False,
    )
