"""Conversion options sent as upload form fields: text to contract.Options, naming the field at fault."""

from __future__ import annotations

import re
from collections.abc import Mapping

from mp3core.contract import FLAG_OPTIONS, OPTION_HINTS, OPTION_NAMES, OPTION_VALUES, TIME_OPTIONS, Options
from mp3core.errors import BadRequest, ContractError

# Plain ASCII digits only: int() would also take "1_28", "+128" or Arabic-Indic digits.
_NUMBER = re.compile(r"[0-9]{1,6}")
# A time: seconds ("90", "90.5") or [hh:]mm:ss with optional milliseconds ("1:30", "00:01:30.250").
_SECONDS = re.compile(r"([0-9]{1,6})(?:\.([0-9]{1,3}))?")
_CLOCK = re.compile(r"(?:([0-9]{1,2}):)?([0-5]?[0-9]):([0-5][0-9])(?:\.([0-9]{1,3}))?")
_FLAGS = {"true": True, "1": True, "false": False, "0": False}


def parse_time(name: str, raw: str) -> float:
    """'90', '90.5', '1:30' or '00:01:30.5' -> seconds (milliseconds at most); BadRequest naming the field."""
    value = raw.strip()
    if value.startswith("-"):
        raise BadRequest(f"{name} must not be negative", field=name)
    if found := _SECONDS.fullmatch(value):
        whole, fraction = int(found.group(1)), found.group(2)
    elif found := _CLOCK.fullmatch(value):
        hours, minutes, seconds, fraction = found.groups()
        whole = int(hours or 0) * 3600 + int(minutes) * 60 + int(seconds)
    else:
        raise BadRequest(OPTION_HINTS[name], field=name)
    return whole + int((fraction or "0").ljust(3, "0")) / 1000


def parse_form_options(fields: Mapping[str, str]) -> Options:
    """The options for the text fields of an upload form; BadRequest naming the offending field.

    Unknown fields are refused rather than ignored so a typo such as `bitrat=128` does not silently give
    the default. Works on any subset of the fields, so the upload can check each field as soon as it has
    arrived. The value rules are the contract's; the fields are added in the order they came, so when two
    fields clash (bitrate and quality, end before start) the later one is blamed: the first was fine on its own.
    """
    values: dict[str, int | float | bool] = {}
    options = Options()
    for name, raw in fields.items():
        if name not in OPTION_NAMES:
            raise BadRequest(
                f"unknown form field {name!r}; the form takes 'file' and the options " + ", ".join(OPTION_NAMES),
                field=name,
            )
        value = raw.strip()
        if name in OPTION_VALUES:
            if not _NUMBER.fullmatch(value):
                raise BadRequest(OPTION_HINTS[name], field=name)
            values[name] = int(value)
        elif name in TIME_OPTIONS:
            values[name] = parse_time(name, value)
        elif name in FLAG_OPTIONS:
            if value.lower() not in _FLAGS:
                raise BadRequest(OPTION_HINTS[name], field=name)
            values[name] = _FLAGS[value.lower()]
        try:
            options = Options(**values)
        except ContractError as exc:
            raise BadRequest(str(exc), field=name) from None
    return options
