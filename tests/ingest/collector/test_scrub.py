"""The PII scrubber's rules on their own, and the invariants Hypothesis hunts: no Luhn-valid
card number or e-mail address survives, and an event with nothing to scrub is left as it is."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from beaconlake.ingest.collector.scrub import EMAIL, Scrubber, luhn
from beaconlake.privacy.settings import PiiSettings
from beaconlake.types import ClientEvent


def scrubber(**rules) -> Scrubber:
    return Scrubber(PiiSettings(**rules), lambda: (lambda v: "0123456789abcdef" + v[:4]))


def event(**fields) -> ClientEvent:
    return ClientEvent(level="mid", name="page_view", anonymous_id="a1", **fields)


def test_luhn():
    assert luhn("4111111111111111") and luhn("5500005555555559") and not luhn("4111111111111112")


def test_each_rule_in_urls_titles_and_props():
    s = scrubber(hash_query_params=["uid"], drop_props=["password"], hash_props=["customer"], drop_context=["ip_hint"],
                 redact_phones=True)
    ev = event(
        url="https://shop.example/reset?email=ann%40mail.example&page=2&uid=42#access_token=abc&state=x",
        referrer="https://mail.example/?to=ann@mail.example",
        title="Order for bob@mail.example, card 4111 1111 1111 1111, call +33 6 12 34 56 78",
        props=msgspec.Raw(msgspec.json.encode({"password": "hunter2", "customer": "C-9", "note": "4111-1111-1111-1111",
                                               "nested": [{"password": "x", "order": "1234567890123456"}]})),
        context=msgspec.Raw(b'{"ip_hint": "1.2.3.4", "locale": "fr"}'),
    )
    out = s.event(ev)
    assert out.url == "https://shop.example/reset?page=2&uid=h_0123456789abcdef#state=x"
    assert out.referrer == "https://mail.example/?to=[email]"
    assert out.title == "Order for [email], card [card], call [phone]"
    assert msgspec.json.decode(out.props) == {"customer": "h_0123456789abcdef", "note": "[card]",
                                              "nested": [{"order": "1234567890123456"}]}  # not Luhn-valid: an order number
    assert msgspec.json.decode(out.context) == {"locale": "fr"}
    assert dict(s.take_counts()) == {"query_param": 2, "query_param_hash": 1, "email": 2, "card": 2, "phone": 1,
                                     "prop_drop": 2, "prop_hash": 1, "context_drop": 1}


def test_nothing_to_scrub_leaves_the_event_and_the_body_alone():
    s = scrubber()
    ev = event(url="https://shop.example/p/1?page=2", title="Tents", props=msgspec.Raw(b'{"price": 99, "sku": "T-1"}'))
    assert s.event(ev) is ev and not s.take_counts()


def test_disabled_detectors_leave_their_matches():
    s = scrubber(redact_emails=False, redact_cards=False, drop_query_params=[])
    ev = event(url="https://x.example/?email=a@b.example", title="4111 1111 1111 1111")
    assert s.event(ev) is ev


@settings(max_examples=200, deadline=None)
@given(prefix=st.text(max_size=30), card=st.sampled_from(["4111111111111111", "5500005555555559", "378282246310005"]),
       sep=st.sampled_from(["", " ", "-"]), user=st.from_regex(r"[a-z][a-z0-9.]{0,10}", fullmatch=True),
       suffix=st.text(max_size=30))
def test_no_card_number_or_email_survives(prefix, card, sep, user, suffix):
    shown = sep.join(card[i:i + 4] for i in range(0, len(card), 4))
    text = f"{prefix} {shown} {user}@mail.example {suffix}"
    out = scrubber().text(text)
    assert card not in out.replace(" ", "").replace("-", "") and not EMAIL.search(out)


def test_an_escaped_email_in_the_body_is_found_too():
    from beaconlake.ingest.collector.validate import Checked, decode_envelope

    body = b'{"events":[{"level":"mid","name":"search","anonymous_id":"a1","props":{"q":"ann\\u0040mail.example"}}]}'
    checked = decode_envelope(body, 32)
    out = scrubber().batch(Checked(list(checked.typed), [], body), body)
    assert msgspec.json.decode(out.accepted[0].props) == {"q": "[email]"}
    assert b"mail.example" not in out.body
    plain = b'{"events":[{"level":"mid","name":"search","anonymous_id":"a1","props":{"q":"tents"}}]}'
    checked = Checked(list(decode_envelope(plain, 32).typed), [], plain)
    assert scrubber().batch(checked, plain) is checked


def test_a_key_spelled_with_json_escapes_is_dropped_or_hashed_all_the_same():
    from beaconlake.ingest.collector.validate import Checked, decode_envelope

    body = (b'{"events":[{"level":"mid","name":"signup","anonymous_id":"a1","props":{"pass\\u0077ord":"hunter2",'
            b'"cust\\u006fmer":"C-9","plan":"pro"},"context":{"ip_\\u0068int":"1.2.3.4","locale":"fr"}}]}')
    s = scrubber(redact_emails=False, redact_cards=False, drop_props=["password"], hash_props=["customer"],
                 drop_context=["ip_hint"])
    for verbatim in (True, False):
        checked = Checked(list(decode_envelope(body, 32).typed), [], body)
        out = s.batch(checked, body, verbatim)
        assert msgspec.json.decode(out.accepted[0].props) == {"customer": "h_0123456789abcdef", "plan": "pro"}
        assert msgspec.json.decode(out.accepted[0].context) == {"locale": "fr"}
        assert b"hunter2" not in out.body and b"1.2.3.4" not in out.body


def test_a_percent_encoded_email_is_found_by_the_quick_look_at_the_body():
    """The only sign of it in the body is "%40": the batch must not be passed over, whichever quick look runs."""
    from beaconlake.ingest.collector.validate import Checked, decode_envelope

    body = b'{"events":[{"level":"mid","name":"page_view","anonymous_id":"a1","url":"https://x.example/?to=ann%40mail.example"}]}'
    for verbatim in (True, False):
        checked = Checked(list(decode_envelope(body, 32).typed), [], body)
        out = scrubber(drop_query_params=[]).batch(checked, body, verbatim)
        assert out.accepted[0].url == "https://x.example/?to=[email]" and b"mail.example" not in out.body


@settings(max_examples=300, deadline=None)
@given(groups=st.lists(st.integers(0, 16**4 - 1), min_size=8, max_size=8), decimal=st.integers(0, 2**5 - 1),
       wrap=st.sampled_from(['"{}"', "{}", "ids: {}, {}", "/e/{}?x=1"]))
def test_a_uuid_is_never_taken_for_a_card_number(groups, decimal, wrap):
    """uuid4s whose leading groups happen to be all decimal digits (one in ten of those is
    Luhn-valid) stay as they are: a high-level event's matched_event_ids must name real events."""
    hexes = [f"{g:04x}" for g in groups]
    # force some of the 5 groups to decimal digits, as 1 uuid in a few thousand has them
    digits = [f"{g % 10_000:04d}" for g in groups]
    parts = [hexes[0] + hexes[1], hexes[2], hexes[3], hexes[4], hexes[5] + hexes[6] + hexes[7]]
    dec = [digits[0] + digits[1], digits[2], digits[3], digits[4], digits[5] + digits[6] + digits[7]]
    uid = "-".join(dec[i] if decimal >> i & 1 else parts[i] for i in range(5))
    text = wrap.format(uid, uid)
    assert scrubber().text(text) == text


def test_the_uuid_that_was_redacted_is_not_and_cards_beside_ids_still_are():
    s = scrubber()
    uid = "41111111-1111-1111-fee9-b24000000000"  # its first 16 digits are a Luhn-valid card number
    assert s.text(f'["{uid}"]') == f'["{uid}"]'
    for shown in ("4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111"):
        assert s.text(f"id {uid}, card {shown}.") == f"id {uid}, card [card]."
        assert s.text(f"?cc={shown}&k=1") == "?cc=[card]&k=1"
