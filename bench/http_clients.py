"""Concurrent HTTP clients for the API benchmark: each in a process of its own, as browsers and integrations are,
so that the clients do not queue behind one another for one Python interpreter (8 client threads in one process
added up to 8 x ~2 ms of waiting for the GIL to every request they timed). Kept light: it imports only httpx."""

from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import httpx

START_DELAY_S = 2.0  # time for every client to start and connect, so that they all begin together


def _closed_loop(
    base_url: str, headers: dict[str, str], requests: list[tuple[str, dict[str, str]]], start_at: float
) -> list[float]:
    """One client: connects, waits for the common start, then sends `requests` one after another over its one
    keep-alive connection; the latency of each, in seconds."""
    latencies = []
    with httpx.Client(base_url=base_url, headers=headers, timeout=60) as client:
        client.get("/healthz")
        time.sleep(max(0.0, start_at - time.time()))
        for path, params in requests:
            started = time.perf_counter()
            response = client.get(path, params=params)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                raise RuntimeError(f"{path} answered {response.status_code}: {response.text[:200]}")
    return latencies


def timed_requests(
    base_url: str, headers: dict[str, str], requests: list[tuple[str, dict[str, str]]], *, clients: int
) -> list[float]:
    """`requests` shared round-robin among `clients` client processes running at once; every latency."""
    start_at = time.time() + START_DELAY_S
    with ProcessPoolExecutor(max_workers=clients, mp_context=multiprocessing.get_context("spawn")) as pool:
        shares = [pool.submit(_closed_loop, base_url, headers, requests[i::clients], start_at) for i in range(clients)]
        return [latency for share in shares for latency in share.result()]
