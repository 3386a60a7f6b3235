#!/usr/bin/env python3
"""Benchmark of POST /token-exchange, end to end over HTTPS, against the built-in sandbox.

Run from anywhere (standard library only; needs cargo and wrk):

    bench/exchange.py [--json FILE] [--duration S] [--stores memory,sqlite,redis]
                   [--connections 1,16,64] [--cookies N] [--no-build] [--binary PATH]
                   [--upstream-binary PATH]
                   [--env NAME=VALUE ...] [--prefill N [--prefill-expired]] [--upstream-close]
                   [--callgrind] [--keep-workdir]
    (--stores also takes postgres: a database of its own on 127.0.0.1:5432, made afresh;
     redis-cluster: the cluster named by --cluster-url (bench/fleet starts one); and
     redis-shared: the local Redis with RATE_LIMIT_STORE=redis and a budget never spent, so
     that every exchange pays for the shared limit's two checks)

--prefill N stores N sessions before the server starts, for growth figures: rows in the
server's table (sqlite, postgres), or keys beside the sessions in the shared Redis, living an
hour, deleted at the end (redis). With --prefill-expired they have expired an hour ago, so the
server's sweeper deletes them under the load (sqlite, postgres), or they expire as the first
exchange run starts, so that Redis deletes them by itself under the load (redis).

What it does:
1. `cargo build --profile dist` in the crate (release with thin LTO and one codegen unit), then,
   in a temporary folder, starts two processes of the dist binary (or of the builds named by --binary and --upstream-binary):
   - the upstream: SANDBOX=true on its own port (the emulated LinkedIn under /sandbox/), with a
     fixed key pair, SESSION_STORE=memory and its own generated certificate (with
     --upstream-close, SANDBOX_KEEP_ALIVE=false: HTTP/1.1 only, every connection closed after
     one answer, as an HTTP/1.0-style server such as gunicorn's sync workers does, so that each
     exchange pays for a fresh TCP connection and TLS handshake to the upstream);
   - the server under test: SANDBOX=false, the same key pair, LINKEDIN_ACCESS_TOKEN_URL and
     LINKEDIN_API_URL pointing at the upstream, UPSTREAM_CA_CERT = the upstream's certificate,
     and the session store under test. It is restarted for each store.
2. Gets --cookies (default 1000) distinct signed JSAPI cookies from the upstream's
   /sandbox/oauth2/authorize (members bench-00001, ...) and writes them for wrk (afresh for
   each store: a JSAPI token can be exchanged for 30 minutes).
3. Per store: a warm-up (3 s at 16 connections), GET /healthz at 64 connections for
   --duration seconds (the floor: TLS + HTTP, no exchange), then POST /token-exchange at each
   connection count for --duration seconds, with wrk and bench/exchange.lua, every request
   carrying a different cookie and no session cookie, so each one is a real upstream exchange.
4. For each run: exchanges/s, p50/p90/p99 latency, errors, the server's peak RSS (VmHWM), the
   server's CPU time per exchange (utime+stime from /proc/PID/stat), exchanges/s divided by
   the healthz requests/s, and the server's CPU per exchange divided by its CPU per healthz
   request in the same server start (printed as "exchange ÷ healthz server CPU", the figure
   to compare across machines). Also, in cores over the window: the CPU of the server, the upstream,
   wrk (and redis-server), the machine's user/system/softirq/idle time from /proc/stat, and
   what other processes used (runs where that reaches 0.2 cores are flagged under the table:
   this machine may be shared with builds and tests).
5. Checks, for every wrk run including the warm-up, that the upstream's exchanges_accepted
   (GET /sandbox/stats) grew by exactly the number of 200s the server answered. This is exact
   because exchange.lua stops sending at the end of the window and wrk runs DRAIN_S seconds
   longer, so that every request sent is answered and counted. A MISMATCH, any error or any
   request left in flight makes the script exit 1.

With --callgrind, the server under test runs under valgrind's callgrind, with instrumentation
on only during each wrk run: every run also reports the instructions the server executed per
request. Instruction counts hardly move from run to run, whatever else the machine does, so they
resolve differences of a few percent that CPU time cannot; rates, latencies, CPU and RSS are
then valgrind's, not the service's (use few connections: the server is ~50x slower).

Measurement notes: exchanges/s counts the 200s received inside the --duration window; latency
percentiles are wrk's, with its usual coordinated-omission correction (computed over the window
plus the drain): a single stall adds one synthetic sample per mean request interval it spans,
so at 1 connection a few 40 ms stalls are enough to move p99. The server under test, the
upstream and wrk all share the machine's cores. Loopback TCP work done in softirq is charged to
the machine, not to any process.
Sessions are created with SESSION_IDLE_MINUTES=10 so that the bench leaves no long-lived keys in
a shared Redis. Both servers are stopped on exit, on errors and on Ctrl-C.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
CRATE_DIR = BENCH_DIR.parent
LUA_SCRIPT = BENCH_DIR / "exchange.lua"
BINARY_NAME = "linkedin-token-exchange"

API_KEY = "benchkey"
SECRET_KEY = "bench-secret-0123456789abcdef"
SESSION_KEY = "YmVuY2gtc2Vzc2lvbi1rZXktMDEyMzQ1Njc4OWFiY2Q="  # base64 of 32 bytes
WARMUP_S = 3
WARMUP_CONNECTIONS = 16
HEALTHZ_CONNECTIONS = 64
DRAIN_S = 2  # wrk runs this much longer than the window, to let answers in flight arrive
WRK_TIMEOUT = "5s"  # also the size of wrk's latency histogram
REDIS = ("127.0.0.1", 6379)
POSTGRES = ("127.0.0.1", 5432)
BENCH_DATABASE = "lte_bench"  # dropped and created afresh for each postgres run
OTHERS_WARN_CORES = 0.2  # other processes' CPU during a run above which the run is flagged
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A failure that ends the run with a message (and the servers' logs)."""


# ------------------------------------------------------------------------------------------
# Processes


class Service:
    """One process of the binary, in its own session so that Ctrl-C reaches only us."""

    def __init__(self, name: str, binary: Path, env: dict[str, str], port: int, workdir: Path,
                 callgrind: bool = False):
        self.name, self.port = name, port
        self.callgrind_out = workdir / f"{name}.callgrind" if callgrind else None
        self.log_path = workdir / f"{name}.log"
        self.log = open(self.log_path, "wb")
        # Nothing of the caller's configuration leaks in (and there is no .env in workdir).
        ours = ("LINKEDIN_", "SESSION_", "UPSTREAM_", "TLS_", "PUBLIC_ORIGIN", "SANDBOX", "BIND")
        full_env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        full_env["RUST_LOG"] = "warn"
        full_env.update(env)  # --env may set RUST_LOG
        full_env["BIND"] = f"127.0.0.1:{port}"
        command = [str(binary)]
        if self.callgrind_out is not None:
            command = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                       f"--callgrind-out-file={self.callgrind_out}"] + command
        self.proc = subprocess.Popen(
            command, cwd=workdir, env=full_env, stdin=subprocess.DEVNULL,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        context = ssl._create_unverified_context()  # the certificate may not exist yet
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=context, timeout=2)
                conn.request("GET", "/healthz")
                response = conn.getresponse()
                body = response.read()
                conn.close()
                if response.status == 200 and body.strip() == b"ok":
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise BenchError(f"{self.name} did not answer /healthz within {timeout} s:\n{self.log_tail()}")

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.pid)

    def count_instructions(self, on: bool) -> int | None:
        """Under callgrind: starts counting from zero (on), or stops and returns the count."""
        if self.callgrind_out is None:
            return None
        control = lambda *a: subprocess.run(["callgrind_control", *a, str(self.pid)], check=True,
                                            capture_output=True)
        if on:
            control("--instr=on")
            control("--zero")
            return None
        control("--instr=off")
        before = set(self.callgrind_out.parent.glob(self.callgrind_out.name + ".*"))
        control("--dump")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for dump in set(self.callgrind_out.parent.glob(self.callgrind_out.name + ".*")) - before:
                for line in dump.read_text(errors="replace").splitlines():
                    if line.startswith("totals:"):
                        return int(line.split()[1])
            time.sleep(0.2)
        raise BenchError(f"callgrind wrote no dump for {self.name}")

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise BenchError(f"no VmHWM for {self.name}")

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        text = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join("    " + line for line in text[-lines:]) or "    (empty log)"

    def stop(self) -> None:
        """SIGTERM (graceful, up to the server's 20 s grace), then SIGKILL."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=25)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def process_cpu_seconds(pid: int) -> float:
    """utime + stime (fields 14 and 15 of /proc/PID/stat), all threads."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # fields from 3 on; the name may hold spaces
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def redis_pid() -> int | None:
    """The local redis-server's pid (read-only use: its CPU time), when there is one."""
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "redis-server":
                if f":{REDIS[1]}" in (entry / "cmdline").read_text().replace("\0", " "):
                    return int(entry.name)
        except OSError:
            continue
    return None


def snapshot(server: Service, upstream: Service, wrk_pid: int, extra: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far: our processes (and `extra` ones), and the machine's by kind."""
    names = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")
    values = [int(v) / CLK_TCK for v in Path("/proc/stat").read_text().split()[1:1 + len(names)]]
    machine = dict(zip(names, values))
    def cpu(pid: int) -> float:
        try:
            return process_cpu_seconds(pid)
        except (OSError, ValueError):
            return 0.0
    return {
        **{name: cpu(pid) for name, pid in extra.items()},
        "time": time.monotonic(),
        "server": server.cpu_seconds(),
        "upstream": upstream.cpu_seconds(),
        "wrk": cpu(wrk_pid),
        "machine_user": machine["user"] + machine["nice"],
        "machine_system": machine["system"] + machine["irq"],
        "machine_softirq": machine["softirq"],
        "machine_steal": machine["steal"],
        "machine_idle": machine["idle"] + machine["iowait"],
    }


def dev_pair(cert: Path, key: Path) -> None:
    """A self-signed pair for localhost at `cert` and `key`: the service generates one only at
    its default paths, and a TLS_CERT/TLS_KEY it is given must exist."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
         "-nodes", "-days", "30", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1",
         # Not a CA: the upstream's certificate is its own trust anchor (UPSTREAM_CA_CERT), and
         # the verifier refuses a CA certificate as the end entity (CaUsedAsEndEntity), which
         # is what OpenSSL 3's default `req -x509` makes.
         "-addext", "basicConstraints=critical,CA:FALSE",
         "-keyout", str(key), "-out", str(cert)],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_answers() -> bool:
    try:
        with socket.create_connection(POSTGRES, timeout=1):
            return True
    except OSError:
        return False


def psql(database: str, sql: str) -> None:
    subprocess.run(["psql", "-h", POSTGRES[0], "-p", str(POSTGRES[1]), "-U", "postgres", "-d", database,
                    "-v", "ON_ERROR_STOP=1", "-q", "-c", sql], check=True, capture_output=True)


def fresh_postgres(prefill: int, expired: bool) -> tuple[str, float]:
    """A new database for the run (the server creates its table), with `prefill` sessions
    written in the server's schema and encoding when asked. Returns its URL and the seconds
    the prefill took."""
    psql("postgres", f"drop database if exists {BENCH_DATABASE} with (force)")
    psql("postgres", f"create database {BENCH_DATABASE}")
    started = time.monotonic()
    if prefill:
        offset = "- interval '1 hour'" if expired else "+ interval '1 day'"
        psql(BENCH_DATABASE, 'create schema if not exists "tower_sessions"; '
             'create table if not exists "tower_sessions"."session" '
             '(id text primary key not null, data bytea not null, expiry_date timestamptz not null); '
             'insert into "tower_sessions"."session" '
             f"select 'prefill-' || lpad(g::text, 9, '0'), decode(repeat('78', 200), 'hex'), now() {offset} "
             f"from generate_series(1, {prefill}) g")
    return (f"postgres://postgres@{POSTGRES[0]}:{POSTGRES[1]}/{BENCH_DATABASE}",
            time.monotonic() - started)


def postgres_left() -> int:
    out = subprocess.run(["psql", "-h", POSTGRES[0], "-p", str(POSTGRES[1]), "-U", "postgres", "-d",
                          BENCH_DATABASE, "-tAc",
                          """select count(*) from "tower_sessions"."session" where id like 'prefill-%'"""],
                         check=True, capture_output=True, text=True)
    return int(out.stdout.strip())


def redis_answers() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


# ------------------------------------------------------------------------------------------
# The upstream sandbox


class Upstream:
    """HTTPS calls to the sandbox, verifying its generated certificate."""

    def __init__(self, port: int, cert: Path):
        self.port = port
        self.context = ssl.create_default_context(cafile=str(cert))
        self.conn = None

    def _call(self, method: str, path: str, body: str | None = None) -> dict:
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if body is not None else {}
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPSConnection("localhost", self.port, context=self.context, timeout=10)
            try:
                self.conn.request(method, path, body=body, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if response.status != 200:
                raise BenchError(f"upstream {method} {path}: {response.status} {data[:200]!r}")
            return json.loads(data)
        raise AssertionError("unreachable")

    def cookie(self, member_id: str) -> str:
        """The JSAPI cookie value a browser would send: encodeURIComponent(JSON.stringify(...))."""
        form = urllib.parse.urlencode({"api_key": API_KEY, "member_id": member_id})
        payload = self._call("POST", "/sandbox/oauth2/authorize", form)
        text = json.dumps(payload, separators=(",", ":"))
        return urllib.parse.quote(text, safe="-_.!~*'()")

    def exchanges_accepted(self) -> int:
        return int(self._call("GET", "/sandbox/stats")["exchanges_accepted"])

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()


# ------------------------------------------------------------------------------------------
# wrk


def run_wrk(port: int, mode: str, connections: int, window_s: int, cookies: Path,
            server: Service, upstream_proc: Service, upstream: Upstream, extra: dict[str, int]) -> dict:
    """One wrk run; returns its figures, with the server's CPU and the upstream's count delta."""
    threads = 1 if connections == 1 else 2
    origin = f"https://localhost:{port}"
    path = "/healthz" if mode == "healthz" else "/token-exchange"
    args = ["wrk", "--latency", "-t", str(threads), "-c", str(connections),
            "-d", f"{window_s + DRAIN_S}s", "--timeout", WRK_TIMEOUT, "-s", str(LUA_SCRIPT),
            f"https://localhost:{port}{path}", "--", mode, str(window_s)]
    if mode == "exchange":
        args += [str(cookies), API_KEY, origin, str(threads)]

    accepted_before = upstream.exchanges_accepted()
    load_before = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    server_cpu_before = server.cpu_seconds()
    # wrk is the only child reaped during the run, so RUSAGE_CHILDREN's growth is wrk's CPU.
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    server.count_instructions(on=True)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # CPU shares are taken over the window only (the drain after it is mostly idle).
        start = snapshot(server, upstream_proc, proc.pid, extra)
        time.sleep(max(0.0, start["time"] + window_s - time.monotonic()))
        end = snapshot(server, upstream_proc, proc.pid, extra)
        out, err = proc.communicate()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    instructions = server.count_instructions(on=False)
    server_cpu = server.cpu_seconds() - server_cpu_before
    accepted_after = upstream.exchanges_accepted()
    window = end["time"] - start["time"]
    share = {k: (end[k] - start[k]) / window for k in start if k != "time"}
    # Roughly what processes other than these three used (other people's builds and tests).
    share["others"] = max(0.0, share["machine_user"] + share["machine_system"]
                          - share["server"] - share["upstream"] - share["wrk"]
                          - sum(share[name] for name in extra))

    line = next((l for l in out.splitlines() if l.startswith("BENCH ")), None)
    if proc.returncode != 0 or line is None:
        raise BenchError(f"wrk failed ({proc.returncode}):\n{out}\n{err}")
    r: dict = {}
    for item in line.split()[1:]:
        key, _, value = item.partition("=")
        r[key] = value if key == "statuses" else float(value) if "." in value else int(value)
    first_error = next((l[len("BENCH_FIRST_ERROR "):] for l in out.splitlines()
                        if l.startswith("BENCH_FIRST_ERROR ")), "")

    socket_errors = r["connect"] + r["read"] + r["write"] + r["timeout"]
    result = {
        "mode": mode,
        "connections": connections,
        "threads": threads,
        "window_s": window_s,
        "requests_per_s": r["ok_window"] / window_s,
        "ok": r["ok"],
        "ok_in_window": r["ok_window"],
        "sent": r["sent"],
        "answered": r["answered"],
        "p50_ms": r["p50_us"] / 1000,
        "p90_ms": r["p90_us"] / 1000,
        "p99_ms": r["p99_us"] / 1000,
        "mean_ms": r["mean_us"] / 1000,
        "max_ms": r["max_us"] / 1000,
        "non200": r["non200"],
        "statuses": r["statuses"],
        "first_error": first_error,
        "socket_errors": {k: r[k] for k in ("connect", "read", "write", "timeout")},
        "in_flight_at_stop": r["in_flight_at_stop"],
        "errors": r["non200"] + socket_errors + abs(r["in_flight_at_stop"]),
        # Over the whole run (window and drain), so that it matches the 200s counted.
        "server_cpu_s": server_cpu,
        "server_cpu_us_per_request": server_cpu * 1e6 / r["ok"] if r["ok"] else None,
        # Under --callgrind: what the server executed, over the whole run, per 200.
        "instructions_per_request": instructions / r["ok"] if instructions is not None and r["ok"] else None,
        "wrk_cpu_s": (children_after.ru_utime + children_after.ru_stime
                      - children_before.ru_utime - children_before.ru_stime),
        # In cores, over the window. machine_* is everything that ran on the machine meanwhile,
        # ours and anybody else's; softirq (loopback networking) is not charged to processes.
        "cpu_cores_in_window": share,
        "load_average_before": load_before,
        "server_peak_rss_mib": server.peak_rss_mib(),
        "upstream_accepted": accepted_after - accepted_before,
    }
    expected = r["ok"] if mode == "exchange" else 0
    result["count_check"] = "ok" if result["upstream_accepted"] == expected else "MISMATCH"
    return result


# ------------------------------------------------------------------------------------------
# Reporting


def machine() -> dict:
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": model, "kernel": platform.release()}


def describe(label: str, r: dict) -> str:
    """Two lines about one run (three with errors)."""
    c = r["cpu_cores_in_window"]
    redis = f" redis-server {c['redis']:.2f}," if "redis" in c else ""
    text = (f"  {label:<22} {r['requests_per_s']:9.1f}/s  p50 {r['p50_ms']:6.2f}  p90 {r['p90_ms']:6.2f}"
            f"  p99 {r['p99_ms']:6.2f}  max {r['max_ms']:6.1f} ms  errors {r['errors']}  200s {r['ok']}"
            f"  upstream +{r['upstream_accepted']} [{r['count_check']}]  peak RSS {r['server_peak_rss_mib']:.1f} MiB"
            + (f"  instructions/request {r['instructions_per_request']:,.0f}"
               if r.get("instructions_per_request") is not None else "")
            + f"\n    cores: server {c['server']:.2f}, upstream {c['upstream']:.2f}, wrk {c['wrk']:.2f},{redis}"
            f" other processes ~{c['others']:.2f}; machine user {c['machine_user']:.2f}"
            f" system {c['machine_system']:.2f} softirq {c['machine_softirq']:.2f}"
            f" steal {c['machine_steal']:.2f} idle {c['machine_idle']:.2f}")
    if r["errors"]:
        text += (f"\n    non-200 {r['non200']} ({r['statuses']}), socket {r['socket_errors']},"
                 f" in flight at stop {r['in_flight_at_stop']}; first error body: {r['first_error']!r}")
    return text


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Linux {m['kernel']}; "
        f"{report['config']['duration_s']} s per run, {report['config']['cookies']} distinct cookies; "
        "server under test, upstream sandbox and wrk on the same machine"
        + ("; the upstream closes every connection after one answer." if report["config"]["upstream_close"]
           else "; upstream connections kept alive."),
        "",
        "| store | connections | exchanges/s | p50 ms | p90 ms | p99 ms | errors "
        "| peak RSS MiB | server CPU µs/exchange | ÷ healthz | CPU ÷ healthz CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for store in report["stores"]:
        floor = store["healthz"]["requests_per_s"]
        for r in store["runs"]:
            cpu = r["server_cpu_us_per_request"]
            lines.append(
                f"| {store['store']} | {r['connections']} | {r['requests_per_s']:.0f} | {r['p50_ms']:.2f} "
                f"| {r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['server_peak_rss_mib']:.1f} "
                f"| {cpu:.0f} | {r['requests_per_s'] / floor:.3f} | {r.get('cpu_ratio_to_healthz', 0):.2f}x |"
                if cpu is not None else
                f"| {store['store']} | {r['connections']} | 0 | - | - | - | {r['errors']} | - | - | - | - |")
    disturbed = [f"{s['store']}/{'healthz' if r['mode'] == 'healthz' else r['connections']}"
                 f" ({r['cpu_cores_in_window']['others']:.2f})"
                 for s in report["stores"] for r in [s["healthz"]] + s["runs"]
                 if r["cpu_cores_in_window"]["others"] >= OTHERS_WARN_CORES]
    lines.append("")
    if disturbed:
        lines.append(f"Runs during which other processes used {OTHERS_WARN_CORES} cores or more "
                     f"(store/connections, cores): {', '.join(disturbed)}; their figures are low.")
        lines.append("")
    if report["config"]["callgrind"]:
        lines.append("Instructions the server executed per request (callgrind): " + "; ".join(
            f"{s['store']} {label} {r['instructions_per_request']:,.0f}"
            for s in report["stores"]
            for label, r in [("healthz", s["healthz"])] + [(f"exchange {x['connections']} conns", x)
                                                             for x in s["runs"]]
            if r.get("instructions_per_request") is not None))
        lines.append("")
    lines.append("healthz floor (GET /healthz over TLS, 64 connections): " + "; ".join(
        f"{s['store']} run {s['healthz']['requests_per_s']:.0f} req/s (p50 {s['healthz']['p50_ms']:.2f} ms, "
        f"p99 {s['healthz']['p99_ms']:.2f} ms, server CPU {s['healthz']['server_cpu_us_per_request']:.1f} µs "
        f"a request)" for s in report["stores"]))
    lines.append("")
    for s in report["stores"]:
        for r in s["runs"]:
            if r.get("cpu_ratio_to_healthz") is not None:
                lines.append(f"{s['store']}, {r['connections']} connections: exchange ÷ healthz server CPU "
                             f"{r['cpu_ratio_to_healthz']:.2f}x; peak RSS {s['server_peak_rss_mib']:.1f} MiB")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Main


def dist_binary() -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", CRATE_DIR / "target"))
    if not target.is_absolute():
        target = CRATE_DIR / target
    binary = target / "dist" / BINARY_NAME
    if not binary.is_file():
        raise BenchError(f"no binary at {binary}")
    return binary


def prefill_sqlite(path: Path, count: int, expired: bool) -> float:
    """Writes `count` sessions into a new SQLite sessions file, in the table and encoding the
    server uses (expiry as RFC 3339 text), expired an hour ago or expiring in a day. The data is
    a stand-in: these rows are swept or looked up by id, never decoded. Returns the seconds taken."""
    import sqlite3
    import datetime
    started = time.monotonic()
    when = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(hours=-1 if expired else 24)
    expiry = when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    db = sqlite3.connect(path)
    db.execute("pragma journal_mode=wal")
    db.execute("create table if not exists tower_sessions "
               "(id text primary key not null, data blob not null, expiry_date integer not null)")
    rows = ((f"prefill-{i:09d}", b"x" * 200, expiry) for i in range(count))
    db.executemany("insert into tower_sessions (id, data, expiry_date) values (?, ?, ?)", rows)
    db.commit()
    db.execute("pragma wal_checkpoint(truncate)")
    db.close()
    return time.monotonic() - started


def redis_pipe(commands) -> None:
    """Sends RESP commands (lists of strings) to the local Redis through `redis-cli --pipe`."""
    def resp(parts: list[str]) -> bytes:
        return (f"*{len(parts)}\r\n" + "".join(f"${len(p.encode())}\r\n{p}\r\n" for p in parts)).encode()
    proc = subprocess.Popen(["redis-cli", "-h", REDIS[0], "-p", str(REDIS[1]), "--pipe"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    chunk = []
    for command in commands:
        chunk.append(resp(command))
        if len(chunk) == 10000:
            proc.stdin.write(b"".join(chunk))
            chunk = []
    proc.stdin.write(b"".join(chunk))
    proc.stdin.close()
    out = proc.stdout.read().decode(errors="replace")
    if proc.wait() != 0 or "errors: 0" not in out:
        raise BenchError(f"redis-cli --pipe failed: {out.strip()}")


def prefill_redis(count: int, expire_in: int | None) -> float:
    """Writes `count` keys beside the server's sessions in the shared Redis: living an hour, or
    `expire_in` seconds, so that Redis expires them by itself while the load runs. The values
    are stand-ins (never read). They are deleted after the run."""
    started = time.monotonic()
    ttl = str(expire_in or 3600)
    value = "x" * 200
    redis_pipe(["SET", f"prefill-{i:09d}", value, "EX", ttl] for i in range(count))
    return time.monotonic() - started


def redis_prefilled_left() -> int:
    out = subprocess.run(["redis-cli", "-h", REDIS[0], "-p", str(REDIS[1]), "--scan", "--pattern",
                          "prefill-*"], check=True, capture_output=True)
    return out.stdout.count(b"\n")


def redis_unprefill(count: int) -> None:
    redis_pipe(["UNLINK", *(f"prefill-{j:09d}" for j in range(i, min(i + 1000, count)))]
               for i in range(0, count, 1000))


def prefilled_left(path: Path) -> int:
    """How many prefilled sessions the store still holds."""
    import sqlite3
    db = sqlite3.connect(path, timeout=10)
    try:
        return db.execute("select count(*) from tower_sessions where id like 'prefill-%'").fetchone()[0]
    finally:
        db.close()


def env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, not {text!r}")
    return name, value


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="FILE", type=Path, help="write every figure to FILE as JSON")
    parser.add_argument("--duration", metavar="S", type=int, default=10, help="seconds per measured run (10)")
    parser.add_argument("--cluster-url", default=None, metavar="URL",
                        help="the redis-cluster:// URL of --stores redis-cluster")
    parser.add_argument("--stores", default=None,
                        help="comma-separated, from memory,sqlite,redis (default: all; redis only when "
                             "127.0.0.1:6379 answers)")
    parser.add_argument("--connections", default="1,16,64", help="comma-separated connection counts (1,16,64)")
    parser.add_argument("--cookies", type=int, default=1000, help="distinct cookies to rotate through (1000)")
    parser.add_argument("--prefill", type=int, default=0, metavar="N",
                        help="sqlite, postgres, redis: store N sessions before the server starts "
                             "(growth figures)")
    parser.add_argument("--prefill-expired", action="store_true",
                        help="with --prefill: the sessions have already expired (redis: expire as "
                             "the first exchange run starts), so the server's sweeper (redis: "
                             "Redis itself) deletes them under the load (mass expiry)")
    parser.add_argument("--upstream-close", action="store_true",
                        help="the upstream closes every connection after one answer (HTTP/1.1, "
                             "Connection: close): the cost of a fresh upstream connection")
    parser.add_argument("--callgrind", action="store_true",
                        help="run the server under callgrind and report instructions per request "
                             "(exact and repeatable; the other figures are then valgrind's)")
    parser.add_argument("--keep-workdir", action="store_true",
                        help="keep the temporary folder (logs, certificates, callgrind dumps for "
                             "callgrind_annotate) and print its path")
    parser.add_argument("--no-build", action="store_true", help="use the dist binary as it is")
    parser.add_argument("--env", action="append", default=[], type=env_pair, metavar="NAME=VALUE",
                        help="extra environment for the server under test (repeatable), e.g. "
                             "METRICS_BIND=127.0.0.1:0 to measure with metrics on")
    parser.add_argument("--binary", type=Path,
                        help="benchmark this build of the service (another commit's, say) instead "
                             "of the crate's dist binary; implies --no-build")
    parser.add_argument("--upstream-binary", type=Path,
                        help="run the upstream sandbox from this build instead (so that builds "
                             "compared with --binary all talk to the same upstream)")
    args = parser.parse_args()
    if args.duration < 1:
        parser.error("--duration must be at least 1")
    if args.cookies < 1 or args.cookies > 99999:
        parser.error("--cookies must be between 1 and 99999")
    try:
        args.connections = [int(c) for c in args.connections.split(",") if c.strip()]
    except ValueError:
        parser.error("--connections takes integers, as in 1,16,64")
    if not args.connections or min(args.connections) < 1:
        parser.error("--connections takes positive integers")
    if WARMUP_S + (args.duration + DRAIN_S + 1) * (1 + len(args.connections)) > 25 * 60:
        parser.error("the runs of one store would outlast the 30 minutes a JSAPI token is valid")
    if args.stores is None:
        args.stores = ["memory", "sqlite"] + (["redis"] if redis_answers() else [])
    else:
        args.stores = [s.strip() for s in args.stores.split(",") if s.strip()]
        unknown = set(args.stores) - {"memory", "sqlite", "redis", "postgres", "redis-cluster",
                                      "redis-shared"}
        if unknown or not args.stores:
            parser.error(f"--stores takes memory, sqlite, redis, postgres, redis-cluster and "
                         f"redis-shared, not {', '.join(sorted(unknown))}")
        if "redis-cluster" in args.stores and not args.cluster_url:
            parser.error("--stores redis-cluster needs --cluster-url redis-cluster://HOST:PORT,…")
        if "postgres" in args.stores and not postgres_answers():
            print("note: postgres skipped: nothing answers on 127.0.0.1:5432", file=sys.stderr)
            args.stores.remove("postgres")
        for needs_redis in ("redis", "redis-shared"):
            if needs_redis in args.stores and not redis_answers():
                print(f"note: {needs_redis} skipped: nothing answers PING on 127.0.0.1:6379",
                      file=sys.stderr)
                args.stores.remove(needs_redis)
    return args


def on_signal(signum, _frame):
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> int:
    args = parse_args()
    # Ctrl-C and SIGTERM end the run through the cleanup below (even if SIGINT came ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_signal)
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed")
    if args.callgrind and shutil.which("callgrind_control") is None:
        raise BenchError("--callgrind needs valgrind (callgrind_control) installed")
    if not args.no_build and args.binary is None:
        print("building: cargo build --profile dist", flush=True)
        subprocess.run(["cargo", "build", "--profile", "dist"], cwd=CRATE_DIR, check=True)
    binary = args.binary.resolve() if args.binary else dist_binary()

    workdir = Path(tempfile.mkdtemp(prefix="bench-exchange-"))
    services: list[Service] = []
    upstream = None
    redis_prefilled = 0  # keys to delete from the shared Redis at the end
    failures: list[str] = []
    report = {
        "machine": machine(),
        "command": " ".join(["bench/exchange.py"] + sys.argv[1:]),
        "config": {"duration_s": args.duration, "upstream_close": args.upstream_close,
                   "callgrind": args.callgrind, "prefill": args.prefill,
                   "prefill_expired": args.prefill_expired,
                   "connections": args.connections, "cookies": args.cookies,
                   "warmup": {"seconds": WARMUP_S, "connections": WARMUP_CONNECTIONS},
                   "healthz_connections": HEALTHZ_CONNECTIONS, "drain_s": DRAIN_S},
        "stores": [],
    }
    try:
        # The upstream: the emulated LinkedIn.
        up_port = free_port()
        up_cert, up_key = workdir / "upstream" / "cert.pem", workdir / "upstream" / "key.pem"
        up_cert.parent.mkdir()
        dev_pair(up_cert, up_key)
        up_binary = args.upstream_binary.resolve() if args.upstream_binary else binary
        up = Service("upstream", up_binary, {
            "SANDBOX": "true", "LINKEDIN_API_KEY": API_KEY, "LINKEDIN_SECRET_KEY": SECRET_KEY,
            "SESSION_STORE": "memory", "TLS_CERT": str(up_cert), "TLS_KEY": str(up_key),
            "SANDBOX_KEEP_ALIVE": "false" if args.upstream_close else "true",
        }, up_port, workdir)
        services.append(up)
        up.wait_ready()
        upstream = Upstream(up_port, up_cert)
        print(f"upstream sandbox: pid {up.pid}, https://localhost:{up_port}/sandbox/", flush=True)

        cookies = workdir / "cookies.txt"
        for store in args.stores:
            # Fresh cookies for each store: a JSAPI token is exchangeable for 30 minutes.
            started = time.monotonic()
            values = [upstream.cookie(f"bench-{i:05d}") for i in range(1, args.cookies + 1)]
            if len(set(values)) != len(values):
                raise BenchError("the upstream issued duplicate cookies")
            cookies.write_text("\n".join(values) + "\n")
            print(f"\n{len(values)} distinct cookies in {time.monotonic() - started:.1f} s -> {cookies}",
                  flush=True)
            store_url = {"memory": "memory", "sqlite": f"sqlite://{workdir}/sessions.db",
                         "redis": f"redis://{REDIS[0]}:{REDIS[1]}", "postgres": "",
                         "redis-cluster": args.cluster_url or "",
                         "redis-shared": f"redis://{REDIS[0]}:{REDIS[1]}"}[store]
            # Volume from one address is the point here: no rate limit, or (redis-shared) one
            # so large that it never refuses, to measure what the shared checks cost.
            limits = ({"RATE_LIMIT": "1000000000,1000000", "RATE_LIMIT_STORE": "redis"}
                      if store == "redis-shared" else {"RATE_LIMIT": "off"})
            took = None
            if store == "postgres":
                store_url, took = fresh_postgres(args.prefill, args.prefill_expired)
            elif store == "sqlite" and args.prefill:
                took = prefill_sqlite(workdir / "sessions.db", args.prefill, args.prefill_expired)
            elif store == "redis" and args.prefill:
                redis_prefilled = max(redis_prefilled, args.prefill)
                # Timed to expire as the first exchange run starts (after warm-up and healthz).
                took = prefill_redis(args.prefill, WARMUP_S + args.duration + 4
                                     if args.prefill_expired else None)
            if args.prefill and took is not None:
                state = "expired" if args.prefill_expired else "live"
                print(f"prefilled {args.prefill} {state} sessions in {took:.1f} s", flush=True)
            port = free_port()
            certdir = workdir / f"server-{store}"
            certdir.mkdir()
            dev_pair(certdir / "cert.pem", certdir / "key.pem")
            server = Service(f"server-{store}", binary, {
                "SANDBOX": "false", "LINKEDIN_API_KEY": API_KEY, "LINKEDIN_SECRET_KEY": SECRET_KEY,
                "LINKEDIN_ACCESS_TOKEN_URL": f"https://localhost:{up_port}/sandbox/uas/oauth/accessToken",
                "LINKEDIN_API_URL": f"https://localhost:{up_port}/sandbox",
                "UPSTREAM_CA_CERT": str(up_cert), "TLS_CERT": str(certdir / "cert.pem"),
                "TLS_KEY": str(certdir / "key.pem"), "SESSION_STORE": store_url,
                "SESSION_IDLE_MINUTES": "10", "SESSION_KEYS": SESSION_KEY,
                **limits,
                **dict(args.env),
            }, port, workdir, callgrind=args.callgrind)
            services.append(server)
            server.wait_ready(timeout=180 if args.callgrind else 30)
            extra = {}
            if store in ("redis", "redis-shared") and (pid := redis_pid()) is not None:
                extra["redis"] = pid
            sweep_start = time.monotonic()
            print(f"== store {store} ({store_url}): server pid {server.pid}, port {port}", flush=True)

            def measure(label, mode, connections, seconds):
                r = run_wrk(port, mode, connections, seconds, cookies, server, up, upstream, extra)
                print(describe(label, r), flush=True)
                if r["count_check"] != "ok":
                    failures.append(f"MISMATCH ({store}, {label}): upstream accepted {r['upstream_accepted']}"
                                    f" exchanges, the server answered {r['ok'] if mode == 'exchange' else 0} 200s")
                if r["errors"]:
                    failures.append(f"{r['errors']} errors ({store}, {label})")
                time.sleep(0.5)
                return r

            entry = {"store": store, "session_store": store_url}
            entry["warmup"] = measure(f"warm-up {WARMUP_CONNECTIONS} conns", "exchange",
                                      WARMUP_CONNECTIONS, WARMUP_S)
            entry["healthz"] = measure(f"healthz {HEALTHZ_CONNECTIONS} conns", "healthz",
                                       HEALTHZ_CONNECTIONS, args.duration)
            entry["runs"] = []
            for connections in args.connections:
                r = measure(f"exchange {connections} conns", "exchange", connections, args.duration)
                r["ratio_to_healthz"] = r["requests_per_s"] / entry["healthz"]["requests_per_s"]
                floor_cpu = entry["healthz"]["server_cpu_us_per_request"]
                if r["server_cpu_us_per_request"] is not None and floor_cpu:
                    r["cpu_ratio_to_healthz"] = r["server_cpu_us_per_request"] / floor_cpu
                    print(f"  exchange ÷ healthz server CPU ({connections} conns): "
                          f"{r['cpu_ratio_to_healthz']:.2f}x ({r['server_cpu_us_per_request']:.1f} µs "
                          f"per exchange ÷ {floor_cpu:.1f} µs per healthz); peak RSS so far "
                          f"{r['server_peak_rss_mib']:.1f} MiB", flush=True)
                entry["runs"].append(r)
            entry["server_peak_rss_mib"] = server.peak_rss_mib()
            left = {"sqlite": lambda: prefilled_left(workdir / "sessions.db"),
                    "postgres": postgres_left, "redis": redis_prefilled_left}.get(store)
            if args.prefill and left is not None:
                entry["prefilled"] = args.prefill
                entry["prefilled_left"] = left()
                print(f"  prefilled sessions left {time.monotonic() - sweep_start:.0f} s after the "
                      f"start: {entry['prefilled_left']} of {args.prefill}", flush=True)
                for line in server.log_path.read_text(errors="replace").splitlines():
                    if "deleted expired sessions" in line:
                        print(f"  server: {line.strip()}", flush=True)
            report["stores"].append(entry)
            server.stop()
            services.remove(server)
            if server.proc.returncode not in (0, -signal.SIGTERM):
                failures.append(f"server ({store}) exited with {server.proc.returncode}")
    except BaseException as err:
        if isinstance(err, (BenchError, subprocess.CalledProcessError, KeyboardInterrupt, OSError)):
            reason = "interrupted" if isinstance(err, KeyboardInterrupt) else str(err)
            print(f"\nbench/exchange.py: stopped: {reason}", file=sys.stderr)
            for service in services:
                print(f"--- {service.name} log (last lines):\n{service.log_tail()}", file=sys.stderr)
            failures.append(f"stopped: {reason}")
        else:
            raise
    finally:
        if upstream is not None:
            upstream.close()
        for service in reversed(services):
            service.stop()
        if redis_prefilled:
            redis_unprefill(redis_prefilled)
        if not failures and not args.keep_workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"(logs and cookies kept in {workdir})", file=sys.stderr)

    report["failures"] = failures
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    if report["stores"]:
        print("\n" + markdown(report))
    if failures:
        print("\nFAILED:\n" + "\n".join("  " + f for f in failures))
        return 1
    print("\nall counts match: every 200 was one exchange accepted upstream; no errors")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as err:
        print(f"bench/exchange.py: {err}", file=sys.stderr)
        sys.exit(1)
