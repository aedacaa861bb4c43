"""The model clock: host dates in the host's calendar, and the events they trigger.

Land use advances when a new model year begins; LAI at the namelist cadence (monthly, every N days,
or daily between monthly values). The host may call ``step`` at any time step of its own; time must
never go backwards.
"""
from __future__ import annotations

from dataclasses import dataclass

import cftime

from .errors import ClockError

EPOCH = "days since 1850-01-01 00:00:00"


@dataclass(frozen=True)
class Events:
    date: cftime.datetime
    new_year: bool
    new_lai_period: bool

    @property
    def day_of_year(self) -> int:
        return self.date.dayofyr

    @property
    def days_in_year(self) -> int:
        return 360 if self.date.calendar == "360_day" else (
            cftime.datetime(self.date.year, 12, 31, calendar=self.date.calendar).dayofyr)


class ModelClock:
    def __init__(self, calendar: str, lai_cadence: str = "monthly", lai_interval_days: int = 1):
        self.calendar = calendar
        self.lai_cadence = lai_cadence
        self.lai_interval_days = lai_interval_days
        self.current: cftime.datetime | None = None

    def _lai_period(self, date: cftime.datetime) -> tuple[int, int]:
        if self.lai_cadence == "monthly":
            return (date.year, date.month)
        if self.lai_cadence == "daily":
            return (date.year, date.dayofyr)
        return (date.year, (date.dayofyr - 1) // self.lai_interval_days)

    def days(self, date: cftime.datetime) -> float:
        """Days since 1850-01-01 in the calendar: one time axis across years."""
        return float(cftime.date2num(date, EPOCH, calendar=self.calendar))

    def month_middle(self, year: int, month: int) -> tuple[float, float]:
        """The middle of a month: (days since 1850-01-01, days since 1 January of its year)."""
        start = self.date(year, month, 1, 0)
        length = self.days(self.date(year + (month == 12), month % 12 + 1, 1, 0)) - self.days(start)
        return self.days(start) + length / 2.0, start.dayofyr - 1 + length / 2.0

    def date(self, year: int, month: int, day: int, second: int) -> cftime.datetime:
        if not 0 <= second < 86400:
            raise ClockError(f"second of day {second} outside [0, 86400)")
        try:
            return cftime.datetime(year, month, day, second // 3600, (second % 3600) // 60, second % 60,
                                   calendar=self.calendar)
        except (ValueError, TypeError) as exc:
            raise ClockError(f"{year:04d}-{month:02d}-{day:02d} is not a date in the {self.calendar} calendar: {exc}") from exc

    def advance(self, year: int, month: int, day: int, second: int = 0) -> Events:
        date = self.date(year, month, day, second)
        previous = self.current
        if previous is not None and date < previous:
            raise ClockError(f"time went backwards: {date.isoformat()} after {previous.isoformat()}")
        self.current = date
        if previous is None:
            return Events(date, True, True)
        return Events(date, date.year != previous.year, self._lai_period(date) != self._lai_period(previous))
