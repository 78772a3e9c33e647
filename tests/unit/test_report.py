from fnhost.execution.accounting import tail_log
from fnhost.observability.report import Report, billed


def test_report_line_matches_lambda() -> None:
    r = Report.of("abc", 1.234, 128, 45 * 1024 * 1024 + 1, 120.5, 1)
    assert r.line() == ("REPORT RequestId: abc  Duration: 1.23 ms  Billed Duration: 2 ms  Memory Size: 128 MB  "
                        "Max Memory Used: 46 MB  Init Duration: 120.50 ms")
    warm = Report.of("abc", 0.2, 128, 0, None, 1)
    assert "Init Duration" not in warm.line() and warm.billed_duration_ms == 1


def test_billing_granularity() -> None:
    assert billed(0.01, 1) == 1
    assert billed(101.0, 100) == 200
    assert billed(100.0, 100) == 100


def test_tail_keeps_the_last_four_kilobytes() -> None:
    r = Report.of("id", 1, 128, 0, None, 1)
    text = tail_log("id", b"x" * 10_000 + b"\n", r)
    assert len(text.encode()) <= 4096 and text.endswith(r.line() + "\n")
