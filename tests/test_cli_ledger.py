"""`onceonly ledger …` and `onceonly witness …`, run as real processes against real homes.

1. The offline round trip: checkpoint -> prove -> verify-receipt in another folder, with
   only the receipt, the entry and the printed keys (and no home at all).
2. Altered receipts, uncovered entries and an entry altered in the SQLite file fail with
   exit 1 and one line; `ledger verify` names the altered index.
3. `consistency --json` verifies with `ledger.proofs.verify_consistency`.
4. `witness cosign`: an outside office's witness cosigns the first checkpoint on trust,
   the next with a proof, and refuses a rollback and forks (same key, another tree).
5. `export-tiles` writes a folder a third party verifies; no resident ID or name of the
   synthetic city reaches the ledger store or any exported file.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exchange.home import Home
from exchange.ledgerlink import ConsistencyProof, log_signer, open_log, origin, subject_key
from ledger.checkpoint import CosignatureVerifier, open_checkpoint, verify_cosignature
from ledger.entries import Entry, encode, new_salt, subject_commitment, subject_tag
from ledger.log import Log, parse_receipt
from ledger.note import Signer, Verifier
from ledger.proofs import verify_consistency
from ledger.store import row_seal
from ledger.tiles import verify_entry_from_tiles, verify_tiles

ONCEONLY = Path(sys.executable).with_name("onceonly")


def run(*args: str, home: Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCEONLY_")}
    env["COLUMNS"] = "200"
    env["ONCEONLY_HOME"] = str(home)
    return subprocess.run(
        [str(ONCEONLY), *args], capture_output=True, text=True, env=env, timeout=120, cwd=cwd
    )


def ok(*args: str, home: Path, cwd: Path | None = None) -> str:
    result = run(*args, home=home, cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(*args: str, home: Path, cwd: Path | None = None) -> str:
    """Run a command that must fail: exit 1, one line on stderr, no traceback."""
    result = run(*args, home=home, cwd=cwd)
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and "Traceback" not in result.stderr
    return result.stderr


def publication(n: int) -> Entry:
    return Entry.publication(
        department="health",
        principal="steward:health/li",
        dataset="births",
        dataset_version="1.0.0",
        outcome="answered",
        publication_id=n + 1,
        manifest_digest=bytes([n % 256]) * 32,
    )


def ask(n: int, key: bytes, resident: str = "110105194912310021") -> Entry:
    return Entry.ask(
        department="civil_affairs",
        principal="caseworker:civil_affairs/wang",
        fact_id="person.is_alive",
        fact_version="1.0.0",
        service_matter="pension",
        case_ref=f"CA-2026-{n:06d}",
        outcome="answered",
        answer_digest=bytes([n % 256]) * 32,
        relied_on=(1,),
        subject_tags=(subject_tag(key, resident),),
        subject_commitments=(subject_commitment(resident, new_salt()),),
    )


def append(home: Path, entries: list[Entry]) -> None:
    with open_log(Home(home), cosign=False) as log:
        log.append_many(entries)


def new_home(path: Path) -> Path:
    ok("init", home=path)
    return path


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A home with 9 entries: checkpoints at 3 and 7 (both cosigned), 7 and 8 uncovered."""
    home = new_home(tmp_path_factory.mktemp("exchange") / "home")
    key = subject_key(Home(home))
    append(home, [publication(0), ask(1, key), publication(2)])
    first = ok("ledger", "checkpoint", home=home)
    append(home, [ask(n, key) for n in range(3, 7)])
    second = ok("ledger", "checkpoint", home=home)
    append(home, [publication(7), ask(8, key)])
    vkeys = json.loads(ok("ledger", "vkey", "--json", home=home))
    return {"home": home, "checkpoints": {3: first, 7: second}, "vkeys": vkeys}


# --- 1. the offline round trip -------------------------------------------------------


def test_checkpoint_prints_the_signed_and_cosigned_note(exchange: dict[str, Any]) -> None:
    note, vkeys = exchange["checkpoints"][7], exchange["vkeys"]
    log_key = Verifier.parse(vkeys["log"])
    assert open_checkpoint(note, [log_key], origin=log_key.name).size == 7
    verify_cosignature(note, CosignatureVerifier.parse(vkeys["witness"]), log_verifiers=[log_key])


def test_vkey_prints_both_keys_labelled(exchange: dict[str, Any]) -> None:
    text = ok("ledger", "vkey", home=exchange["home"])
    labelled = dict(line.split(maxsplit=1) for line in text.splitlines())
    assert labelled == {"log:": exchange["vkeys"]["log"], "witness:": exchange["vkeys"]["witness"]}
    assert exchange["vkeys"]["log"].startswith("onceonly.example/exchange+")


def test_the_round_trip_needs_only_receipt_entry_and_keys(
    exchange: dict[str, Any], tmp_path: Path
) -> None:
    home, vkeys = exchange["home"], exchange["vkeys"]
    receipt = ok("ledger", "prove", "--index", "4", home=home)
    assert parse_receipt(receipt).index == 4
    raw = ok("ledger", "show", "--index", "4", "--raw", home=home)
    # Another machine: a folder with three things in it, and no onceonly home anywhere.
    elsewhere = tmp_path / "auditor"
    elsewhere.mkdir()
    (elsewhere / "receipt.txt").write_text(receipt)
    (elsewhere / "entry.b64").write_text(raw)
    (elsewhere / "entry.bin").write_bytes(base64.b64decode(raw))
    nowhere = tmp_path / "no-home"
    # The entry as printed (base64) or as raw bytes; the witness's key, if given, means
    # its cosignature must be there too.
    for entry_file, keys in [
        ("entry.b64", [vkeys["log"]]),
        ("entry.bin", [vkeys["log"], vkeys["witness"]]),
    ]:
        args = ["ledger", "verify-receipt", "receipt.txt", "--entry", entry_file]
        args += [f"--vkey={k}" for k in keys]
        out = ok(*args, home=nowhere, cwd=elsewhere)
        assert out.startswith("receipt verifies: entry 4 in tree of size 7")
    assert not nowhere.exists()  # verifying offline wrote nothing anywhere
    # In the exchange's own home, the entry and the key default to the local ones.
    assert "entry 4 in tree of size 7" in ok(
        "ledger", "verify-receipt", str(elsewhere / "receipt.txt"), home=home
    )


def test_show_decodes_the_entry(exchange: dict[str, Any]) -> None:
    shown = json.loads(ok("ledger", "show", "--index", "4", "--json", home=exchange["home"]))
    assert (shown["index"], shown["kind"], shown["fact_id"]) == (4, "ask", "person.is_alive")
    raw = base64.b64decode(ok("ledger", "show", "--index", "4", "--raw", home=exchange["home"]))
    assert shown["leaf_hash"] == hashlib.sha256(b"\x00" + raw).hexdigest()
    table = ok("ledger", "show", "--index", "4", home=exchange["home"])
    assert "caseworker:civil_affairs/wang" in table and shown["leaf_hash"] in table


# --- 2. what must fail ---------------------------------------------------------------


def _altered_receipts(receipt: str) -> dict[str, str]:
    head, checkpoint = receipt.split("\n\n", 1)
    lines = head.split("\n")
    flipped = base64.b64decode(lines[2])
    lines_flipped = [*lines[:2], base64.b64encode(bytes([flipped[0] ^ 1]) + flipped[1:]).decode()]
    body = checkpoint.split("\n")
    return {
        "flipped proof hash": "\n".join(lines_flipped + lines[3:]) + "\n\n" + checkpoint,
        "another index": receipt.replace("index 4\n", "index 5\n", 1),
        "altered size line": head + "\n\n" + "\n".join([body[0], "8", *body[2:]]),
        "altered root line": head
        + "\n\n"
        + "\n".join([body[0], body[1], base64.b64encode(b"\x01" * 32).decode(), *body[3:]]),
    }


def test_altered_receipts_fail(exchange: dict[str, Any], tmp_path: Path) -> None:
    home, vkeys = exchange["home"], exchange["vkeys"]
    receipt = ok("ledger", "prove", "--index", "4", home=home)
    (tmp_path / "entry").write_text(ok("ledger", "show", "--index", "4", "--raw", home=home))
    for what, altered in _altered_receipts(receipt).items():
        assert altered != receipt, what
        (tmp_path / "receipt").write_text(altered)
        args = ["ledger", "verify-receipt", "receipt", "--entry", "entry", "--vkey", vkeys["log"]]
        stderr = fails(*args, home=tmp_path / "no-home", cwd=tmp_path)
        assert len(stderr.strip().splitlines()) == 1, (what, stderr)
    # The right receipt with another entry's bytes, or under another key, fails too.
    (tmp_path / "receipt").write_text(receipt)
    (tmp_path / "other").write_text(ok("ledger", "show", "--index", "5", "--raw", home=home))
    fails("ledger", "verify-receipt", "receipt", "--entry", "other", "--vkey", vkeys["log"],
          home=tmp_path / "no-home", cwd=tmp_path)  # fmt: skip
    # Another log key of the same name (the origin).
    other_key = Signer.generate(vkeys["log"].split("+")[0]).verifier().verifier_key()
    assert other_key.split("+")[0] == vkeys["log"].split("+")[0] and other_key != vkeys["log"]
    fails("ledger", "verify-receipt", "receipt", "--entry", "entry", "--vkey", other_key,
          home=tmp_path / "no-home", cwd=tmp_path)  # fmt: skip


def test_entries_not_covered_yet_say_what_to_do(exchange: dict[str, Any]) -> None:
    stderr = fails("ledger", "prove", "--index", "7", home=exchange["home"])
    assert "not covered yet, run `onceonly ledger checkpoint`" in stderr
    assert "no entry 9" in fails("ledger", "prove", "--index", "9", home=exchange["home"])


def test_verify_names_an_entry_altered_in_the_sqlite_file(tmp_path: Path) -> None:
    home = new_home(tmp_path / "home")
    append(home, [publication(n) for n in range(8)])
    ok("ledger", "checkpoint", home=home)
    assert ok("ledger", "verify", home=home).startswith("OK: 8 entries, 1 checkpoint(s)")
    store = home / "ledger" / "ledger.sqlite"
    with sqlite3.connect(store) as con:
        (data,) = con.execute("SELECT data FROM entries WHERE idx = 5").fetchone()
        con.execute(
            "UPDATE entries SET data = ? WHERE idx = 5", (data.replace(b"births", b"births"[::-1]),)
        )
    con.close()
    text = run("ledger", "verify", home=home)
    assert text.returncode == 1 and "entry 5: stored leaf hash does not match" in text.stdout
    assert text.stderr.startswith("error: entry 5") and len(text.stderr.splitlines()) == 1
    result = run("ledger", "verify", "--json", home=home)
    report = json.loads(result.stdout)
    assert (result.returncode, report["ok"], report["first_bad_index"]) == (1, False, 5)
    assert report["problems"][0]["index"] == 5


def test_verify_reports_a_store_rewritten_row_and_seal(tmp_path: Path) -> None:
    # Rewritten with its leaf hash and seal, the row agrees with itself: only the signed
    # checkpoint catches it, the store no longer opens, and verify still reports.
    home = new_home(tmp_path / "home")
    append(home, [publication(n) for n in range(4)])
    ok("ledger", "checkpoint", home=home)
    forged = encode(publication(40))
    leaf = hashlib.sha256(b"\x00" + forged).digest()
    with sqlite3.connect(home / "ledger" / "ledger.sqlite") as con:
        con.execute(
            "UPDATE entries SET data = ?, leaf = ?, seal = ? WHERE idx = 2",
            (forged, leaf, row_seal(2, leaf)),
        )
    con.close()
    report = json.loads(run("ledger", "verify", "--json", home=home).stdout)
    assert report["ok"] is False
    assert any("differs from the checkpoint" in p["what"] for p in report["problems"])
    assert "differs from the checkpoint" in fails("ledger", "verify", home=home)


# --- 3. consistency ------------------------------------------------------------------


def test_consistency_json_verifies(exchange: dict[str, Any]) -> None:
    home = exchange["home"]
    log_key = Verifier.parse(exchange["vkeys"]["log"])
    roots = {
        size: open_checkpoint(note, [log_key]).root
        for size, note in exchange["checkpoints"].items()
    }
    proof = json.loads(ok("ledger", "consistency", "--from", "3", "--json", home=home))
    assert set(proof) == {"size1", "size2", "root1", "root2", "proof"}
    assert (proof["size1"], proof["size2"]) == (3, 7)  # --to defaults to the latest checkpoint
    decoded = [base64.b64decode(h) for h in proof["proof"]]
    root1, root2 = base64.b64decode(proof["root1"]), base64.b64decode(proof["root2"])
    assert (root1, root2) == (roots[3], roots[7])  # the roots the checkpoints sign
    verify_consistency(3, 7, decoded, roots[3], roots[7])
    beyond = json.loads(
        ok("ledger", "consistency", "--from", "2", "--to", "9", "--json", home=home)
    )
    ConsistencyProof.from_json(beyond).verify()
    assert "from <= to" in fails("ledger", "consistency", "--from", "8", home=home)
    assert "from <= to" in fails("ledger", "consistency", "--from", "1", "--to", "10", home=home)


# --- 4. the witness ------------------------------------------------------------------


def test_an_outside_witness_cosigns_along_one_history_only(
    exchange: dict[str, Any], tmp_path: Path
) -> None:
    log_vkey = exchange["vkeys"]["log"]
    cp3, cp7 = exchange["checkpoints"][3], exchange["checkpoints"][7]
    office = new_home(tmp_path / "audit-office")
    office_key = CosignatureVerifier.parse(
        json.loads(ok("ledger", "vkey", "--json", home=office))["witness"]
    )
    status = json.loads(
        ok("witness", "status", "--json", "--origin", "onceonly.example/exchange", home=office)
    )
    assert status["size"] is None
    for size, note in exchange["checkpoints"].items():
        (tmp_path / f"cp{size}").write_text(note)

    # The first checkpoint on trust (no proof), checked against the log's key.
    cosigned = ok("witness", "cosign", "cp3", "--log-vkey", log_vkey, home=office, cwd=tmp_path)
    assert cosigned.startswith(cp3.rstrip("\n"))
    verify_cosignature(cosigned, office_key, log_verifiers=[Verifier.parse(log_vkey)])
    # Without the log's key it is not a checkpoint this witness can check.
    assert "witness refused (signature)" in fails(
        "witness", "cosign", "cp7", home=office, cwd=tmp_path
    )
    # The next one needs the proof from where the witness stopped.
    assert "--from 3" in fails(
        "witness", "cosign", "cp7", "--log-vkey", log_vkey, home=office, cwd=tmp_path
    )
    (tmp_path / "p3-7.json").write_text(
        ok("ledger", "consistency", "--from", "3", "--json", home=exchange["home"])
    )
    wrong_start = json.loads((tmp_path / "p3-7.json").read_text()) | {"size1": 2}
    (tmp_path / "p2-7.json").write_text(json.dumps(wrong_start))
    stderr = fails("witness", "cosign", "cp7", "--proof", "p2-7.json", "--log-vkey", log_vkey,
                   home=office, cwd=tmp_path)  # fmt: skip
    assert "needs 3 to 7" in stderr
    cosigned = ok("witness", "cosign", "cp7", "--proof", "p3-7.json", "--log-vkey", log_vkey,
                  home=office, cwd=tmp_path)  # fmt: skip
    verify_cosignature(cosigned, office_key, log_verifiers=[Verifier.parse(log_vkey)])

    # A rollback: the older checkpoint, genuinely signed, is refused.
    stderr = fails("witness", "cosign", "cp3", "--log-vkey", log_vkey, home=office, cwd=tmp_path)
    assert "witness refused (rollback)" in stderr

    # Forks: a second log under the same key, with other entries.
    signer = log_signer(Home(exchange["home"]))
    with Log.open(tmp_path / "fork.sqlite", origin=signer.name, signer=signer) as fork:
        fork.append_many([publication(100 + n) for n in range(7)])
        (tmp_path / "fork7").write_text(fork.checkpoint())  # same size, another root
        fork.append_many([publication(200 + n) for n in range(3)])
        (tmp_path / "fork10").write_text(fork.checkpoint())
        proof = ConsistencyProof(
            7, 10, fork.root(7), fork.root(10), tuple(fork.consistency_proof(7, 10))
        )
        (tmp_path / "fork7-10.json").write_text(json.dumps(proof.to_json()))
    stderr = fails("witness", "cosign", "fork7", "--log-vkey", log_vkey, home=office, cwd=tmp_path)
    assert "witness refused (fork)" in stderr
    forked = ["fork10", "--proof", "fork7-10.json", "--log-vkey", log_vkey]
    stderr = fails("witness", "cosign", *forked, home=office, cwd=tmp_path)
    assert "witness refused (fork)" in stderr

    # Nothing refused moved the witness: it still stands at the exchange's size 7.
    status = json.loads(ok("witness", "status", "--json", "--origin", signer.name, home=office))
    root7 = open_checkpoint(cp7, [Verifier.parse(log_vkey)]).root
    assert (status["size"], status["root"]) == (7, base64.b64encode(root7).decode())


def test_the_homes_own_witness_refuses_a_rollback(exchange: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "cp3").write_text(exchange["checkpoints"][3])
    stderr = fails("witness", "cosign", "cp3", home=exchange["home"], cwd=tmp_path)
    assert "witness refused (rollback)" in stderr
    status = json.loads(ok("witness", "status", "--json", home=exchange["home"]))
    assert (status["origin"], status["size"]) == (origin(Home(exchange["home"])), 7)
    assert f"last cosigned {status['origin']} at size 7" in ok(
        "witness", "status", home=exchange["home"]
    )


def test_a_malformed_proof_file_is_one_line(exchange: dict[str, Any], tmp_path: Path) -> None:
    (tmp_path / "cp7").write_text(exchange["checkpoints"][7])
    for content in (
        "not json",
        '{"size1": 3, "size2": 7, "root1": "x", "root2": "y", "proof": []}',
    ):
        (tmp_path / "proof.json").write_text(content)
        fails(
            "witness", "cosign", "cp7", "--proof", "proof.json", home=exchange["home"], cwd=tmp_path
        )


# --- 5. tiles ------------------------------------------------------------------------


def test_export_tiles_writes_what_a_third_party_verifies(
    exchange: dict[str, Any], tmp_path: Path
) -> None:
    home, out = exchange["home"], tmp_path / "tiles"
    printed = ok("ledger", "export-tiles", "--out", str(out), home=home)
    assert "wrote tile/entries/000.p/7" in printed and "wrote checkpoint" in printed
    log_key = Verifier.parse(exchange["vkeys"]["log"])
    report = verify_tiles(out, [log_key])
    assert report.checkpoint.size == 7  # the latest checkpoint, not the 9 entries
    assert verify_entry_from_tiles(out, 6, [log_key]).size == 7
    again = json.loads(ok("ledger", "export-tiles", "--out", str(out), "--json", home=home))
    assert (again["written"], again["unchanged"], again["size"]) == ([], 3, 7)


def test_export_before_any_checkpoint_says_what_to_do(tmp_path: Path) -> None:
    home = new_home(tmp_path / "home")
    stderr = fails("ledger", "export-tiles", "--out", str(tmp_path / "t"), home=home)
    assert "run `onceonly ledger checkpoint`" in stderr


def _residents(city: Path) -> tuple[set[str], set[str]]:
    """Every resident ID and name in the city's household register."""
    raw = (city / "public_security" / "household_register.csv").read_bytes()
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = raw.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    rows = list(csv.DictReader(io.StringIO(text)))
    ids = {r["id_number"] for r in rows if r.get("id_number")}
    names = {r["name"] for r in rows if r.get("name")}
    return ids, names


def _personal_data_in(folder: Path, ids: set[str], names: set[str]) -> list[str]:
    found = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        for value in ids | names:
            if value.encode("utf-8") in data:
                found.append(f"{path.relative_to(folder)}: {value}")
    return found


def test_no_resident_id_or_name_reaches_the_store_or_the_tiles(tmp_path: Path) -> None:
    from exchange.synth.city import generate_city

    city = tmp_path / "city"
    generate_city(city, persons=200, seed=3)
    ids, names = _residents(city)
    assert len(ids) >= 150 and len(names) >= 50
    home = new_home(tmp_path / "home")
    key = subject_key(Home(home))
    # Every resident is the subject of an ask, as the exchange records one.
    append(
        home, [publication(0), *(ask(n, key, resident) for n, resident in enumerate(sorted(ids)))]
    )
    ok("ledger", "checkpoint", home=home)
    out = tmp_path / "tiles"
    ok("ledger", "export-tiles", "--out", str(out), home=home)
    assert len(list((out / "tile").rglob("*"))) >= 4  # the hash tile and the bundle at least
    assert _personal_data_in(out, ids, names) == []
    assert _personal_data_in(home / "ledger", ids, names) == []
    # The scan itself finds an ID and a name where there is one.
    planted = tmp_path / "planted"
    shutil.copytree(out, planted)
    some_id, some_name = sorted(ids)[0], sorted(names)[0]
    (planted / "tile" / "entries" / "000").write_bytes(
        b"\x00\x12" + some_id.encode() + some_name.encode()
    )
    assert len(_personal_data_in(planted, ids, names)) >= 2
