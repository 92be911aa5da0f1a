#!/usr/bin/env python3
"""Load test for `cllm serve` (issue 15): requests/s, tokens/s and latency
percentiles with 1, 4 and 16 concurrent clients, over streamed completions.

Loopback only and bounded: each concurrency level stops after --requests
requests or --seconds seconds, whichever comes first. Standard library only.

    target/release/cllm serve --model /tmp/serve_model.cllm --quiet &
    python3 tools/serve_load.py --url http://127.0.0.1:8080 --max-tokens 64

Each request streams (`stream: true` with `include_usage`), so the script
measures time to the first token as well as the whole request; tokens are
the server's `usage.completion_tokens`. A 429 (queue full) is counted, not
retried.
"""

import argparse
import http.client
import json
import statistics
import sys
import threading
import time
import urllib.parse

PROMPTS = [
    "static int sqlite3",
    "int main(int argc, char **argv){\n",
    "/* Free memory */\nvoid",
    "  if( rc!=SQLITE_OK ){\n",
    "#include <",
    "for(i=0; i<n; i++){\n",
]


def one_request(host, port, body, timeout):
    """Streams one completion; returns (status, ttft_s, total_s, tokens)."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", "/v1/completions", body=json.dumps(body),
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            resp.read()
            return resp.status, None, time.perf_counter() - start, 0
        ttft = None
        tokens = 0
        buf = b""
        while True:
            chunk = resp.read1(65536) if hasattr(resp, "read1") else resp.read(1)
            if not chunk:
                break
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                data = event.decode().removeprefix("data: ")
                if data == "[DONE]":
                    continue
                msg = json.loads(data)
                if ttft is None and msg.get("choices") and msg["choices"][0].get("text"):
                    ttft = time.perf_counter() - start
                if msg.get("usage"):
                    tokens = msg["usage"]["completion_tokens"]
        return 200, ttft, time.perf_counter() - start, tokens
    finally:
        conn.close()


def percentile(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(q / 100 * (len(values) - 1))))
    return values[k]


def run_level(host, port, clients, max_requests, seconds, max_tokens, timeout):
    lock = threading.Lock()
    state = {"issued": 0}
    results = []
    deadline = time.perf_counter() + seconds

    def client(idx):
        n = 0
        while True:
            with lock:
                if state["issued"] >= max_requests or time.perf_counter() >= deadline:
                    return
                state["issued"] += 1
                seq = state["issued"]
            body = {"prompt": PROMPTS[seq % len(PROMPTS)], "max_tokens": max_tokens,
                    "temperature": 0.8, "seed": seq, "stream": True,
                    "stream_options": {"include_usage": True}}
            try:
                r = one_request(host, port, body, timeout)
            except OSError as e:
                r = (f"error {e}", None, 0.0, 0)
            with lock:
                results.append(r)
            n += 1

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ok = [r for r in results if r[0] == 200]
    busy = sum(1 for r in results if r[0] == 429)
    failed = len(results) - len(ok) - busy
    lat = [r[2] for r in ok]
    ttft = [r[1] for r in ok if r[1] is not None]
    tokens = sum(r[3] for r in ok)
    return {
        "clients": clients, "requests": len(ok), "busy_429": busy, "failed": failed,
        "wall_s": wall, "req_per_s": len(ok) / wall, "tokens_per_s": tokens / wall,
        "p50_ms": 1000 * percentile(lat, 50), "p90_ms": 1000 * percentile(lat, 90),
        "p99_ms": 1000 * percentile(lat, 99),
        "ttft_p50_ms": 1000 * percentile(ttft, 50),
        "ttft_p99_ms": 1000 * percentile(ttft, 99),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8080")
    ap.add_argument("--clients", default="1,4,16")
    ap.add_argument("--requests", type=int, default=200, help="most requests per level")
    ap.add_argument("--seconds", type=float, default=20, help="most seconds per level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    url = urllib.parse.urlparse(args.url)
    host, port = url.hostname, url.port or 80
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing {host}: the load test runs against loopback only")
    if args.requests > 5000 or args.seconds > 300:
        sys.exit("bounded: at most 5000 requests and 300 s per level")
    print(f"{'clients':>7} {'reqs':>5} {'429':>4} {'fail':>4} {'req/s':>7} {'tok/s':>8} "
          f"{'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} {'ttft50':>7} {'ttft99':>7}")
    for c in [int(x) for x in args.clients.split(",")]:
        r = run_level(host, port, c, args.requests, args.seconds, args.max_tokens, args.timeout)
        print(f"{r['clients']:>7} {r['requests']:>5} {r['busy_429']:>4} {r['failed']:>4} "
              f"{r['req_per_s']:>7.1f} {r['tokens_per_s']:>8.0f} {r['p50_ms']:>7.0f} "
              f"{r['p90_ms']:>7.0f} {r['p99_ms']:>7.0f} {r['ttft_p50_ms']:>7.0f} {r['ttft_p99_ms']:>7.0f}",
              flush=True)


if __name__ == "__main__":
    main()
