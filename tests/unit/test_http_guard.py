"""The front's per-client bookkeeping: client keys, connection counts, throttled log lines."""

from __future__ import annotations

from structlog.testing import capture_logs

from agent.http_guard import ConnectionLimits, ThrottledLog, client_key


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        """Start at an arbitrary monotonic time."""
        self.now = 1000.0

    def __call__(self) -> float:
        """The current time."""
        return self.now


def test_client_key_is_the_ipv4_address_or_the_ipv6_64():
    """One IPv4 address is one client; an IPv6 host's /64 is one client; a Unix peer is local."""
    assert client_key(("192.0.2.7", 51000)) == "192.0.2.7"
    assert client_key(("2001:db8:1:2:aaaa::1", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("2001:db8:1:2:bbbb::9", 1, 0, 0)) == "2001:db8:1:2::/64"
    assert client_key(("::ffff:192.0.2.7", 1, 0, 0)) == "192.0.2.7"
    assert client_key("") == "local"
    assert client_key(None) == "local"


def test_connection_limits_count_per_client_and_in_all():
    """Admissions stop at the per-client and the total limit; a release makes room again."""
    limits = ConnectionLimits(total=3, per_client=2)
    assert [limits.admit("a"), limits.admit("a"), limits.admit("a")] == [
        None,
        None,
        "max_connections_per_client",
    ]
    assert limits.admit("b") is None
    assert limits.admit("c") == "max_connections"
    limits.release("a")
    assert limits.admit("c") is None
    assert limits.open == 3


def test_throttled_log_writes_one_line_per_client_and_window_with_the_count_left_out():
    """1,000 failures from one client within a minute: one line now, the count with the next."""
    clock = Clock()
    throttled = ThrottledLog(window_s=60.0, clock=clock)
    with capture_logs() as logs:
        for _ in range(1000):
            throttled.note("http_auth_failed", "10.0.0.1", path="/metrics")
        throttled.note("http_auth_failed", "10.0.0.2", path="/metrics")
        clock.now += 61
        throttled.note("http_auth_failed", "10.0.0.1", path="/metrics")
    assert [(e["client"], e["left_out"]) for e in logs] == [
        ("10.0.0.1", 0),
        ("10.0.0.2", 0),
        ("10.0.0.1", 999),
    ]


def test_throttled_log_flush_reports_counts_of_ended_windows():
    """A client that stopped still has its count reported, by the periodic flush."""
    clock = Clock()
    throttled = ThrottledLog(window_s=60.0, clock=clock)
    with capture_logs() as logs:
        for _ in range(5):
            throttled.note("http_connection_refused", "10.0.0.3", level="warning")
        throttled.flush()
        clock.now += 60
        throttled.flush()
    assert [(e["event"], e["left_out"]) for e in logs] == [
        ("http_connection_refused", 0),
        ("http_connection_refused", 4),
    ]


def test_throttled_log_bounds_lines_per_window_across_clients():
    """Many clients (a botnet): at most max_lines lines a window, then one line with the count."""
    clock = Clock()
    throttled = ThrottledLog(window_s=60.0, max_lines=10, clock=clock)
    with capture_logs() as logs:
        for i in range(500):
            throttled.note("http_auth_failed", f"10.0.{i // 256}.{i % 256}")
        clock.now += 60
        throttled.note("http_auth_failed", "10.9.9.9")
    assert [e["event"] for e in logs].count("http_auth_failed") == 11
    assert [e.get("lines") for e in logs if e["event"] == "http_log_lines_left_out"] == [490]
