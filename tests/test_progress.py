"""The status line: the compile apart, rate and time left from the end of the first chunk."""

import io

from qvpo_mjx.progress import Progress, format_seconds


def test_rate_and_time_left_start_at_the_end_of_the_first_chunk():
    out = io.StringIO()
    bar = Progress(total=10_000, stream=out)
    bar.began = 0.0
    bar.compiled(68.4)
    # The first chunk ends 70 s in (compile plus a fast warm-up chunk): no rate yet.
    bar.update(1_000, 0.0, now=70.0)
    # 2,000 more steps in 10 s: 200 steps/s and 7,000 steps left = 35 s; a rate measured from
    # the start (3,000 / 80 s) would say 37 steps/s and 3m06s.
    bar.update(3_000, 12.5, now=80.0)
    lines = out.getvalue().splitlines()
    assert lines[0] == "compiled in 68 s"
    assert "?" in lines[1] and "steps/s" in lines[1] and "? left" in lines[1]
    assert "     200 steps/s" in lines[2] and "0m35s left" in lines[2], lines[2]
    assert "eval return     12.50" in lines[2] and "80s elapsed" in lines[2]


def test_disabled_progress_writes_nothing():
    out = io.StringIO()
    bar = Progress(total=100, enabled=False, stream=out)
    bar.compiled(1.0)
    bar.update(50, 1.0, now=1.0)
    bar.close()
    assert out.getvalue() == ""


def test_format_seconds():
    assert format_seconds(125.9) == "2m05s" and format_seconds(float("nan")) == "?"
