"""The exchange as a service: a real `onceonly serve` process, a real HTTP client.

Every endpoint with every role, 401/403 paths, size limits and malformed bodies; the
OpenAPI document fuzzed by Schemathesis (no 5xx, responses as documented); the
caseworker console driven in a real headless Chromium (Debian's, never downloaded), the
auditor's console over HTTP. The demo's five anomalous asks are planted before the
service starts, so the auditor's alerts have something to find.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from exchange import demo
from exchange.home import Home
from exchange.ledgerlink import log_verifier
from exchange.service import MAX_JSON_BYTES, create_app
from exchange.store import ExchangeStore
from exchange.tokens import TokenStore
from ledger.log import verify_receipt
from ledger.proofs import verify_consistency

CHROMIUM = Path("/usr/bin/chromium")
CASE = "RS-2026-000123"

PRINCIPALS = {
    "caseworker": "caseworker:hrss/zhang",
    "housing": "caseworker:housing/li",
    "steward": "steward:health/chen",
    "other_steward": "steward:education/wu",
    "auditor": "auditor:audit_office/sun",
    "police": "caseworker:public_security/ma",
    "revoked": "caseworker:hrss/gone",
}
# A resident ID anywhere in a text (alerts and the report must hold none).
RESIDENT_ID = re.compile(r"(?<![0-9])[0-9]{17}[0-9X](?![0-9])")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("service")
    home = Home(root / "home")
    demo.run(home, root / "city", persons=2000, seed=7, dirty_rate=0.01)
    planted = demo.audit_summary(home, root / "audit-report.html")  # five anomalous asks
    assert len(planted.planted) == 5
    store = TokenStore.open(home)
    tokens = {role: store.issue(principal)[0] for role, principal in PRINCIPALS.items()}
    store.revoke(tokens["revoked"][3:11])
    store.close()
    with ExchangeStore(home.exchange_db) as exchange_store:
        person, subject = (
            row["id_number"]
            for row in exchange_store.rows(
                'SELECT id_number FROM published."household_register" ORDER BY id_number LIMIT 2'
            )
        )
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "exchange.cli", "--home", str(home.root), "serve",
         "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/openapi.json", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:  # pragma: no cover - a server that never starts
        process.kill()
        raise RuntimeError(
            f"the service did not start: {process.stdout.read() if process.stdout else ''}"
        )
    yield {
        "base": base, "tokens": tokens, "home": home, "root": root, "person": person,
        "subject": subject,  # asked about only by the citizen-report tests
    }  # fmt: skip
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:  # pragma: no cover
        process.kill()


def _client(server: dict[str, Any], role: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server['tokens'][role]}"} if role else {}
    return httpx.Client(base_url=server["base"], headers=headers, timeout=60)


def _ask_body(person: str, **change: Any) -> dict[str, Any]:
    body = {"fact": "person.alive", "params": {"person_id": person},
            "service_matter": "RS-YL-01", "case_ref": CASE}  # fmt: skip
    return body | change


def _is_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["message"]
    assert "Traceback" not in response.text
    return body


# --- authentication and roles ----------------------------------------------------------


@pytest.mark.parametrize("role", [None, "bogus", "revoked"])
def test_no_valid_token_is_401(server: dict[str, Any], role: str | None) -> None:
    headers = {}
    if role == "bogus":
        headers = {"Authorization": "Bearer oo_deadbeef_notatoken"}
    elif role == "revoked":
        headers = {"Authorization": f"Bearer {server['tokens']['revoked']}"}
    for method, path in [("GET", "/v1/facts"), ("POST", "/v1/asks"), ("GET", "/v1/datasets"),
                         ("GET", "/v1/ledger/verify"), ("GET", "/v1/receipts/0"),
                         ("GET", "/v1/audit/alerts"), ("POST", "/v1/audit/citizen-report"),
                         ("GET", "/v1/audit/report"), ("POST", "/v1/audit/verify")]:  # fmt: skip
        response = httpx.request(method, server["base"] + path, headers=headers, json={})
        _is_error(response, 401, "unauthenticated")


@pytest.mark.parametrize(
    ("role", "method", "path"),
    [
        ("steward", "POST", "/v1/asks"),
        ("auditor", "GET", "/v1/facts"),
        ("caseworker", "GET", "/v1/datasets"),
        ("caseworker", "POST", "/v1/ledger/checkpoint"),
        ("steward", "GET", "/v1/ledger/verify"),
        ("auditor", "GET", "/v1/publications"),
        ("caseworker", "GET", "/v1/audit/alerts"),
        ("steward", "GET", "/v1/audit/alerts"),
        ("caseworker", "POST", "/v1/audit/citizen-report"),
        ("steward", "POST", "/v1/audit/citizen-report"),
        ("caseworker", "GET", "/v1/audit/report"),
        ("steward", "GET", "/v1/audit/report"),
        ("caseworker", "POST", "/v1/audit/verify"),
        ("steward", "POST", "/v1/audit/verify"),
    ],
)
def test_a_role_reaches_only_its_endpoints(
    server: dict[str, Any], role: str, method: str, path: str
) -> None:
    with _client(server, role) as client:
        body = _is_error(
            client.request(method, path, json=_ask_body(server["person"])), 403, "forbidden"
        )
    assert "this endpoint is for" in body["message"]


# --- caseworkers -------------------------------------------------------------------------


def test_a_caseworker_asks_and_gets_a_signed_answer_then_a_receipt(server: dict[str, Any]) -> None:
    with _client(server, "caseworker") as client:
        facts = client.get("/v1/facts").json()
        assert {f["id"] for f in facts} >= {"person.alive", "kinship.parent_of"}
        assert client.get("/v1/certificates").status_code == 200
        answer = client.post("/v1/asks", json=_ask_body(server["person"])).json()
        assert answer["fact"] == "person.alive" and isinstance(answer["result"], bool)
        index = answer["ledger_index"]
        _is_error(client.get(f"/v1/receipts/{index}"), 409, "not_yet_covered")
        _is_error(client.get("/v1/receipts/999999"), 404, "not_found")
    with _client(server, "auditor") as auditor:
        assert auditor.post("/v1/ledger/checkpoint").status_code == 200
    with _client(server, "caseworker") as client:
        receipt = client.get(f"/v1/receipts/{index}")
    assert receipt.status_code == 200 and receipt.text.startswith("c2sp.org/tlog-proof@v1")
    with _client(server, "auditor") as auditor:
        proof = auditor.get(f"/v1/ledger/proof/{index}").text
    assert proof == receipt.text


def test_a_policy_refusal_is_403_and_on_the_ledger(server: dict[str, Any]) -> None:
    with _client(server, "housing") as client:
        body = _is_error(
            client.post("/v1/asks", json=_ask_body(server["person"], service_matter="ZJ-GF-01")),
            403, "refused",
        )  # fmt: skip
    assert body["message"] == "no grant for this fact and service matter"
    assert isinstance(body["ledger_index"], int)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ("{not json", 422, "invalid_request"),
        (json.dumps({"fact": "person.alive"}), 422, "invalid_request"),
        (json.dumps({"fact": "x" * 500, "params": {}, "service_matter": "a", "case_ref": "b"}),
         422, "invalid_request"),
        (json.dumps({"fact": "person.alive", "params": [1], "service_matter": "a",
                     "case_ref": "b"}), 422, "invalid_request"),
    ],
)  # fmt: skip
def test_malformed_bodies_are_422_with_a_code(
    server: dict[str, Any], body: str, status: int, code: str
) -> None:
    with _client(server, "caseworker") as client:
        response = client.post(
            "/v1/asks", content=body, headers={"content-type": "application/json"}
        )
    _is_error(response, status, code)


def test_request_bodies_are_size_limited(server: dict[str, Any]) -> None:
    huge = json.dumps(_ask_body(server["person"], case_ref="x" * (2 << 20)))
    with _client(server, "caseworker") as client:
        response = client.post(
            "/v1/asks", content=huge, headers={"content-type": "application/json"}
        )
    _is_error(response, 413, "too_large")


def test_a_batch_upload_returns_the_answers(server: dict[str, Any]) -> None:
    people = [server["person"], "11010519491231002X", "not-an-id"]
    csv = "person_id\n" + "\n".join(people) + "\n"
    with _client(server, "caseworker") as client:
        response = client.post(
            "/v1/asks/batch",
            data={"fact": "person.alive", "service_matter": "RS-YL-01", "case_ref": CASE},
            files={"params": ("pensioners.csv", csv.encode(), "text/csv")},
        )
    assert response.status_code == 200, response.text
    lines = response.text.splitlines()
    assert lines[0].startswith('"person_id","answer","outcome"') and len(lines) == 4
    assert '"refused"' in lines[3]


# --- stewards ----------------------------------------------------------------------------


def test_a_steward_uploads_a_package_signed_by_their_department(
    server: dict[str, Any], tmp_path: Path
) -> None:
    from connectors import load_source
    from exchange.keys import load_private_key
    from exchange.package import DATA, MANIFEST, QUARANTINE, SIGNATURE, build_package

    home: Home = server["home"]
    sources = Path(__file__).resolve().parent.parent / "connectors" / "sources"
    key = load_private_key(home.department_keys / "health.pem")
    package = build_package(
        load_source(sources / "health.deaths.toml"), tmp_path, key, city=server["root"] / "city"
    )
    files = {
        "manifest": (MANIFEST, (package.path / MANIFEST).read_bytes()),
        "signature": (SIGNATURE, (package.path / SIGNATURE).read_bytes()),
        "data": (DATA, (package.path / DATA).read_bytes()),
        "quarantine": (QUARANTINE, (package.path / QUARANTINE).read_bytes()),
    }
    with _client(server, "steward") as client:
        published = client.post("/v1/publications", files=files)
        assert published.status_code == 200, published.text
        assert published.json()["unchanged"] is True  # the demo already published this data
        listed = client.get("/v1/publications").json()
        assert {p["dataset"] for p in listed} == {"births", "deaths"}
        quarantine = client.get(f"/v1/publications/{listed[0]['id']}/quarantine").json()
        assert (
            quarantine["quarantined_rows"] == len(quarantine["violations"])
            or quarantine["violations"]
        )
        # An altered package is refused, whoever uploads it.
        altered = dict(files)
        altered["data"] = (DATA, files["data"][1][:-10] + b"\x00" * 10)
        _is_error(client.post("/v1/publications", files=altered), 422, "package_invalid")
    with _client(server, "other_steward") as other:
        body = _is_error(other.post("/v1/publications", files=files), 403, "forbidden")
        assert "own department" in body["message"]
        _is_error(other.get(f"/v1/publications/{listed[0]['id']}/quarantine"), 404, "not_found")


def test_a_steward_registers_only_their_own_datasets(server: dict[str, Any]) -> None:
    from exchange.contracts import load_contract

    deaths = load_contract("deaths", "1.0.0").schema
    with _client(server, "steward") as client:
        done = client.post("/v1/datasets", json=deaths)
        assert done.status_code == 200 and done.json()["unchanged"] is True
        assert any(d["dataset"] == "deaths" for d in client.get("/v1/datasets").json())
    with _client(server, "other_steward") as other:
        _is_error(other.post("/v1/datasets", json=deaths), 403, "forbidden")


# --- auditors and the public -------------------------------------------------------------


def test_auditors_check_the_ledger_and_anyone_gets_what_third_parties_need(
    server: dict[str, Any],
) -> None:
    with _client(server, "auditor") as auditor:
        note = auditor.post("/v1/ledger/checkpoint").text
        size = int(note.splitlines()[1])
        consistency = auditor.get("/v1/ledger/consistency", params={"size1": 1}).json()
        verified = auditor.get("/v1/ledger/verify").json()
        _is_error(auditor.get("/v1/ledger/consistency", params={"size1": 10**9}), 422,
                  "invalid_request")  # fmt: skip
    assert verified["ok"] is True and verified["size"] >= size
    verify_consistency(
        consistency["size1"], consistency["size2"],
        [base64.b64decode(h) for h in consistency["proof"]],
        base64.b64decode(consistency["root1"]), base64.b64decode(consistency["root2"]),
    )  # fmt: skip
    public = httpx.get(server["base"] + "/v1/public/checkpoint")
    assert public.status_code == 200 and public.text.startswith("onceonly.example/exchange\n")
    vkeys = httpx.get(server["base"] + "/v1/public/vkeys").json()
    assert vkeys["log"] == log_verifier(server["home"]).verifier_key()
    traversal = httpx.get(server["base"] + "/v1/public/tiles/..%2F..%2Fkeys%2Fexchange-log.pem")
    assert traversal.status_code == 404


def test_a_receipt_from_the_api_verifies_offline(server: dict[str, Any]) -> None:
    with _client(server, "caseworker") as client:
        index = client.post("/v1/asks", json=_ask_body(server["person"])).json()["ledger_index"]
    with _client(server, "auditor") as auditor:
        auditor.post("/v1/ledger/checkpoint")
    with _client(server, "caseworker") as client:
        receipt = client.get(f"/v1/receipts/{index}").text
    with _client(server, "auditor") as auditor:
        raw = auditor.get(f"/v1/ledger/entries/{index}").json()["raw"]
    entry = base64.b64decode(raw)
    verify_receipt(receipt, entry, log_verifier(server["home"]))  # receipt, entry, key: enough
    with pytest.raises(Exception, match=r"(?i)proof|mismatch|verify|leaf"):
        verify_receipt(receipt, entry + b"x", log_verifier(server["home"]))


def test_auditors_get_the_e_supervision_alerts(server: dict[str, Any]) -> None:
    with _client(server, "auditor") as auditor:
        response = auditor.get("/v1/audit/alerts")
        assert response.status_code == 200, response.text
        found = response.json()
        night = next(a for a in found if a["rule"] == "off_hours")
        # ``since`` is a local (Beijing) date: 02:13 local is the previous day in UTC.
        local = dt.datetime.strptime(night["last_time"], "%Y-%m-%dT%H:%M:%SZ") + dt.timedelta(
            hours=8
        )
        on_the_day = auditor.get("/v1/audit/alerts", params={"since": str(local.date())}).json()
        after = auditor.get(
            "/v1/audit/alerts", params={"since": str(local.date() + dt.timedelta(days=1))}
        ).json()
        for since in ("2026-13-01", "1969-12-31", "yesterday"):
            _is_error(auditor.get("/v1/audit/alerts", params={"since": since}), 422,
                      "invalid_request")  # fmt: skip
    # The demo's plants, each raised by its rule (the risk rule needs the staff register
    # and the families, read here through the serving process's own database).
    raised = {(a["rule"], a["card"], tuple(a["principals"])) for a in found}
    assert raised >= {
        ("self_or_relative", "red", ("caseworker:civil_affairs/liu",)),
        ("off_hours", "red", ("caseworker:hrss/night",)),
        ("burst", "yellow", ("caseworker:housing/zhao",)),
        ("repeated_refusals", "yellow", ("caseworker:education/qian",)),
        ("case_ref_reused", "red", ("caseworker:housing/zhou", "caseworker:hrss/sun")),
    }
    for alert in found:
        assert set(alert) == {"rule", "kind", "card", "indexes", "principals", "departments",
                              "first_time", "last_time", "message"}  # fmt: skip
        assert alert["indexes"] == sorted(alert["indexes"]) and alert["indexes"]
    assert night in on_the_day and night not in after
    assert not RESIDENT_ID.search(response.text)


def test_auditors_get_a_citizen_report_by_post_with_embargoed_asks(
    server: dict[str, Any],
) -> None:
    subject = server["subject"]
    with _client(server, "caseworker") as client:
        asked = client.post("/v1/asks", json=_ask_body(subject)).json()["ledger_index"]
    covert = _ask_body(subject, service_matter="GA-XZ-01", case_ref="GA-2026-0042",
                       embargo_until="2099-01-01")  # fmt: skip
    with _client(server, "police") as police:
        hidden = police.post("/v1/asks", json=covert)
        assert hidden.status_code == 200, hidden.text
    with _client(server, "auditor") as auditor:
        response = auditor.post("/v1/audit/citizen-report", json={"resident_id": subject})
        assert response.status_code == 200, response.text
        report = response.json()
        before = auditor.post(
            "/v1/audit/citizen-report", json={"resident_id": subject, "as_of": "2000-01-01"}
        ).json()
        wrong_check = subject[:17] + ("0" if subject[17] != "0" else "1")
        for body in ({"resident_id": "abc"}, {"resident_id": wrong_check},
                     {"resident_id": subject, "as_of": "1969-12-31"}, {"resident_id": 42},
                     {"as_of": "2026-01-01"}):  # fmt: skip
            problem = _is_error(auditor.post("/v1/audit/citizen-report", json=body), 422,
                                "invalid_request")  # fmt: skip
            assert subject not in problem["message"]
    assert report["view"] == "auditor"
    by_index = {a["index"]: a for a in report["asks"]}
    assert asked in by_index and by_index[asked]["principal"] == PRINCIPALS["caseworker"]
    assert by_index[asked]["outcome"] == "answered" and by_index[asked]["case_ref"] == CASE
    embargoed = by_index[hidden.json()["ledger_index"]]
    assert embargoed["embargo_until"] == "2099-01-01"
    assert embargoed["principal"] == PRINCIPALS["police"]
    assert report["embargoed"] >= 1
    assert before["asks"] == [] and before["as_of"].startswith("2000-01-01T15:59:59")


def test_auditors_get_the_audit_report_as_html(server: dict[str, Any]) -> None:
    with _client(server, "auditor") as auditor:
        response = auditor.get("/v1/audit/report")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    assert page.startswith("<!DOCTYPE html>") and page.count("<svg") >= 5
    assert "caseworker:hrss/night" in page and "case reference RS-2026-0700" in page
    assert "<script" not in page and "http://" not in page.replace("http://www.w3.org/", "")
    assert not RESIDENT_ID.search(page)


def test_auditors_verify_packages_and_re_derive_answers(server: dict[str, Any]) -> None:
    with _client(server, "auditor") as auditor:
        first = auditor.post("/v1/audit/verify", json={"sample": 3, "seed": 11}).json()
        again = auditor.post("/v1/audit/verify", json={"sample": 3, "seed": 11}).json()
        every = auditor.post("/v1/audit/verify", json={"sample": None}).json()
        default = auditor.post("/v1/audit/verify")
        for body in ({"sample": -1}, {"seed": "x"}, {"sample": 1.5}):
            _is_error(auditor.post("/v1/audit/verify", json=body), 422, "invalid_request")
    assert first["ok"] is True and first["findings"] == [], first["findings"]
    assert first["seed"] == 11 and first["rederived"] == 3 and len(first["sample"]) == 3
    assert again["sample"] == first["sample"]  # the same seed draws the same asks
    assert first["publications_checked"] >= 1
    assert every["ok"] is True and every["rederived"] == every["answered_asks"] >= 40
    assert default.status_code == 200 and default.json()["ok"] is True


def test_the_auditor_console_shows_alerts_charts_and_a_citizen_report(
    server: dict[str, Any],
) -> None:
    with _client(server, None) as anonymous:
        login = anonymous.post(
            "/console/login", data={"token": server["tokens"]["auditor"]}, follow_redirects=False
        )
    assert login.status_code == 303 and "httponly" in login.headers["set-cookie"].lower()
    with _client(server, "caseworker") as client:
        asked = client.post("/v1/asks", json=_ask_body(server["subject"])).json()["ledger_index"]
    cookies = {"onceonly_token": server["tokens"]["auditor"]}
    with httpx.Client(base_url=server["base"], cookies=cookies, timeout=60) as console:
        page = console.get("/console/auditor")
        download = console.get("/console/auditor/report")
        shown = console.post(
            "/console/auditor/citizen-report", data={"resident_id": server["subject"]}
        )
        refused = console.post("/console/auditor/citizen-report", data={"resident_id": "abc"})
    assert page.status_code == 200
    alerts = page.text.split("<table id='alerts'>", 1)[1].split("</table>", 1)[0]
    assert "off_hours" in alerts and "caseworker:hrss/night" in alerts and "red" in alerts
    assert page.text.count("<svg") >= 5 and "href='/console/auditor/report'" in page.text
    assert "<script" not in page.text and not RESIDENT_ID.search(page.text)
    assert download.status_code == 200 and "<svg" in download.text
    assert download.headers["content-disposition"].startswith("attachment;")
    assert shown.status_code == 200 and f"<td>{asked}</td>" in shown.text
    assert "citizen-problem" in refused.text and "not valid" in refused.text
    with httpx.Client(
        base_url=server["base"], cookies={"onceonly_token": server["tokens"]["caseworker"]}
    ) as other:
        assert "This page is for auditors" in other.get("/console/auditor").text


def test_console_forms_posted_from_another_site_are_refused(server: dict[str, Any]) -> None:
    """Cross-site request forgery: the login (no cookie guards it) and every other form."""
    token = server["tokens"]["caseworker"]
    foreign = [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site", "Origin": server["base"]},
    ]
    with _client(server, None) as browser:
        for headers in foreign:
            login = browser.post(
                "/console/login", data={"token": token}, headers=headers, follow_redirects=False
            )
            assert login.status_code == 403, headers
            assert "set-cookie" not in login.headers and login.json()["code"] == "http_error"
        own = {"Origin": server["base"], "Sec-Fetch-Site": "same-origin"}
        signed_in = browser.post(
            "/console/login", data={"token": token}, headers=own, follow_redirects=False
        )
        assert signed_in.status_code == 303 and "set-cookie" in signed_in.headers
    size = httpx.get(server["base"] + "/v1/public/health", timeout=10).json()["ledger_size"]
    form = {"certificate": "alive", "person_id": server["subject"],
            "service_matter": "RS-YL-01", "case_ref": CASE}  # fmt: skip
    with httpx.Client(base_url=server["base"], cookies={"onceonly_token": token}) as console:
        forged = console.post(
            "/console/caseworker/ask", data=form, headers={"Origin": "http://evil.example"}
        )
        assert forged.status_code == 403
    # Refused before anything ran: no ask was made, so none was ledgered.
    after = httpx.get(server["base"] + "/v1/public/health", timeout=10).json()["ledger_size"]
    assert after == size


# --- fuzzing and a browser ---------------------------------------------------------------


@pytest.mark.parametrize("role", ["caseworker", "auditor", "steward"])
def test_schemathesis_finds_no_server_errors(server: dict[str, Any], role: str) -> None:
    st = Path(sys.executable).parent / "st"
    result = subprocess.run(
        [str(st), "run", f"{server['base']}/openapi.json",
         "--header", f"Authorization: Bearer {server['tokens'][role]}",
         "--checks", "not_a_server_error,response_schema_conformance",
         "--max-examples", "15", "--generation-deterministic",
         "--exclude-path-regex", "^/v1/(ledger/checkpoint|publications)$"],
        capture_output=True, text=True, timeout=600, check=False, cwd=server["root"],
        env={**os.environ, "SCHEMATHESIS_HOOKS": ""},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason="no Chromium at /usr/bin/chromium (apt install chromium)"
)
def test_a_caseworker_replaces_a_certificate_in_the_browser(server: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(server["base"] + "/console")
        page.fill("#token", server["tokens"]["caseworker"])
        page.click("#sign-in")
        page.select_option("#certificate", "alive")
        page.click("#choose")
        page.fill("#param_person_id", server["person"])
        page.fill("#case_ref", CASE)
        page.click("#ask")
        answer = page.text_content("#answer")
        index = page.text_content("#ledger-index")
        with page.expect_download() as download:
            page.click("#download")
        receipt = Path(download.value.path()).read_text()
        browser.close()
    assert answer in ("true", "false")
    assert index is not None and index.isdigit()
    assert receipt.startswith("onceonly answer receipt v1\n") and f"index {index}\n" in receipt


def test_answer_fields_are_the_documented_ones() -> None:
    """`POST /v1/asks` returns `Answer.to_dict` as is: it must be exactly `AnswerOut`."""
    import dataclasses

    from exchange.ask import Answer
    from exchange.service import AnswerOut

    answer = Answer(
        fact="person.alive", version="1.0.0", result=True, relied_on=(3, 1),
        ledger_index=7, time="2026-07-01T09:30:00Z", params={"person_id": "X"},
        nonce="00" * 16, digest="11" * 32, receipt="r",
    )  # fmt: skip
    out = answer.to_dict()
    assert set(out) == set(AnswerOut.model_fields) == {f.name for f in dataclasses.fields(Answer)}
    assert AnswerOut.model_validate(out).model_dump() == out
    assert out["relied_on"] == [3, 1] and out["params"] is not answer.params


# --- body limits, over ASGI (no server, no lifespan) ---------------------------------

_CHUNK = 64 << 10


def _asgi_post(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], chunks: list[bytes]
) -> tuple[int, int]:
    """POST ``chunks`` as the ASGI server hands a body over; (status, bytes the app pulled)."""
    pulled = 0
    pending = list(chunks)
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if not pending:
            return {"type": "http.disconnect"}
        body = pending.pop(0)
        pulled += len(body)
        return {"type": "http.request", "body": body, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 80),
    }
    asyncio.run(app(scope, receive, send))
    return status, pulled


def test_a_chunked_json_body_is_held_to_the_json_limit(tmp_path: Path) -> None:
    """No Content-Length (Transfer-Encoding: chunked): the body is counted as it is read.

    uvicorn has no body limit of its own, and FastAPI reads the whole JSON body before
    the auth dependency runs, so without the count an unauthenticated client could make
    the service buffer any amount. Driven over ASGI without the lifespan: the body is
    read before any dependency, so no exchange is needed.
    """
    app = create_app(Home(tmp_path / "home"))
    body = json.dumps({"fact": "person.alive", "params": {}, "pad": "x" * (4 << 20)}).encode()
    chunks = [body[i : i + _CHUNK] for i in range(0, len(body), _CHUNK)]
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    status, pulled = _asgi_post(app, "/v1/asks", headers, chunks)
    assert pulled <= MAX_JSON_BYTES + _CHUNK, f"the app read {pulled} bytes (status {status})"
    assert status == 413


def test_the_word_multipart_in_a_json_content_type_lifts_the_json_limit(tmp_path: Path) -> None:
    """Only a real ``multipart/form-data`` body gets the upload limit."""
    app = create_app(Home(tmp_path / "home"))
    body = json.dumps({"fact": "person.alive", "pad": "x" * (2 << 20)}).encode()
    headers = [
        (b"content-type", b"application/json; x=multipart"),
        (b"content-length", str(len(body)).encode()),
    ]
    status, pulled = _asgi_post(app, "/v1/asks", headers, [body])
    assert status == 413, f"status {status}, the app read {pulled} bytes"


def test_a_chunked_body_within_the_limit_reaches_the_application(tmp_path: Path) -> None:
    """Counting must not get in the way: under the limit, the request goes on (to 401)."""
    app = create_app(Home(tmp_path / "home"))
    body = json.dumps({"fact": "person.alive", "params": {}}).encode()
    headers = [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")]
    status, pulled = _asgi_post(app, "/v1/asks", headers, [body[:10], body[10:]])
    assert (status, pulled) == (401, len(body))


def test_health_says_when_the_answer_tables_are_ready(server: dict[str, Any]) -> None:
    """The serving process precomputes one-resident facts; readiness is public, sizes not."""
    deadline = time.monotonic() + 60
    while True:
        health = httpx.get(server["base"] + "/v1/public/health", timeout=10).json()
        if "person.alive@1.0.0" in health["answer_tables"] or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert health["status"] == "ok" and health["ledger_size"] > 0
    assert "person.alive@1.0.0" in health["answer_tables"]
    assert "kinship.parent_of@1.0.0" not in health["answer_tables"]  # two residents
    assert isinstance(health["answer_tables_pending"], int)
    # An ask answered from the table is the whole ask: ledgered, with its receipt.
    with _client(server, "caseworker") as http:
        answer = http.post("/v1/asks", json=_ask_body(server["person"])).json()
    assert answer["result"] is True and answer["receipt"] and answer["ledger_index"] >= 0


def test_upload_package_reports_the_services_refusal(
    server: dict[str, Any], tmp_path: Path
) -> None:
    """`exchange.upload`: the service's stable code comes back; nothing is published."""
    from exchange.package import DATA, MANIFEST, QUARANTINE, SIGNATURE
    from exchange.upload import UploadRefused, upload_package

    package = tmp_path / "package"
    package.mkdir()
    for name in (MANIFEST, SIGNATURE, DATA, QUARANTINE):
        (package / name).write_bytes(b"{}" if name == MANIFEST else b"x")
    with pytest.raises(UploadRefused) as bad_token:
        upload_package(server["base"], "oo_deadbeef_notatoken", package)
    assert (bad_token.value.status, bad_token.value.code) == (401, "unauthenticated")
    with pytest.raises(UploadRefused) as not_theirs:  # a manifest of no department of theirs
        upload_package(server["base"], server["tokens"]["steward"], package)
    assert (not_theirs.value.status, not_theirs.value.code) == (403, "forbidden")
    with pytest.raises(UploadRefused) as nobody:
        upload_package(f"http://127.0.0.1:{_free_port()}", "oo_x_y", package, timeout=5)
    assert (nobody.value.status, nobody.value.code) == (0, "unreachable")
