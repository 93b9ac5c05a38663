"""Connections that never send a whole request, against a real ``banditkit serve``: thousands of idle and
half-sent ones do not slow or fail the other clients, and the server closes them when their deadline passes
(the head, the body, the keep-alive timeout); at the connection cap it closes the waiting ones to let new
clients in, and says so once."""

from __future__ import annotations

import errno
import os
import resource
import selectors
import socket
import threading
import time

import httpx
import numpy as np

STALE = 3000  # connections that never complete a request (plus a few kept alive after one)
TIMEOUT_S = 8.0


def allow_open_files(needed: int) -> None:
    """Raise this test process's soft open-file limit to at least ``needed`` (failing if the hard limit is lower)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        assert hard == resource.RLIM_INFINITY or hard >= needed, f"the hard open-file limit {hard} is under {needed}"
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def open_descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def connect(port: int, payload: bytes = b"") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    if payload:
        sock.sendall(payload)
    return sock


def closed_by_server(sockets: list[socket.socket], timeout_s: float, enough: int | None = None) -> int:
    """Wait up to ``timeout_s`` for the server to close ``sockets``, or ``enough`` of them (an answer before the
    close is read and dropped); how many it closed."""
    selector = selectors.DefaultSelector()
    for each in sockets:
        each.setblocking(False)
        selector.register(each, selectors.EVENT_READ, each)
    closed, deadline = 0, time.monotonic() + timeout_s
    enough = len(sockets) if enough is None else enough
    while closed < enough and time.monotonic() < deadline:
        for key, _ in selector.select(timeout=0.1):
            sock: socket.socket = key.data
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                data = b""
            except OSError as error:
                assert error.errno == errno.EAGAIN, error
                continue
            if not data:
                selector.unregister(sock)
                closed += 1
    selector.close()
    return closed


class Load:
    """``pairs`` decisions, each with its reward (every tenth pair on a new connection): each request's latency
    in seconds, the failures, and how many rewards were sent."""

    def __init__(self, base_url: str, pairs: int) -> None:
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.rewards = 0
        with httpx.Client(base_url=base_url, timeout=10.0) as kept:
            for index in range(pairs):
                client = kept if index % 10 else httpx.Client(base_url=base_url, timeout=10.0)
                try:
                    started = time.perf_counter()
                    decision = client.post("/v1/experiments/hero/decisions", json={"unit": f"u{index}"})
                    decided = time.perf_counter()
                    reward = client.post(
                        "/v1/experiments/hero/rewards",
                        json={"decision_id": decision.json()["decision_id"], "value": 1.0},
                    )
                    self.latencies += [decided - started, time.perf_counter() - decided]
                    self.rewards += 1
                    if decision.status_code != 200 or reward.status_code != 200:
                        self.failures.append(f"{decision.status_code} {reward.status_code} {reward.text}")
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))
                finally:
                    if client is not kept:
                        client.close()

    def p99_ms(self) -> float:
        return float(np.percentile(self.latencies, 99)) * 1000


def test_idle_and_half_sent_connections_time_out_while_other_clients_are_served(tmp_path, banditkit_serve):
    allow_open_files(STALE + 1000)
    server = banditkit_serve(
        "--store",
        f"sqlite:///{tmp_path / 'service.db'}",
        "--header-timeout",
        str(TIMEOUT_S),
        "--body-timeout",
        str(TIMEOUT_S),
        "--keep-alive-timeout",
        str(TIMEOUT_S),
    )
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        created = http.post("/v1/experiments", json={"name": "hero", "arms": ["a", "b", "c"]})
        assert created.status_code == 201, created.text
        pending = http.post("/v1/experiments/hero/decisions", json={}).json()["decision_id"]
    before = Load(server.url, 50)  # the same load without the stale connections, to tell a busy machine apart
    baseline = open_descriptors(server.pid)
    # Bodies that stop 10 bytes short: valid JSON prefixes, which must never be handled.
    reward = b'{"decision_id": "%s", "value": 1.0}' % pending.encode()
    half_body = (
        b"POST /v1/experiments/hero/rewards HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(reward) + 10, reward)
    )
    create = b'{"name": "ghost", "arms": ["a", "b"]}'  # through FastAPI's routes
    half_create = (
        b"POST /v1/experiments HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(create) + 10, create)
    )
    payloads = [
        b"",  # connects and sends nothing
        b"POST /v1/experiments/hero/rewa",  # half a request line
        b"POST /v1/experiments/hero/decisions HTTP/1.1\r\nhost: x\r\ncontent-le",  # half the headers
        half_body,
        half_create,
    ]
    started = time.monotonic()
    stale = [connect(server.port, payloads[i % len(payloads)]) for i in range(STALE)]
    kept_alive = [connect(server.port, b"GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n") for _ in range(10)]
    while open_descriptors(server.pid) - baseline < STALE and time.monotonic() - started < TIMEOUT_S / 2:
        time.sleep(0.05)  # connected in the kernel's queue; the server accepts them now
    load = Load(server.url, 100)
    measured_s = time.monotonic() - started
    assert measured_s < TIMEOUT_S - 1, f"connecting and measuring took {measured_s:.1f} s, the deadline is near"
    held = open_descriptors(server.pid) - baseline
    assert held >= STALE, f"the server holds {held} connections, expected {STALE}: closed before their deadline"
    assert not load.failures, load.failures[:5]
    assert load.p99_ms() < 50.0, (
        f"p99 {load.p99_ms():.1f} ms with {STALE} stale connections open, {before.p99_ms():.1f} ms without them"
    )

    # Every stale connection is closed once its deadline has passed, counted from when the server accepted it.
    closed = closed_by_server(stale + kept_alive, TIMEOUT_S + 5.0)
    assert closed == len(stale) + len(kept_alive), f"{len(stale) + len(kept_alive) - closed} connections still open"
    deadline = time.monotonic() + 5.0
    while open_descriptors(server.pid) > baseline + 2:
        assert time.monotonic() < deadline, f"{open_descriptors(server.pid) - baseline} descriptors more than before"
        time.sleep(0.05)
    for sock in stale + kept_alive:
        sock.close()
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        stats = http.get("/v1/experiments/hero/stats").json()
        assert stats["rewards"] == before.rewards + load.rewards  # the half-sent reward was not applied
        assert http.get("/v1/experiments/ghost").status_code == 404  # nor the half-sent creation
        assert http.get("/v1/health").json() == {"status": "ok"}
    assert "Traceback" not in server.log(), server.log()


def test_at_the_connection_cap_waiting_connections_make_room_and_it_is_logged_once(banditkit_serve):
    allow_open_files(2000)
    cap = 200
    server = banditkit_serve("--store", "memory://", "--max-connections", str(cap), "--header-timeout", "60")
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        assert http.post("/v1/experiments", json={"name": "hero", "arms": ["a", "b"]}).status_code == 201
    baseline = open_descriptors(server.pid)
    idle: list[socket.socket] = []
    failures: list[str] = []
    most = [0]
    stop = threading.Event()

    def watch() -> None:
        while not stop.is_set():
            most[0] = max(most[0], open_descriptors(server.pid) - baseline)
            time.sleep(0.005)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        for round_ in range(6):
            idle.extend(connect(server.port) for _ in range(150))
            # A new client still gets in (a waiting connection is closed for it) and is answered.
            answer = httpx.post(f"{server.url}/v1/experiments/hero/decisions", json={"unit": f"u{round_}"}, timeout=10)
            if answer.status_code != 200:
                failures.append(answer.text)
    finally:
        stop.set()
        watcher.join()
    assert not failures, failures
    assert most[0] <= cap + 5, f"{most[0]} connections open at once with a cap of {cap}"
    assert closed_by_server(idle, 5.0, len(idle) - cap) >= len(idle) - cap  # the waiting ones closed to make room
    for sock in idle:
        sock.close()
    deadline = time.monotonic() + 10.0
    while "under the cap" not in server.log():
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    log = server.log()
    assert log.count("connections open, the cap (max_connections=200)") == 1, log
    assert log.count("under the cap (max_connections=200) again") == 1, log
