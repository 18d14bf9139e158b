#!/usr/bin/env python3
"""The workload of `cohort kv bench`, run against etcd (bench/coordinator_bench.sh).

N client threads, each with its own keep-alive HTTP connection to the etcd
leader's JSON gateway (POST /v3/kv/put), each doing --ops puts of
--value-bytes bytes to keys bench/<client>/<i % 1000>, one at a time, after
one warm-up put. Prints one JSON line with the same fields as `cohort kv
bench`: clients, ops, errors, seconds, puts_per_s, p50_ms, p99_ms.

Python 3 standard library only (Debian packages no etcd benchmark tool). The
client is Python over HTTP/JSON, slower per request than the C++ gRPC client of
`cohort kv bench`, and etcd's gateway translates each request to gRPC
internally; both handicap etcd a little, most visibly with many clients on a
2-core machine.

  etcd_put_bench.py --endpoints http://127.0.0.1:2379,... [--clients 1] [--ops 1000]
                    [--value-bytes 128] [--wait-s 0]
"""
import argparse
import base64
import http.client
import json
import sys
import threading
import time
import urllib.parse


def post(conn, path, body):
    conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    data = resp.read()
    if resp.status != 200:
        raise RuntimeError(f"{path}: HTTP {resp.status}: {data[:200]!r}")
    return json.loads(data)


def connect(url, timeout_s=10):
    u = urllib.parse.urlparse(url)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout_s)


def find_leader(endpoints, wait_s):
    """The endpoint of the member that leads (etcd forwards proposals from a
    follower, which would add a hop `cohort kv bench` does not pay)."""
    deadline = time.monotonic() + wait_s
    last = "no endpoint answered"
    while True:
        for ep in endpoints:
            try:
                st = post(connect(ep, 2), "/v3/maintenance/status", {})
                if st.get("leader") and st["leader"] == st["header"]["member_id"]:
                    return ep
                last = f"{ep}: leader {st.get('leader')}"
            except (OSError, RuntimeError, ValueError, KeyError) as e:
                last = f"{ep}: {e}"
        if time.monotonic() >= deadline:
            raise SystemExit(f"etcd_put_bench: no leader among {endpoints}: {last}")
        time.sleep(0.1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--endpoints", required=True)
    ap.add_argument("--clients", type=int, default=1)
    ap.add_argument("--ops", type=int, default=1000)
    ap.add_argument("--value-bytes", type=int, default=128)
    ap.add_argument("--wait-s", type=float, default=0, help="wait this long for a leader")
    a = ap.parse_args()
    if not 1 <= a.clients <= 1024 or a.ops < 1 or not 0 <= a.value_bytes <= 65536:
        raise SystemExit("etcd_put_bench: need 1 <= --clients <= 1024, --ops >= 1, 0 <= --value-bytes <= 65536")
    leader = find_leader([e for e in a.endpoints.split(",") if e], a.wait_s)
    value = base64.b64encode(b"v" * a.value_bytes).decode()

    lat = [[] for _ in range(a.clients)]
    errors = [0] * a.clients
    first_error = [""] * a.clients
    conns = [connect(leader) for _ in range(a.clients)]
    for c in conns:  # warm-up, one put per client (the connection opens here)
        post(c, "/v3/kv/put", {"key": base64.b64encode(b"bench/warmup").decode(), "value": value})
    start = threading.Barrier(a.clients + 1)

    def run(t):
        conn = conns[t]
        keys = [base64.b64encode(f"bench/{t}/{i}".encode()).decode() for i in range(min(a.ops, 1000))]
        start.wait()
        for i in range(a.ops):
            s = time.perf_counter()
            try:
                post(conn, "/v3/kv/put", {"key": keys[i % 1000], "value": value})
            except (OSError, RuntimeError, ValueError, http.client.HTTPException) as e:
                if errors[t] == 0:
                    first_error[t] = str(e)
                errors[t] += 1
                conn.close()
                conn = connect(leader)
                continue
            lat[t].append((time.perf_counter() - s) * 1e3)

    threads = [threading.Thread(target=run, args=(t,)) for t in range(a.clients)]
    for th in threads:
        th.start()
    start.wait()
    t0 = time.perf_counter()
    for th in threads:
        th.join()
    secs = time.perf_counter() - t0
    allv = sorted(x for l in lat for x in l)

    def pct(p):
        return allv[min(len(allv) - 1, int(p * len(allv)))] if allv else 0.0

    print(json.dumps({"clients": a.clients, "ops": len(allv), "errors": sum(errors), "seconds": secs,
                      "puts_per_s": len(allv) / secs, "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                      "value_bytes": a.value_bytes, "leader": leader}))
    if sum(errors):
        print(f"etcd_put_bench: {sum(errors)} puts failed; first: {next(e for e in first_error if e)}",
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
