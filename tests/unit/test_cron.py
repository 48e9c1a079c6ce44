"""Schedules' cron arithmetic and the qrels line parsers: pure functions, no servers."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from worker.cron import check_cron, latest_due, next_due
from worker.judgements import parse_trec
from worker.spec import ScheduleSpec

moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC))
crons = st.sampled_from(["* * * * *", "*/5 * * * *", "0 2 * * *", "30 2 * * 1-5", "0 0 1 * *", "15 3 29 2 *"])
zones = st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"])


@given(crons, zones, moments)
def test_the_latest_due_time_is_at_or_before_now_and_the_next_after_it(
    cron: str, zone: str, now: datetime
) -> None:
    latest, upcoming = latest_due(cron, zone, now), next_due(cron, zone, now)
    assert latest <= now < upcoming
    assert next_due(cron, zone, latest) >= upcoming  # nothing named in between
    assert latest.tzinfo is not None and upcoming.utcoffset() == timedelta(0)


def test_a_nightly_time_is_read_in_its_time_zone() -> None:
    winter = datetime(2026, 1, 10, 12, tzinfo=UTC)
    assert next_due("0 2 * * *", "Europe/Paris", winter) == datetime(2026, 1, 11, 1, tzinfo=UTC)
    assert latest_due("0 2 * * *", "Europe/Paris", winter) == datetime(2026, 1, 10, 1, tzinfo=UTC)
    on_time = datetime(2026, 1, 10, 1, 0, 30, tzinfo=UTC)  # a tick half a minute after the due time
    assert latest_due("0 2 * * *", "Europe/Paris", on_time) == datetime(2026, 1, 10, 1, tzinfo=UTC)


@pytest.mark.parametrize("cron", ["* * * *", "* * * * * *", "60 * * * *", "* 24 * * *", "every day", ""])
def test_a_bad_cron_is_refused_naming_the_field(cron: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ScheduleSpec(job_id="j", cron=cron)
    assert refused.value.errors()[0]["loc"] == ("cron",)


def test_cron_whitespace_is_normalised() -> None:
    assert check_cron("  0  2 * *   1 ") == "0 2 * * 1"


def test_trec_qrels_lines() -> None:
    judged = parse_trec(b"1063750 0 1048074 2\n")
    assert (judged.query_id, judged.document_id, judged.relevance) == ("1063750", "1048074", 2)
    assert parse_trec(b"q\tQ0\td-1\t-1").relevance == -1
    for bad in (b"q 0 d", b"q 0 d high", b"q 0 d 1 extra", b"\xff 0 d 1"):
        with pytest.raises(ValueError):
            parse_trec(bad)
