"""Conversion options sent as upload form fields: validation into the `options` dict (pure logic)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from .errors import BadRequest

# Allowed values per option (docs/design.md, "Jobs API, options, retention").
BITRATES = (64, 80, 96, 112, 128, 160, 192, 224, 256, 320)  # LAME CBR kbps
QUALITIES = tuple(range(10))  # LAME VBR -q:a, 0 best
CHANNELS = (1, 2)
SAMPLE_RATES = (22050, 44100, 48000)

ALLOWED = {"bitrate": BITRATES, "quality": QUALITIES, "channels": CHANNELS, "sample_rate": SAMPLE_RATES}
OPTION_NAMES = tuple(ALLOWED)
_HINTS = {
    "bitrate": "bitrate must be one of " + ", ".join(map(str, BITRATES)) + " (kbit/s, constant bit rate)",
    "quality": "quality must be an integer from 0 (best) to 9 (variable bit rate)",
    "channels": "channels must be 1 or 2",
    "sample_rate": "sample_rate must be one of " + ", ".join(map(str, SAMPLE_RATES)),
}
# Plain ASCII digits only: int() would also take "1_28", "+128" or Arabic-Indic digits.
_NUMBER = re.compile(r"[0-9]{1,6}")


def default_options() -> dict[str, int | None]:
    """Every option unset: the converter's defaults (CBR 192 kbps, the source's channels and rate)."""
    return dict.fromkeys(OPTION_NAMES)


def parse_options(fields: Mapping[str, str]) -> dict[str, int | None]:
    """The `options` dict for the text fields of an upload form.

    Raises BadRequest naming the offending field. Unknown fields are refused rather than ignored so a
    typo such as `bitrat=128` does not silently give the default. Works on any subset of the fields,
    so the upload can check each field as soon as it has arrived.
    """
    options = default_options()
    for name, raw in fields.items():
        if name not in ALLOWED:
            raise BadRequest(
                f"unknown form field {name!r}; the form takes 'file' and the options "
                + ", ".join(OPTION_NAMES),
                field=name,
            )
        value = raw.strip()
        if not _NUMBER.fullmatch(value) or int(value) not in ALLOWED[name]:
            raise BadRequest(_HINTS[name], field=name)
        options[name] = int(value)
    if options["bitrate"] is not None and options["quality"] is not None:
        # Blame whichever of the two came last: the first was fine on its own.
        later = [name for name in fields if name in ("bitrate", "quality")][-1]
        raise BadRequest("send either bitrate (constant) or quality (variable bit rate), not both", field=later)
    return options
