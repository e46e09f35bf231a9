"""Issue 13's proof: a deployment whose nodes share nothing but S3, Redis and PostgreSQL.

Two collector nodes and two jobs nodes (the scheduler on both, one active at a time), each in
its own mount namespace (conftest.py, namespace.py); batches round-robin over the collectors; a
single-node reference fed the same batches. The tests run in order on one cluster: the last one
kills the active jobs node.
"""

from __future__ import annotations

import time
from collections import Counter

import httpx
import pytest
from deployment import AS_IS, KEYS, SERVER_ADMIN, Cluster
from lakehouse import S3_KEYS
from workload import SEQUENCE, batches, expected_matchers, person_events, send_round_robin

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

PEOPLE = 24
CONVERT_TIMEOUT_SECS = 120
BAKED = ("events", "sessions", "pageviews", "high_level_events")


def get(node, path: str, key: str = KEYS["read_key"], **params) -> httpx.Response:
    return httpx.get(node.url + path, params=params, headers={"authorization": f"Bearer {key}"}, timeout=30)


def request_run(node) -> None:
    r = httpx.post(node.url + "/v1/dashboard/pipeline/run", headers={"authorization": f"Bearer {SERVER_ADMIN}"},
                   timeout=30)
    assert r.status_code in (200, 202), r.text


def finished_runs(node, after_ms: float) -> list[dict]:
    """Runs recorded as ok, started at or after ``after_ms``, as the Pipeline view shows them."""
    runs = get(node, "/v1/dashboard/pipeline", SERVER_ADMIN).json()["runs"]
    return [r for r in runs if r.get("status") == "ok" and r["started_at"] >= after_ms]


def wait_for(fn, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(every)


def table_events(cluster: Cluster) -> dict[str, list[str]]:
    """event id -> the level of each row with that id, in the ``events`` table."""
    from pyiceberg.exceptions import NoSuchTableError

    out: dict[str, list[str]] = {}
    try:
        rows = cluster.warehouse.rows("events", ("event_id", "level"))
    except NoSuchTableError:
        return out
    for r in rows:
        out.setdefault(r["event_id"], []).append(r["level"])
    return out


def assert_exactly_once(seen: dict[str, list[str]], acknowledged: set[str]) -> None:
    """Every acknowledged event once; the only other rows are the server's sequence matches
    (level high, written to the lake by the detector), once each too."""
    assert acknowledged <= seen.keys(), f"{len(acknowledged - seen.keys())} acknowledged events missing"
    assert {i: levels for i, levels in seen.items() if len(levels) > 1} == {}
    assert {i: levels for i, levels in seen.items() if i not in acknowledged and levels != ["high"]} == {}


def wait_converted(cluster: Cluster, ids: set[str]) -> dict[str, list[str]]:
    """Until the events table holds every id in ``ids`` (asking the jobs nodes for a run). A
    wait that failed once fails at once the next time (the tests after it need the same run)."""
    if cluster.notes.get("unconverted") == len(ids):
        pytest.fail(f"the {len(ids)} acknowledged events were never converted (see the first failure)")
    request_run(cluster.collectors[0])
    seen = wait_for(lambda: (c := table_events(cluster)) and ids <= c.keys() and c, CONVERT_TIMEOUT_SECS, 1.0)
    if not seen:
        cluster.notes["unconverted"] = len(ids)
        logs = "\n".join(f"--- {n.name}\n{n.log()[-2500:]}" for n in cluster.jobs)
        pytest.fail(f"the events table did not get the {len(ids)} acknowledged events within "
                    f"{CONVERT_TIMEOUT_SECS}s (has {len(table_events(cluster))}):\n{logs}")
    return seen


@pytest.fixture(scope="module")
def traffic(cluster: Cluster):
    """The batches, round-robin over the collectors, each also sent to the reference at the same moment."""
    ref = cluster.reference

    def to_reference(batch, sent_at):
        from workload import post

        r = post(ref.url, KEYS["write_key"], batch, sent_at)
        assert r.status_code == 200, r.text

    sent = send_round_robin([n.url for n in cluster.collectors], KEYS["write_key"], batches(PEOPLE), also=to_reference)
    assert len(sent.per_node) == len(cluster.collectors)  # every collector took a share
    for node in (*cluster.collectors, ref):
        node.wait_delivered()
    return sent


def test_nodes_share_no_disk(cluster: Cluster):
    """Each node sees its own files under the common data path and no other node's; the test
    process (the host) sees none of them."""
    everyone = [*cluster.nodes, cluster.reference]
    for node in everyone:
        node.inside("sh", "-c", f'echo {node.name} > "{node.data_path}/marker-{node.name}"')
    for node in everyone:
        assert node.files("marker-*") == [f"{node.data_path}/marker-{node.name}"], node.name
    assert not list(cluster.reference.data_path.iterdir()), "the host sees a node's files"
    for node in cluster.collectors:  # and a node really works there: its spool is in its own tmpfs
        node.inside("test", "-d", f"{node.data_path}/spool")


def test_every_acknowledged_event_in_the_table_exactly_once(cluster: Cluster, traffic):
    assert_exactly_once(wait_converted(cluster, traffic.acknowledged), traffic.acknowledged)


def test_converted_files_without_duplicates_and_no_orphan_files(cluster: Cluster, traffic):
    wait_converted(cluster, traffic.acknowledged)
    time.sleep(8)  # past another interval: a second jobs node converting the same files would show now
    s3 = cluster.warehouse.s3()

    def raw_files() -> set[str]:
        return {o["Key"].removeprefix("lake/") for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket="lake", Prefix="lake/raw/") for o in page.get("Contents", [])}

    def converted() -> Counter:
        return Counter(r["raw_key"] for r in cluster.warehouse.rows("converted_files", ("raw_key",)))

    # raw files keep coming (the detector's matches): every one is converted by a later run
    request_run(cluster.collectors[0])
    wait_for(lambda: set(converted()) == raw_files(), 60, 1.0)
    keys = converted()
    assert [k for k, n in keys.items() if n > 1] == []
    assert set(keys) == raw_files()
    for name in (*BAKED, "converted_files"):
        assert cluster.warehouse.unreferenced(name) == set(), name


def high_level(node) -> list[tuple]:
    r = get(node, "/v1/high-level", name=SEQUENCE["name"], limit=1000)
    assert r.status_code == 200, r.text
    return sorted((e["anonymous_id"], e["event_id"], tuple(sorted(e["matched_event_ids"]))) for e in r.json()["events"])


def test_sequence_matches_equal_a_single_node(cluster: Cluster, traffic):
    ref = cluster.reference
    expected = expected_matchers(PEOPLE)
    reference = wait_for(lambda: (m := high_level(ref)) and {a for a, *_ in m} == expected and m, 60)
    assert reference, f"the single node should find {sorted(expected)}: {high_level(ref)}"
    for node in cluster.nodes:
        found = wait_for(lambda n=node: (m := high_level(n)) == reference and m, 60)
        assert found == reference, f"{node.name}: {high_level(node)}"
    time.sleep(2)  # past browser_grace_secs: no late second detection may add to them
    assert high_level(cluster.collectors[0]) == reference


def normal(value, drop=("server_ms", "now", "from", "to")):  # the server time and default ranges from it
    if isinstance(value, dict):
        return {k: normal(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [normal(v, drop) for v in value]
    return value


READ_ROUTES = [
    ("/v1/stats", {"name": "page_view", "by": "hour"}),
    ("/v1/stats", {"name": "page_view", "by": "minute", "group": "path"}),
    ("/v1/high-level", {"limit": "1000"}),
    ("/v1/people/person-000/high-level", {}),
    ("/v1/profiles/person-000", {}),
    ("/v1/profiles", {"limit": "500"}),
    ("/v1/segments", {}),
    ("/v1/dashboard/session", {}),
    ("/v1/dashboard/live", {}),
    ("/v1/dashboard/traffic", {}),
    ("/v1/dashboard/sequences", {}),
    ("/v1/dashboard/people", {"q": "person", "limit": "500"}),
    ("/v1/dashboard/people/person-000", {}),
]


def answers(nodes, path, params, key=KEYS["read_key"], part=None):
    out = {}
    for node in nodes:
        r = get(node, path, key, **params)
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
        out[node.name] = (r.status_code, normal(body if part is None else body.get(part)))
    return out


def test_every_read_route_answers_the_same_from_every_node(cluster: Cluster, traffic):
    wait_converted(cluster, traffic.acknowledged)
    asked = time.time() * 1000
    request_run(cluster.collectors[0])  # analyze too: profiles and segments exist
    assert wait_for(lambda: finished_runs(cluster.collectors[0], asked - 1000), CONVERT_TIMEOUT_SECS, 1.0)
    nodes = cluster.nodes
    differ, refused = {}, {}
    for path, params in READ_ROUTES:
        for _ in range(3):  # a minute that rolls over between two reads is not a difference
            got = answers(nodes, path, params)
            if len({repr(v) for v in got.values()}) == 1:
                break
            time.sleep(1)
        else:
            differ[path + repr(params)] = got
            continue
        status, body = next(iter(got.values()))
        if status != 200:
            refused[path] = (status, body)
    # the scheduler goes on every few seconds: compare the runs that had finished before the first
    # read, which every node's answer must hold alike
    before = time.time() * 1000
    runs = answers(nodes, "/v1/dashboard/pipeline", {}, SERVER_ADMIN, part="runs")
    settled = {name: [r for r in body if r.get("finished_at") and r["finished_at"] < before - 1000]
               for name, (status, body) in runs.items()}
    if len({repr(v) for v in settled.values()}) != 1 or not next(iter(settled.values())):
        differ["/v1/dashboard/pipeline runs"] = settled
    assert differ == {}
    assert refused == {}
    pipeline = get(nodes[0], "/v1/dashboard/pipeline", SERVER_ADMIN).text
    assert [n.name for n in nodes if n.name not in pipeline] == [], "the Pipeline view shows every node"
    live = get(nodes[0], "/v1/dashboard/live").json()
    assert {"page_view", "product_view", "add_to_cart"} <= {n["key"] for n in live["names"]}, live
    stats = get(nodes[0], "/v1/stats", name="page_view", by="day").json()["rows"]
    # every page view is within realtime.allowed_lateness_secs when it arrives: all are counted
    views = sum(e["name"] == "page_view" for i in range(PEOPLE) for e in person_events(i))
    assert sum(r["count"] for r in stats) == views, stats


def running_convert(cluster: Cluster):
    """(node name, run) of a run in its convert stage, as the Pipeline view of any node shows it."""
    for node in [n for n in cluster.nodes if n.alive]:
        try:
            r = get(node, "/v1/dashboard/pipeline", SERVER_ADMIN)
        except httpx.HTTPError:
            continue
        for run in r.json().get("runs", []) if r.status_code == 200 else []:
            if run.get("status") == "running" and run.get("stage") == "convert":
                return run.get("node") or node.name, run  # without a shared run log: the node that answered
    return None


def test_killing_the_active_jobs_node_mid_convert_hands_over(cluster: Cluster, traffic):
    wait_converted(cluster, traffic.acknowledged)
    more = send_round_robin([n.url for n in cluster.collectors], KEYS["write_key"],
                            batches(0, extra_events=3000))  # enough for a convert that takes a while
    for node in cluster.collectors:
        node.wait_delivered()
    request_run(cluster.collectors[1])
    caught = wait_for(lambda: running_convert(cluster), 60, 0.05)
    assert caught, "no convert run seen in progress"
    victim_name, run = caught
    [victim] = [n for n in cluster.nodes if n.name == victim_name]
    assert victim in cluster.jobs, f"{victim_name}, a collector node, was converting: {run}"
    victim.kill()
    killed_at = time.time() * 1000
    survivor = next(n for n in cluster.jobs if n is not victim)
    everything = traffic.acknowledged | more.acknowledged
    assert_exactly_once(wait_converted(cluster, everything), everything)
    keys = Counter(r["raw_key"] for r in cluster.warehouse.rows("converted_files", ("raw_key",)))
    assert [k for k, n in keys.items() if n > 1] == []
    # the run that converted them may still be analyzing: wait for it to be recorded as finished
    finished = wait_for(lambda: finished_runs(cluster.collectors[0], killed_at - 1000), CONVERT_TIMEOUT_SECS, 1.0)
    assert finished and all(r.get("node") in (survivor.name, None) for r in finished), finished
    if not AS_IS:  # the killed node's run is marked interrupted, not left running for ever
        assert wait_for(lambda: any(r["run_id"] == run["run_id"] and r["status"] == "interrupted" for r in get(
            cluster.collectors[0], "/v1/dashboard/pipeline", SERVER_ADMIN).json()["runs"]), 60), run


def test_no_secret_in_any_log(cluster: Cluster, traffic):
    """Neither the S3 secret key nor an admin key appears in any node's log (issue 13 found the
    secret key in the start-up log)."""
    for node in (*cluster.nodes, cluster.reference):
        text = node.log_path.read_text(errors="replace")
        assert S3_KEYS["secret_access_key"] not in text, node.name
        assert SERVER_ADMIN not in text and KEYS["admin_key"] not in text, node.name
