"""beaconlake's own /v1/events: an event that names its end user (context.ip, context.userAgent)
is enriched with them, not with the sending server's."""

from __future__ import annotations

import msgspec
from door_harness import Door, body, event

PHONE_UA = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Version/17.0 Mobile/15E148 Safari/604.1"
BACKEND = {"content-type": "application/json", "user-agent": "python-requests/2.32.3"}


def test_server_side_event_with_the_users_context_is_not_a_bot(tmp_path):
    door = Door(tmp_path)
    answer = door.post(body(event(context={"ip": "198.51.100.9", "userAgent": PHONE_UA, "locale": "en-GB"}),
                            event(name="from_backend_itself")), headers=BACKEND)
    assert answer.status == 200 and answer.json["accepted"] == 2
    rows = {r["name"]: r for r in door.spooled().rows}
    person, server = rows["page_view"], rows["from_backend_itself"]
    assert (person["ip"], person["user_agent"], person["ua_os"], person["is_bot"]) == ("198.51.100.0", PHONE_UA, "iOS", False)
    assert msgspec.json.decode(person["context"]) == {"locale": "en-GB"}  # the full address is never stored
    assert (server["user_agent"], server["is_bot"]) == ("python-requests/2.32.3", True)
    assert {person["source"], server["source"]} == {"http"}
    door.close()


def test_not_an_address_is_dropped_and_a_non_string_left_alone(tmp_path):
    door = Door(tmp_path, collector={"anonymize_ip": False})
    door.post(body(event(context={"ip": "not-an-ip", "userAgent": PHONE_UA}), event(name="odd", context={"ip": 7})),
              headers=BACKEND)
    rows = {r["name"]: r for r in door.spooled().rows}
    assert (rows["page_view"]["ip"], rows["page_view"]["is_bot"]) == (None, False)
    assert msgspec.json.decode(rows["odd"]["context"]) == {"ip": 7} and rows["odd"]["is_bot"] is True
    door.close()


def test_tracker_events_are_sourced_beaconlake_js(tmp_path):
    door = Door(tmp_path)
    door.post(body(event(context={"library": {"name": "beaconlake.js", "version": "1"}})))
    assert door.spooled().rows[0]["source"] == "beaconlake.js"
    door.close()
