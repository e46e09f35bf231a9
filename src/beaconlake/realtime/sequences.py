"""Server-side detection of the analysts' sequences (the high-level events).

Same definitions and rules as the browser tracker (docs/tracker.md, "High level"), over
each person's events (per anonymous id, across sessions, pages and tabs) in event-time
order. An event that arrives late is slotted into its place, and every later event that
could end a sequence is tried again, so arrival order does not change what matches.

A server match is held for ``realtime.browser_grace_secs`` (plus, with ``not_followed_by``,
until the negation's deadline) before it is emitted, because the browser may report the
same match: a browser report (level ``high``, props ``source = "browser"``) registers its
matched event ids, and a server match that shares any event with a reported match of the
same definition is dropped. The "once" rule makes that test exact: the events of a match
take part in no later match of the same definition, so two matches that share an event are
the same match.

State is bounded: a person keeps only events of the names the definitions mention, for the
longest window (at most ``realtime.max_events_per_person``), and is forgotten when idle
past it; ``dump``/``load`` make it survive a restart. ``delta`` holds only what changed since
the last ``dump`` or ``delta`` (the people and waiting matches touched, the reports added or
gone), so a checkpoint can cost what a pass did rather than the whole state (``checkpoint``).
"""

from __future__ import annotations

import bisect
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from beaconlake.config import SequenceDefinition, TenantSettings
from beaconlake.realtime.predicates import (
    compile_fields,
    compile_test,
    extract,
    fields_read,
    json_eq,
)
from beaconlake.realtime.timeline import Timeline

MATCH_NAMESPACE = uuid.UUID("0e9d51a6-8a4c-4d55-9f0e-7f3d3c6c2b11")
MAX_WORK = 10_000  # candidate steps tried per search, as in the browser: no definition can stall us


NEGATION = 31  # step number of a definition's not_followed_by in Held.fits; steps are at most 16


def step_key(definition_number: int, step_number: int) -> int:
    """One int for (definition, step): what ``Held.fits`` holds and the rules index by."""
    return definition_number * 32 + step_number


class Held(msgspec.Struct, array_like=True):
    """An event kept in a person's history (array_like: the checkpoint stores it by position)."""

    ts: int  # event_ts
    arrival: int  # arrival number: the order of events within a millisecond
    id: str
    name: str
    fields: dict[str, Any]  # the fields the definitions read (props.x, url, title...)
    # step_key of every step whose name and ``where`` this event fits: tested once when it
    # arrives, not in every search. Recomputed on load, since the definitions may have changed.
    fits: frozenset[int] = frozenset()

    @property
    def at(self) -> tuple[int, int]:
        """Its place in event-time order."""
        return self.ts, self.arrival


class Pending(msgspec.Struct, array_like=True):
    definition: str
    anonymous_id: str
    ids: list[str]
    last_ts: int
    deadline: int  # event time after which a not_followed_by can no longer cancel it
    user_id: str | None
    session_id: str | None


class Person(msgspec.Struct, array_like=True):
    history: list[Held] = []  # in event-time order, bounded (see Detector.feed)
    used: dict[str, tuple[int, int]] = {}  # definition -> Held.at of the last event of its last match
    user_id: str | None = None
    session_id: str | None = None


class TenantState(msgspec.Struct):
    people: dict[str, Person] = {}
    pending: dict[str, list[Pending]] = {}  # by anonymous id
    reported: dict[str, int] = {}  # "definition\x1fevent id" -> forget after (ms epoch)


class State(msgspec.Struct):
    seq: int = 0
    tenants: dict[str, TenantState] = {}
    processed: list[str] = []  # spool segments already fed (for idempotent replay)
    generation: int = 0  # the snapshot's number: journal entries of an older one no longer apply


class TenantDelta(msgspec.Struct):
    """A tenant's changes: None for a person, waiting list or report that is gone."""

    people: dict[str, Person | None] = {}
    pending: dict[str, list[Pending] | None] = {}
    reported: dict[str, int | None] = {}


class Delta(msgspec.Struct):
    generation: int
    seq: int
    processed: list[str]
    tenants: dict[str, TenantDelta]


@dataclass(slots=True)
class Seen:
    """An event as the detector is fed it."""

    event_id: str
    level: str
    name: str
    anonymous_id: str
    user_id: str | None
    session_id: str | None
    event_ts: int
    url: str | None
    title: str | None
    referrer: str | None
    props: Any


@dataclass(slots=True)
class Match:
    tenant: str
    definition: str
    anonymous_id: str
    user_id: str | None
    session_id: str | None
    event_ids: list[str]
    event_ts: int

    @property
    def event_id(self) -> str:
        return str(uuid.uuid5(MATCH_NAMESPACE, f"{self.tenant}/{self.definition}/{','.join(self.event_ids)}"))


class _Rules:
    """A tenant's definitions, indexed for the per-event path."""

    def __init__(self, defs: list[SequenceDefinition]) -> None:
        self.defs = defs
        self.names: set[str] = set()
        self.fields: set[str] = set()
        # last step's event name -> (definition number, definition, the last step's key, the keys
        # of the steps before it): a subset test in C rules most definitions out
        self.by_last: dict[str, list[tuple[int, SequenceDefinition, int, frozenset[int]]]] = {}
        self.negations: dict[str, dict[str, int]] = {}  # event name -> definition name -> number
        # event name -> its distinct predicates, and (step key, the predicates it needs): a
        # predicate many definitions share is tested once per event
        self.preds: dict[str, list[Any]] = {}
        self.steps: dict[str, list[tuple[int, tuple[int, ...]]]] = {}
        # event name -> (steps with no predicate, [(predicates needed, steps needing exactly those)])
        self.groups: dict[str, tuple[frozenset[int], list[tuple[tuple[int, ...], frozenset[int]]]]] = {}
        self.window_ms = 0
        for number, q in enumerate(defs):
            self.window_ms = max(self.window_ms, int(q.within_secs * 1000))
            steps = [*enumerate(q.steps), *([(NEGATION, q.not_followed_by)] if q.not_followed_by else [])]
            for si, s in steps:
                self.names.add(s.name)
                self.fields |= fields_read(s)
                preds = self.preds.setdefault(s.name, [])
                need = []
                for pr in s.where:
                    if pr not in preds:
                        preds.append(pr)
                    need.append(preds.index(pr))
                self.steps.setdefault(s.name, []).append((step_key(number, si), tuple(sorted(set(need)))))
            n = len(q.steps)
            self.by_last.setdefault(q.steps[-1].name, []).append(
                (number, q, step_key(number, n - 1), frozenset(step_key(number, k) for k in range(n - 1))))
            if q.not_followed_by:
                self.negations.setdefault(q.not_followed_by.name, {})[q.name] = number
                neg = q.not_followed_by.within_secs
                self.window_ms = max(self.window_ms, int((neg or 0) * 1000))
        self.wanted = compile_fields(self.fields)

        # eq predicates on one field with scalar values: one dict lookup instead of one test each
        self.eq_index: dict[str, list[tuple[str, dict[Any, list[int]]]]] = {}
        # the predicates the lookup does not cover: (number, field, compiled test)
        self.tested: dict[str, list[tuple[int, str, Any]]] = {}
        for name, preds in self.preds.items():
            by_field: dict[str, dict[Any, list[int]]] = {}
            rest = []
            for i, pr in enumerate(preds):
                if pr.op == "eq" and isinstance(pr.value, (str, int, float)) and not isinstance(pr.value, bool):
                    by_field.setdefault(pr.field, {}).setdefault(pr.value, []).append(i)
                else:
                    rest.append(i)
            self.eq_index[name] = list(by_field.items())
            self.tested[name] = [(i, preds[i].field, compile_test(preds[i])) for i in rest]
        for name, steps in self.steps.items():
            by_need: dict[tuple[int, ...], set[int]] = {}
            for key, need in steps:
                by_need.setdefault(need, set()).add(key)
            always = frozenset(by_need.pop((), ()))
            self.groups[name] = (always, [(need, frozenset(keys)) for need, keys in by_need.items()])

    def fits(self, event: Held) -> frozenset[int]:
        """The step keys of every step ``event`` fits (its name and its ``where``)."""
        grouped = self.groups.get(event.name)
        if grouped is None:
            return frozenset()
        fields = event.fields
        preds = self.preds[event.name]
        ok = [False] * len(preds)
        for i, field, passes in self.tested[event.name]:
            ok[i] = passes(fields.get(field))
        for field, by_value in self.eq_index[event.name]:
            v = fields.get(field)
            # JSON equality: 1 == 1.0, but true is no number
            if v is not None and not isinstance(v, (bool, list, dict)):
                for i in by_value.get(v, ()):
                    ok[i] = True
        always, groups = grouped
        found = set(always)
        for need, keys in groups:
            for i in need:
                if not ok[i]:
                    break
            else:
                found |= keys
        return frozenset(found)


def _same(step: Any, event: Held, prev: Held | None) -> bool:
    if prev is None or not step.same:
        return True
    for k in step.same:
        v = event.fields.get(k)
        if v is None or not json_eq(v, prev.fields.get(k)):
            return False
    return True


def search(definition: SequenceDefinition, number: int, history: list[Held], last_index: int,
           after: tuple[int, int]) -> list[Held] | None:
    """The earliest-starting match of ``definition`` (the tenant's definition ``number``) whose
    last step is ``history[last_index]``, using only events after ``after`` (a ``Held.at``)."""
    last = history[last_index]
    start = last.ts - int(definition.within_secs * 1000)
    steps = definition.steps
    n = len(steps)
    work = MAX_WORK
    path: list[Held] = []

    def step(k: int, j: int, prev: Held | None) -> bool:
        nonlocal work
        if k == n - 1:
            if step_key(number, k) in last.fits and _same(steps[k], last, prev):
                path.append(last)
                return True
            return False
        key = step_key(number, k)
        while j < last_index and work > 0:
            work -= 1
            event = history[j]
            if (key in event.fits and event.ts >= start and event.at > after and _same(steps[k], event, prev)
                    and step(k + 1, j + 1, event)):
                path.insert(0, event)
                return True
            j += 1
        return False

    return path if step(0, 0, None) else None


class Detector:
    """``event_time``: the clock (``now_ms``) is event time, a watermark below which every event
    has been fed (the lake detector, ``lakefeed``). Then a browser report cancels a waiting match
    only when its own time is at most the match's deadline plus the grace, so when a match is
    emitted depends on the events alone, never on how they were batched. Otherwise (the spool
    detector) ``now_ms`` is the wall clock and a report cancels any match still waiting."""

    def __init__(self, tenants: list[TenantSettings], grace_ms: int, max_events_per_person: int,
                 event_time: bool = False) -> None:
        self.rules = {t.id: _Rules(t.sequences) for t in tenants if t.sequences}
        self.grace_ms = grace_ms
        self.event_time = event_time
        self.max_events = max_events_per_person
        self.reset()

    def reset(self) -> None:
        """No state: every person, waiting match and report forgotten."""
        self.state = State()
        # what changed since the last dump or delta: tenant -> anonymous ids, tenant -> report keys
        self._touched: dict[str, set[str]] = {}
        self._reports_touched: dict[str, set[str]] = {}
        # tenant -> people by when their newest event leaves the window, reports by when they go
        self._idle: defaultdict[str, Timeline] = defaultdict(Timeline)
        self._stale: defaultdict[str, Timeline] = defaultdict(Timeline)

    def _window(self, tenant: str) -> int:
        rules = self.rules.get(tenant)
        return rules.window_ms if rules else 0

    # -- feeding -------------------------------------------------------------------------

    def names_by_tenant(self) -> dict[str, set[str]]:
        """The event names each tenant's definitions mention: no other event needs feeding
        (but high-level ones do, for the browser's reports)."""
        return {t: r.names for t, r in self.rules.items()}

    def feed(self, tenant: str, ev: Seen, now_ms: int) -> None:
        rules = self.rules.get(tenant)
        if rules is None:
            return
        ts = self.state.tenants.get(tenant)
        if ts is None:
            ts = self.state.tenants[tenant] = TenantState()
        if ev.level == "high" and isinstance(ev.props, dict) and ev.props.get("source") == "browser":
            self._browser_report(tenant, ts, rules, ev, now_ms)
        if ev.name not in rules.names:
            return
        self._touch(tenant, ev.anonymous_id)
        person = ts.people.get(ev.anonymous_id)
        if person is None:
            person = ts.people[ev.anonymous_id] = Person(history=[], used={})
        if ev.user_id:
            person.user_id = ev.user_id
        eid = ev.event_id
        for x in person.history:
            if x.id == eid:
                return  # a segment replayed after a crash: this event was already fed
        self.state.seq += 1
        held = Held(ev.event_ts, self.state.seq, ev.event_id, ev.name, extract(ev, ev.props, rules.wanted))
        held.fits = rules.fits(held)
        self._cancel_negated(ts, rules, ev.anonymous_id, held)
        history = person.history
        pos = bisect.bisect_right(history, held.at, key=lambda x: x.at)
        history.insert(pos, held)
        # bounded: the longest window back from the newest event, and at most max_events
        horizon = history[-1].ts - rules.window_ms
        drop = 0
        while drop < len(history) - 1 and (history[drop].ts < horizon or len(history) - drop > self.max_events):
            drop += 1
        if drop:
            del history[:drop]
            pos = max(0, pos - drop)
        if held.ts >= history[-1].ts:
            person.session_id = ev.session_id
            self._idle[tenant].file(ev.anonymous_id, held.ts + rules.window_ms)
        before: set[int] = set()  # every step some earlier event fits: most definitions fail here
        for x in history[:pos]:
            before |= x.fits
        for last_index in range(pos, len(history)):
            candidates = rules.by_last.get(history[last_index].name)
            if candidates:
                fits = history[last_index].fits
                for number, q, last_key, need in candidates:
                    if last_key in fits and need <= before:
                        self._try(ts, q, number, person, ev.anonymous_id, last_index)
            before |= history[last_index].fits

    def _try(self, ts: TenantState, q: SequenceDefinition, number: int, person: Person, anon: str,
             last_index: int) -> None:
        history = person.history
        used = tuple(person.used.get(q.name, (0, 0)))
        if history[last_index].at <= used:
            return
        found = search(q, number, history, last_index, used)
        if found is None:
            return
        last = found[-1]
        person.used[q.name] = last.at
        ids = [x.id for x in found]
        if any(f"{q.name}\x1f{i}" in ts.reported for i in ids):
            return  # the browser reported this match already
        neg = q.not_followed_by
        if neg is None:
            deadline = last.ts
        elif neg.within_secs:
            deadline = last.ts + int(neg.within_secs * 1000)
        else:
            deadline = found[0].ts + int(q.within_secs * 1000)
        if neg is not None:
            # a negation that arrived before the match's late last event, and is held after it
            negation = step_key(number, NEGATION)
            if any(negation in x.fits and last.ts < x.ts <= deadline for x in history[last_index + 1:]):
                return
        ts.pending.setdefault(anon, []).append(Pending(q.name, anon, ids, last.ts, deadline, person.user_id, person.session_id))

    def _cancel_negated(self, ts: TenantState, rules: _Rules, anon: str, event: Held) -> None:
        negated = rules.negations.get(event.name)
        waiting = ts.pending.get(anon) if negated else None
        if not waiting:
            return
        keep = [p for p in waiting if not (
            p.definition in negated and step_key(negated[p.definition], NEGATION) in event.fits
            and p.last_ts < event.ts <= p.deadline)]
        if keep:
            ts.pending[anon] = keep
        else:
            del ts.pending[anon]

    def _browser_report(self, tenant: str, ts: TenantState, rules: _Rules, ev: Seen, now_ms: int) -> None:
        definition = ev.props.get("definition")
        ids = ev.props.get("matched_event_ids")
        if not isinstance(definition, str) or not isinstance(ids, list):
            return
        forget = now_ms + rules.window_ms + 2 * self.grace_ms + 600_000
        keys = {f"{definition}\x1f{i}" for i in ids if isinstance(i, str)}
        stale = self._stale[tenant]
        for k in keys:
            ts.reported[k] = forget
            stale.file(k, forget)
        self._reports_touched.setdefault(tenant, set()).update(keys)
        self._touch(tenant, ev.anonymous_id)
        latest = ev.event_ts - self.grace_ms if self.event_time else None  # deadline a report can still reach
        for anon in [ev.anonymous_id] if ev.anonymous_id in ts.pending else []:
            keep = [p for p in ts.pending[anon] if not (
                p.definition == definition and (latest is None or p.deadline >= latest)
                and keys & {f"{definition}\x1f{i}" for i in p.ids})]
            if keep:
                ts.pending[anon] = keep
            else:
                del ts.pending[anon]

    # -- emitting and forgetting ---------------------------------------------------------

    def due(self, now_ms: int) -> list[Match]:
        """Matches whose wait is over: past their deadline and the browser's grace."""
        out = []
        for tenant, ts in self.state.tenants.items():
            for anon in list(ts.pending):
                keep = []
                for p in ts.pending[anon]:
                    if p.deadline + self.grace_ms <= now_ms:
                        out.append(Match(tenant, p.definition, p.anonymous_id, p.user_id, p.session_id, p.ids, p.last_ts))
                    else:
                        keep.append(p)
                if len(keep) != len(ts.pending[anon]):
                    self._touch(tenant, anon)
                if keep:
                    ts.pending[anon] = keep
                else:
                    del ts.pending[anon]
        return out

    def expire(self, now_ms: int) -> None:
        """Forget people idle past the longest window (none waiting for a match to be emitted),
        and browser reports past their use. Only those the timelines say may be due are looked at."""
        for tenant, ts in self.state.tenants.items():
            window = self._window(tenant)

            def idle_at(anon: str, ts: TenantState = ts, window: int = window) -> int | None:
                p = ts.people.get(anon)
                if p is None:
                    return None  # forgotten meanwhile
                return p.history[-1].ts + window if p.history else now_ms - 1

            # a person with a match waiting to go out is kept, and looked at again next pass
            idle = self._idle[tenant].due(now_ms, idle_at, ts.pending.__contains__)
            for anon in idle:
                del ts.people[anon]
            if idle:
                self._touched.setdefault(tenant, set()).update(idle)
            gone = self._stale[tenant].due(now_ms, ts.reported.get)
            for k in gone:
                del ts.reported[k]
            if gone:
                self._reports_touched.setdefault(tenant, set()).update(gone)

    def forget(self, tenant: str, gone: Callable[[str], bool]) -> int:
        """Drop the state of every person one of whose ids ``gone`` selects (an erasure): their
        held events and the matches waiting for the browser's report. Returns people dropped."""
        ts = self.state.tenants.get(tenant)
        if ts is None:
            return 0
        people = [a for a, p in ts.people.items() if gone(a) or (p.user_id is not None and gone(p.user_id))]
        for anon in people:
            del ts.people[anon]
        waiting = [a for a, waiting in ts.pending.items()
                   if gone(a) or any(w.user_id is not None and gone(w.user_id) for w in waiting)]
        for anon in waiting:
            del ts.pending[anon]
        self._touched.setdefault(tenant, set()).update(people, waiting)
        return len(people)

    def _touch(self, tenant: str, anon: str) -> None:
        touched = self._touched.get(tenant)
        if touched is None:
            touched = self._touched[tenant] = set()
        touched.add(anon)

    def dump(self) -> bytes:
        self._touched, self._reports_touched = {}, {}
        return msgspec.msgpack.encode(self.state)

    def delta(self) -> bytes:
        """What changed since the last ``dump`` or ``delta``: ``load`` applies it on that state."""
        tenants = {}
        for tenant, ts in self.state.tenants.items():  # every tenant, so load creates the empty ones too
            anons = self._touched.get(tenant, ())
            keys = self._reports_touched.get(tenant, ())
            tenants[tenant] = TenantDelta({a: ts.people.get(a) for a in anons}, {a: ts.pending.get(a) for a in anons},
                                          {k: ts.reported.get(k) for k in keys})
        self._touched, self._reports_touched = {}, {}
        st = self.state
        return msgspec.msgpack.encode(Delta(st.generation, st.seq, st.processed, tenants))

    def load(self, data: bytes, deltas: Sequence[bytes] = ()) -> int:
        """The state of a ``dump``, with the ``delta`` entries of the same generation applied in
        order (others are skipped); returns how many applied."""
        self.state = msgspec.msgpack.decode(data, type=State)
        self._touched, self._reports_touched = {}, {}
        applied = 0
        for raw in deltas:
            d = msgspec.msgpack.decode(raw, type=Delta)
            if d.generation != self.state.generation:
                continue
            applied += 1
            self.state.seq, self.state.processed = d.seq, d.processed
            for tenant, td in d.tenants.items():
                ts = self.state.tenants.get(tenant)
                if ts is None:
                    ts = self.state.tenants[tenant] = TenantState()
                for part, changes in ((ts.people, td.people), (ts.pending, td.pending), (ts.reported, td.reported)):
                    for key, value in changes.items():
                        if value is None:
                            part.pop(key, None)
                        else:
                            part[key] = value
        self._idle, self._stale = defaultdict(Timeline), defaultdict(Timeline)
        for tenant, ts in self.state.tenants.items():
            rules = self.rules.get(tenant)
            window = self._window(tenant)
            idle_at, stale_at = self._idle[tenant], self._stale[tenant]
            for anon, p in ts.people.items():
                p.used = {k: tuple(v) for k, v in p.used.items()}
                for held in p.history:
                    held.fits = rules.fits(held) if rules else frozenset()
                idle_at.file(anon, p.history[-1].ts + window if p.history else 0)
            for k, until in ts.reported.items():
                stale_at.file(k, until)
        return applied
