"""What the benchmark prints: per-run lines, the table of medians, the targets and the accounting."""

from __future__ import annotations

import statistics

from workload import EVENTS_PER_BATCH, Block, Run

TARGET_RATIO = 0.35  # of nginx's requests/s, at every connection count (issue 16)
TARGET_P99_X_NGINX = 4.0  # p99 at the highest connection count, at most this times nginx's in the same run
TARGET_CPU_X_BASELINE = 0.5  # CPU per acknowledged event (workers + deliverer), at most this times the baseline's
BUSY_CORES = 0.25  # other work on the machine beyond this, during runs, gets a warning


def show(r: Run, runs: int) -> None:
    tag = "warm-up" if r.run == 0 else f"run {r.run}/{runs}"
    flag = f"  <-- FAILED: {r.non2xx} non-2xx, {r.socket_errors} socket errors/timeouts" if r.non2xx or r.socket_errors else ""
    cpu = " ".join(f"{k} {r.cpu[k]:.2f}" for k in ("server", "workers", "deliver", "wrk", "irq", "else") if k in r.cpu)
    print(f"  {tag:<8} c={r.connections:<4} {r.server:<10} {r.rps:>8,.0f} req/s {r.rps * EVENTS_PER_BATCH:>10,.0f} ev/s"
          f"  p50 {r.p50_ms:6.2f}  p99 {r.p99_ms:7.2f} ms  non-2xx {r.non2xx}  cores: {cpu}{flag}", flush=True)


def summarize(block: Block, connections: list[int]) -> list[dict]:
    rows = []
    for c in connections:
        counted = [r for r in block.runs if r.connections == c and r.run > 0]
        by_server = {name: [r for r in counted if r.server == name] for name in ("nginx", "baseline", "beaconlake", "segment")}
        first = len(rows)
        for server, runs in by_server.items():
            if not runs:
                continue
            roles = sorted({k for r in runs for k in r.cpu})
            rows.append({
                "server": server,
                "workers": "auto" if server == "nginx" else block.workers,
                "durability": "log" if server == "nginx" else block.durability,
                "connections": c,
                "runs": len(runs),
                "rps": statistics.median(r.rps for r in runs),
                "p50_ms": statistics.median(r.p50_ms for r in runs),
                "p99_ms": statistics.median(r.p99_ms for r in runs),
                "failed": sum(r.non2xx + r.socket_errors for r in runs),
                "cpu": {k: statistics.median(r.cpu.get(k, 0.0) for r in runs) for k in roles},
            })
        here = {r["server"]: r for r in rows[first:]}
        for name in ("baseline", "beaconlake", "segment"):
            if name in here and "nginx" in here and here["nginx"]["rps"]:
                here[name]["ratio"] = here[name]["rps"] / here["nginx"]["rps"]
        if "segment" in here and "beaconlake" in here and here["beaconlake"]["rps"]:
            here["segment"]["vs_native"] = here["segment"]["rps"] / here["beaconlake"]["rps"]
        if "baseline" in here and "beaconlake" in here and here["baseline"]["rps"]:
            here["beaconlake"]["vs_baseline"] = here["beaconlake"]["rps"] / here["baseline"]["rps"]
        for row in here.values():
            cpu, events = row["cpu"], row["rps"] * EVENTS_PER_BATCH
            if row["server"] != "nginx" and events:  # the CPU an acknowledged event costs, in us
                row["us_per_event"] = {k: cpu.get(k, 0.0) / events * 1e6 for k in ("workers", "server", "deliver")}
                caught = [r.delivery for r in by_server[row["server"]] if r.delivery and r.delivery[1] > 0]
                if caught and len(caught) == len(by_server[row["server"]]):  # delivery's CPU until it caught up
                    row["us_per_event"]["deliver"] = statistics.median(cpu_s / n * 1e6 for cpu_s, n in caught)
            if "nginx" in here:
                row["nginx_p99_ms"] = here["nginx"]["p99_ms"]
    return rows


def print_table(rows: list[dict]) -> None:
    head = (f"{'server':<11}{'workers':>7} {'durability':<11}{'conns':>5}{'req/s':>9}{'events/s':>11}"
            f"{'p50 ms':>8}{'p99 ms':>8}{'failed':>7}{'ratio':>7}{'us/req':>7}   cores: server+deliver / wrk / else")
    print(head)
    print("-" * len(head))
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if r.get("ratio") is not None else ""
        cpu = r["cpu"]
        srv = cpu.get("server", 0) + cpu.get("workers", 0)
        cores = f"{srv:.2f}+{cpu['deliver']:.2f}" if "deliver" in cpu else f"{srv:.2f}"
        print(f"{r['server']:<11}{r['workers']!s:>7} {r['durability']:<11}{r['connections']:>5}{r['rps']:>9,.0f}"
              f"{r['rps'] * EVENTS_PER_BATCH:>11,.0f}{r['p50_ms']:>8.2f}{r['p99_ms']:>8.2f}{r['failed']:>7}{ratio:>7}"
              f"{srv / r['rps'] * 1e6 if r['rps'] else 0:>7.0f}"
              f"   {cores} / {cpu.get('wrk', 0):.2f} / {cpu.get('else', 0):.2f}{'  <-- FAILED REQUESTS' if r['failed'] else ''}")


def print_checks(block: Block, rows: list[dict], top: int) -> bool:
    """Targets (reported, never enforced), then the accounting that makes the figures trustworthy."""
    label = f"[workers={block.workers} durability={block.durability}]"
    for r in rows:
        if r.get("vs_baseline") is not None:
            print(f"  {label} c={r['connections']}: {r['vs_baseline']:.2f} x the baseline's req/s")
        if r.get("us_per_event") is not None and r["server"] in ("baseline", "beaconlake"):
            print(f"  {label} c={r['connections']} {r['server']}: {_cpu_per_event(r):.1f} us of CPU an acknowledged "
                  f"event (workers {r['us_per_event']['workers'] + r['us_per_event']['server']:.1f} + deliverer "
                  f"{r['us_per_event']['deliver']:.1f})")
    by_conns = {(r["server"], r["connections"]): r for r in rows}
    for r in rows:
        base = by_conns.get(("baseline", r["connections"]))
        if r["server"] == "beaconlake" and base is not None and base.get("us_per_event") and r.get("us_per_event"):
            x = _cpu_per_event(r) / _cpu_per_event(base)
            print(f"  {label} c={r['connections']}: CPU an event {x:.2f} x the baseline's (target <= "
                  f"{TARGET_CPU_X_BASELINE}): {'met' if x <= TARGET_CPU_X_BASELINE else 'MISSED'}")
        if r.get("vs_native") is not None:
            cpu = r["cpu"]
            print(f"  {label} c={r['connections']}: Segment /v1/batch at {r['vs_native']:.2f} x the native /v1/events "
                  f"req/s (same events), {(cpu.get('server', 0) + cpu.get('workers', 0)) / r['rps'] * 1e6:.0f} us of "
                  f"worker CPU a request" if r["rps"] else "")
    ok = _check_block(block, block.accounting, rows, top, label, "beaconlake")
    if block.baseline_accounting:
        ok = _check_block(block, block.baseline_accounting, rows, top, label + " baseline", "baseline") and ok
    return ok


def _check_block(block: Block, a: dict, rows: list[dict], top: int, label: str, server: str) -> bool:
    for r in rows:
        if r["server"] != server:
            continue
        if r.get("ratio") is not None:
            print(f"  {label} c={r['connections']}: {r['ratio']:.2f} of nginx's req/s (target >= {TARGET_RATIO}): "
                  f"{'met' if r['ratio'] >= TARGET_RATIO else 'MISSED'}")
        if r["connections"] == top and r.get("nginx_p99_ms"):
            limit = TARGET_P99_X_NGINX * r["nginx_p99_ms"]
            print(f"  {label} c={top}: p99 {r['p99_ms']:.1f} ms (target <= {TARGET_P99_X_NGINX:g} x nginx's "
                  f"{r['nginx_p99_ms']:.1f} ms = {limit:.1f} ms): {'met' if r['p99_ms'] <= limit else 'MISSED'}")
    surplus = a["accepted"] - a["wrk_2xx_events"]
    counted = 0 <= surplus <= a["max_uncounted_events"]
    print(f"  {label} acknowledged: wrk 2xx x {EVENTS_PER_BATCH} = {a['wrk_2xx_events']:,} events; /metrics accepted "
          f"{a['accepted']:,} (+{surplus:,}: answered after wrk stopped counting, at most {a['max_uncounted_events']:,}): "
          f"{'ok' if counted else 'MISMATCH'}")
    stored = a["raw_rows"] == a["accepted"] and a["spool_segments_left"] == 0
    high = a["raw_rows_by_level"].get("high", 0)
    print(f"  {label} lake: {a['raw_rows']:,} low/mid rows in {a['raw_files']} raw Parquet files for {a['accepted']:,} "
          f"accepted{f' (+{high:,} high-level detected by the server)' if high else ''}, "
          f"{a['spool_segments_left']} spool segments left (stop + drain {a['stop_and_drain_secs']} s): "
          f"{'ok' if stored else 'MISMATCH'}")
    failed = sum(r.non2xx + r.socket_errors for r in block.runs if r.server in ("nginx", server, "segment" if server == "beaconlake" else server))
    bad_codes = {k: v for k, v in a["requests"].items() if not k.startswith("2")}
    if failed or bad_codes or a["rejected"] or a["rejected_rows"]:
        print(f"  {label} !! FAILED REQUESTS: wrk saw {failed} non-2xx or socket errors (warm-up included); collector "
              f"answers by code {a['requests']}, rejections {a['rejected']}, {a['rejected_rows']} rows in lake/rejected")
    busy = statistics.median(r.cpu.get("else", 0.0) for r in block.runs if r.run > 0)
    if busy > BUSY_CORES:
        print(f"  {label} !! other work used {busy:.2f} cores of the machine during the runs (median): absolute "
              f"figures are depressed and noisy; the ratio is fairer (both servers suffer alike); rerun when quiet")
    if block.nginx_log and server == "beaconlake":
        n = block.nginx_log
        print(f"  nginx logged {n['bytes'] / 1e9:.2f} GB of bodies, ~{n['lines_estimated']:,} lines for "
              f"{n['requests_2xx']:,} counted 2xx")
    return counted and stored and not (failed or bad_codes or a["rejected"] or a["rejected_rows"])


def _cpu_per_event(row: dict) -> float:
    return sum(row["us_per_event"].values())
