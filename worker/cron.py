"""Cron expressions and time zones of schedules: checked once (spec), and the next due time of
each (the tick). Five fields only (minute hour day-of-month month day-of-week), as crontab has."""

from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter


def check_cron(expression: str) -> str:
    """The expression, if it is a valid five-field cron line; ValueError saying why if not."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"cron needs 5 fields (minute hour day month weekday), got {len(fields)}")
    if not croniter.is_valid(expression):
        raise ValueError(f"'{expression}' is not a valid cron expression")
    return " ".join(fields)


def check_timezone(name: str) -> str:
    """The name, if it is an IANA time zone (e.g. Europe/Paris); ValueError if not."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ValueError(f"'{name}' is not an IANA time zone such as UTC or Europe/Paris") from error
    return name


def next_due(expression: str, timezone: str, after: datetime) -> datetime:
    """The first time after `after` that the expression names, read in `timezone`; in UTC."""
    local = after.astimezone(ZoneInfo(timezone))
    found: datetime = croniter(expression, local).get_next(datetime)
    return found.astimezone(UTC)


def latest_due(expression: str, timezone: str, at: datetime) -> datetime:
    """The latest time at or before `at` that the expression names (a tick submits this one: times
    missed while no beat ran are not made up); in UTC."""
    local = at.astimezone(ZoneInfo(timezone))
    schedule = croniter(expression, local)
    if croniter.match(expression, local.replace(second=0, microsecond=0)):
        return local.replace(second=0, microsecond=0).astimezone(UTC)
    found: datetime = schedule.get_prev(datetime)
    return found.astimezone(UTC)
