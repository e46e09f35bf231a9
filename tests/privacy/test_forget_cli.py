"""``beaconlake forget``: records the request and carries it out at once; bad input exits 2."""

from __future__ import annotations

import time

import msgspec
from starlette.testclient import TestClient
from support import free_port, read_lake, write_config

from beaconlake import cli, config
from beaconlake.serve.app import create_app
from beaconlake.up import build_deliverer


def _ev(anon: str, user: str | None = None) -> dict:
    out = {"level": "mid", "name": "page_view", "anonymous_id": anon, "client_ts": int(time.time() * 1000) - 5000}
    return {**out, "user_id": user} if user else out


def test_forget_from_the_command_line(tmp_path, capsys):
    path = write_config(tmp_path, free_port(), {"privacy": {"suppression_refresh_secs": 0.3}})
    settings = config.load(path)
    write_key = settings.tenants[0].write_key
    with TestClient(create_app(settings)) as client:
        body = {"sent_at": int(time.time() * 1000), "events": [_ev("anon-a"), _ev("anon-a", "user-a"), _ev("anon-b")]}
        assert client.post(f"/v1/events?k={write_key}", content=msgspec.json.encode(body),
                           headers={"content-type": "application/json"}).status_code == 200
    d = build_deliverer(settings)
    d.run_once()
    d.close()
    assert {r["anonymous_id"] for r in read_lake(settings.data_path)} == {"anon-a", "anon-b"}

    assert cli.main(["forget", "--config", str(path), "--tenant", "demo", "user-a"]) == 0
    out = capsys.readouterr().out
    assert "carried out: 2 id(s) of the person" in out and "raw 2" in out, out
    assert [r["anonymous_id"] for r in read_lake(settings.data_path)] == ["anon-b"]
    assert cli.main(["forget", "--config", str(path), "--pending"]) == 0
    assert "no pending erasure request" in capsys.readouterr().out


def test_bad_forget_arguments_exit_2_and_say_why(tmp_path, capsys):
    path = str(write_config(tmp_path, free_port()))
    assert cli.main(["forget", "--config", path, "someone"]) == 2
    assert "name the tenant and the person" in capsys.readouterr().err
    assert cli.main(["forget", "--config", path, "--tenant", "nope", "someone"]) == 2
    assert "no tenant 'nope'" in capsys.readouterr().err
    assert cli.main(["forget", "--config", path, "--tenant", "demo", "x" * 129]) == 2
    assert "at most 128 characters" in capsys.readouterr().err
    assert cli.main(["forget", "--config", path, "--pending", "--tenant", "demo"]) == 2
    assert "--pending carries out the recorded requests" in capsys.readouterr().err


def test_a_graph_wider_than_the_limit_is_not_forgotten(tmp_path, capsys):
    """A user id shared by browsers of strangers ("guest") would link them all: over
    privacy.max_person_ids the request stays pending and the command says why."""
    path = write_config(tmp_path, free_port(), {"privacy": {"suppression_refresh_secs": 0, "max_person_ids": 2}})
    settings = config.load(path)
    with TestClient(create_app(settings)) as client:
        body = {"sent_at": int(time.time() * 1000),
                "events": [_ev("anon-a", "guest"), _ev("anon-b", "guest"), _ev("anon-c")]}
        assert client.post(f"/v1/events?k={settings.tenants[0].write_key}", content=msgspec.json.encode(body),
                           headers={"content-type": "application/json"}).status_code == 200
    d = build_deliverer(settings)
    d.run_once()
    d.close()
    assert cli.main(["forget", "--config", str(path), "--tenant", "demo", "anon-a"]) == 1
    assert "NOT carried out: its ids link 3 ids, over privacy.max_person_ids = 2" in capsys.readouterr().out
    assert {r["anonymous_id"] for r in read_lake(settings.data_path)} == {"anon-a", "anon-b", "anon-c"}
    assert cli.main(["forget", "--config", str(path), "--tenant", "demo", "anon-c"]) == 1  # the first is still pending
    out = capsys.readouterr().out
    assert "carried out: 1 id(s) of the person" in out and "NOT carried out" in out
    assert {r["anonymous_id"] for r in read_lake(settings.data_path)} == {"anon-a", "anon-b"}
