"""Conversion options sent as upload form fields: text to contract.Options, naming the field at fault."""

from __future__ import annotations

import re
from collections.abc import Mapping

from mp3core.contract import OPTION_HINTS, OPTION_NAMES, Options
from mp3core.errors import BadRequest, ContractError

# Plain ASCII digits only: int() would also take "1_28", "+128" or Arabic-Indic digits.
_NUMBER = re.compile(r"[0-9]{1,6}")


def parse_form_options(fields: Mapping[str, str]) -> Options:
    """The options for the text fields of an upload form; BadRequest naming the offending field.

    Unknown fields are refused rather than ignored so a typo such as `bitrat=128` does not silently give
    the default. Works on any subset of the fields, so the upload can check each field as soon as it has
    arrived. The value rules are the contract's; the fields are added in the order they came, so when two
    fields clash (bitrate and quality) the later one is blamed: the first was fine on its own.
    """
    values: dict[str, int] = {}
    options = Options()
    for name, raw in fields.items():
        if name not in OPTION_NAMES:
            raise BadRequest(
                f"unknown form field {name!r}; the form takes 'file' and the options " + ", ".join(OPTION_NAMES),
                field=name,
            )
        value = raw.strip()
        if not _NUMBER.fullmatch(value):
            raise BadRequest(OPTION_HINTS[name], field=name)
        values[name] = int(value)
        try:
            options = Options(**values)
        except ContractError as exc:
            raise BadRequest(str(exc), field=name) from None
    return options
