"""Unknown bearer tokens per client address: refused after the limit within a sliding window, until the oldest
counted failure leaves it; addresses are counted apart, and the memory it keeps is bounded."""

from __future__ import annotations

from api.access.token_limiter import UnknownTokenLimiter

LIMIT = 3
WINDOW_S = 60.0


def test_an_address_is_refused_after_the_limit_until_its_oldest_failure_leaves_the_window() -> None:
    limiter = UnknownTokenLimiter()
    for now in (0.0, 10.0, 20.0):
        assert limiter.retry_after_s("10.0.0.7", now=now, limit=LIMIT, window_s=WINDOW_S) is None
        limiter.record_unknown("10.0.0.7", now=now)
    assert limiter.retry_after_s("10.0.0.7", now=30.0, limit=LIMIT, window_s=WINDOW_S) == 30.0
    assert limiter.retry_after_s("10.0.0.7", now=59.5, limit=LIMIT, window_s=WINDOW_S) == 0.5
    assert limiter.retry_after_s("10.0.0.7", now=60.0, limit=LIMIT, window_s=WINDOW_S) is None


def test_the_wait_is_until_enough_failures_have_left_the_window() -> None:
    limiter = UnknownTokenLimiter()
    for now in (0.0, 1.0, 2.0, 3.0, 4.0):
        limiter.record_unknown("10.0.0.7", now=now)
    # five in the window, limit three: three must leave to be below it, the third at 2 + 60.
    assert limiter.retry_after_s("10.0.0.7", now=5.0, limit=LIMIT, window_s=WINDOW_S) == 57.0


def test_addresses_are_counted_apart() -> None:
    limiter = UnknownTokenLimiter()
    for now in (0.0, 1.0, 2.0):
        limiter.record_unknown("10.0.0.7", now=now)
    assert limiter.retry_after_s("10.0.0.7", now=3.0, limit=LIMIT, window_s=WINDOW_S) is not None
    assert limiter.retry_after_s("10.0.0.8", now=3.0, limit=LIMIT, window_s=WINDOW_S) is None


def test_the_least_recently_failing_addresses_are_forgotten_beyond_the_bound() -> None:
    limiter = UnknownTokenLimiter(addresses_max=2)
    for now, address in enumerate(("a", "b", "a", "c")):
        limiter.record_unknown(address, now=float(now))
        limiter.record_unknown(address, now=float(now))
        limiter.record_unknown(address, now=float(now))
    assert limiter.retry_after_s("b", now=4.0, limit=LIMIT, window_s=WINDOW_S) is None
    assert limiter.retry_after_s("a", now=4.0, limit=LIMIT, window_s=WINDOW_S) is not None
    assert limiter.retry_after_s("c", now=4.0, limit=LIMIT, window_s=WINDOW_S) is not None
