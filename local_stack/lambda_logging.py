"""What Lambda does with a function's logs under its ``LoggingConfig`` (the advanced logging controls): the
variables it gives the runtime, and which application lines it sends on to CloudWatch Logs.

::

    logging = LambdaLogging("JSON", application_level="INFO", system_level="WARN")   # template.logging_config(fn)
    logging.environment()        # {"AWS_LAMBDA_LOG_FORMAT": "JSON", "AWS_LAMBDA_LOG_LEVEL": "INFO"}
    logging.keeps('{"level": "DEBUG", "message": "delivered"}')      # False: below the application log level
    logging.keeps('{"_aws": {"CloudWatchMetrics": []}, "Retry": 1}')  # True: no "level", so INFO to Lambda
    logging.writes_platform_records                                  # False: no START/END/REPORT at WARN

Lambda's rules, as documented ("Log-level filtering", "Setting your function's log format"): level filtering needs
the JSON format; a line is at the level its JSON ``"level"`` names, and a line with no (or no known) level is
INFO; the per-invocation platform records (``platform.start``, ``platform.runtimeDone``, ``platform.report``) are
INFO system logs. The text format (Lambda's default) filters nothing and sets no level variable.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

APPLICATION_LEVELS = ("TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL")
SYSTEM_LEVELS = ("DEBUG", "INFO", "WARN")
LOG_FORMATS = ("Text", "JSON")
# Python's names for two of them (Powertools writes "WARNING" and "CRITICAL"); Lambda reads the managed runtimes'
# usual spellings.
_ALIASES = {"WARNING": "WARN", "CRITICAL": "FATAL"}


def line_level(line: str | bytes) -> str:
    """The level Lambda gives one application line: its JSON object's ``"level"``, else INFO."""
    text = line.decode("utf-8", "replace") if isinstance(line, bytes) else line
    if not text.lstrip().startswith("{"):
        return "INFO"
    try:
        document = json.loads(text)
    except ValueError:
        return "INFO"
    level = document.get("level") if isinstance(document, dict) else None
    if not isinstance(level, str):
        return "INFO"
    name = _ALIASES.get(level.upper(), level.upper())
    return name if name in APPLICATION_LEVELS else "INFO"


@dataclass(frozen=True, slots=True)
class LambdaLogging:
    """A function's logging configuration; the defaults are Lambda's (text format, INFO and INFO)."""

    log_format: str = "Text"
    application_level: str = "INFO"
    system_level: str = "INFO"

    def __post_init__(self) -> None:
        if self.log_format not in LOG_FORMATS:
            raise ValueError(f"LogFormat {self.log_format!r} is not one of {', '.join(LOG_FORMATS)}")
        if self.application_level not in APPLICATION_LEVELS:
            raise ValueError(f"ApplicationLogLevel {self.application_level!r} is not one of {APPLICATION_LEVELS}")
        if self.system_level not in SYSTEM_LEVELS:
            raise ValueError(f"SystemLogLevel {self.system_level!r} is not one of {SYSTEM_LEVELS}")

    @property
    def filters(self) -> bool:
        """Whether Lambda filters by level at all (only in the JSON format)."""
        return self.log_format == "JSON"

    def environment(self) -> dict[str, str]:
        """The variables Lambda sets for the runtime: the format, and in JSON the application log level."""
        if not self.filters:
            return {"AWS_LAMBDA_LOG_FORMAT": self.log_format}
        return {"AWS_LAMBDA_LOG_FORMAT": self.log_format, "AWS_LAMBDA_LOG_LEVEL": self.application_level}

    def keeps(self, line: str | bytes) -> bool:
        """Whether Lambda sends this application line (stdout or stderr) to CloudWatch Logs."""
        if not self.filters:
            return True
        return APPLICATION_LEVELS.index(line_level(line)) >= APPLICATION_LEVELS.index(self.application_level)

    @property
    def writes_platform_records(self) -> bool:
        """Whether every invocation's INFO platform records (START, END and REPORT, or their JSON records) are
        written: always in the text format, in JSON unless the system log level is WARN."""
        return not self.filters or self.system_level != "WARN"
