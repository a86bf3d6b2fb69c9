"""Dates as the admin shows them: ISO order, 24 hours, to the second ("2026-11-23 23:13:05"),
the way logs and events print them, and narrow enough for list columns at 1400 px."""

DATE_FORMAT = "Y-m-d"
DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATE_FORMAT = "Y-m-d"
SHORT_DATETIME_FORMAT = "Y-m-d H:i"
