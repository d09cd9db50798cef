"""The gateway's OpenAPI 3.1 document, served at GET /openapi.json (a test keeps it in step with the routes)."""

from __future__ import annotations

from mp3core import contract

from .web import OPENAPI_PATHS as WEB_PAGE_PATHS

JSON = "application/json"
BEARER = [{"bearerAuth": []}]
PUBLIC: list = []  # no authentication


def _header(description: str, schema: dict | None = None) -> dict:
    return {"description": description, "required": True, "schema": schema or {"type": "string"}}


# Headers every answer with this status carries.
_ERROR_HEADERS = {
    401: {"WWW-Authenticate": _header("The authentication scheme to use (Bearer, or Basic for /login).")},
    429: {"Retry-After": _header("Seconds to wait before trying again.", {"type": "string", "pattern": "^[0-9]+$"})},
    503: {"Retry-After": _header("Seconds to wait before trying again.", {"type": "string", "pattern": "^[0-9]+$"})},
}


def _error(status: int, description: str) -> dict:
    response = {"description": description, "content": {JSON: {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if status in _ERROR_HEADERS:
        response["headers"] = _ERROR_HEADERS[status]
    return response


def _responses(ok: dict, *errors: tuple[int, str]) -> dict:
    return {**ok, **{str(status): _error(status, description) for status, description in errors}}


def _json(description: str, schema: dict) -> dict:
    return {"description": description, "content": {JSON: {"schema": schema}}}


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


# Errors every authenticated route can answer.
UNAUTHORIZED = (401, "Missing, malformed, invalid or expired bearer token.")
UNAVAILABLE = (503, "A backing service (auth, MongoDB, RabbitMQ) is unreachable; retry after Retry-After seconds.")

JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "description": "The job id from POST /upload (32 lowercase hex digits); anything else is 404.",
    "schema": {"type": "string", "pattern": f"^{contract.JOB_ID.pattern}$"},
}

_option = {
    "bitrate": {"type": "integer", "enum": list(contract.OPTION_VALUES["bitrate"]),
                "description": f"Constant bit rate in kbit/s. Default: {contract.DEFAULT_BITRATE} when quality "
                               "is not set either. An MP3 upload with no option that needs re-encoding (bitrate, "
                               "quality, channels, sample_rate, start, end, normalize) is copied, not re-encoded."},
    "quality": {
        "type": "integer",
        "minimum": min(contract.OPTION_VALUES["quality"]),
        "maximum": max(contract.OPTION_VALUES["quality"]),
        "description": "LAME variable-bit-rate quality, 0 best; not together with bitrate. Default: not set (CBR).",
    },
    "channels": {"type": "integer", "enum": list(contract.OPTION_VALUES["channels"]), "description": "Default: as the source (at most 2)."},
    "sample_rate": {"type": "integer", "enum": list(contract.OPTION_VALUES["sample_rate"]),
                    "description": "Hz. Default: as the source (48000 with normalize)."},
}
_TIME = "seconds (90, 90.5) or [hh:]mm:ss[.fff] (1:30, 00:01:30.500), at most 99:59:59.999"
# The form's text for a time (gateway/gateway/options.py parses exactly this) and each flag's description.
_TIME_TEXT = {"type": "string",
              "pattern": r"^\s*([0-9]{1,6}(\.[0-9]{1,3})?|([0-9]{1,2}:)?[0-5]?[0-9]:[0-5][0-9](\.[0-9]{1,3})?)\s*$"}
_TIME_HELP = {
    "start": f"Where the MP3 begins in the source: {_TIME}. Default: 0, the beginning. Past the source's end: the "
             "job fails.",
    "end": f"Where the MP3 ends in the source (a position, not a length), after start: {_TIME}. Default: the end of "
           "the source. Past the source's end: the job fails.",
}
_FLAG_HELP = {
    "normalize": f"EBU R128 loudness normalisation to {contract.LOUDNESS_LUFS} LUFS (ffmpeg's loudnorm). Default: "
                 "false.",
    "cover": "Embed one frame of the video, taken at a tenth of the MP3's length, as its front cover (JPEG, at most "
             "600 px wide); nothing for audio uploads. Default: false.",
}
# Form fields: as a browser or curl sends them (a flag as true/false, also accepted as 1/0).
_form_option = {
    **_option,
    "start": {**_TIME_TEXT, "default": "0", "description": _TIME_HELP["start"]},
    "end": {**_TIME_TEXT, "description": _TIME_HELP["end"]},
    **{name: {"type": "boolean", "default": False, "description": _FLAG_HELP[name]} for name in contract.FLAG_OPTIONS},
}
# The same options on a job: what the gateway stored (times in seconds).
_job_option = {
    **_option,
    **{name: {"type": "number", "minimum": 0, "maximum": contract.MAX_TIME_S, "description": _TIME_HELP[name]}
       for name in contract.TIME_OPTIONS},
    **{name: {"type": "boolean", "description": _FLAG_HELP[name]} for name in contract.FLAG_OPTIONS},
}


def _nullable(schema: dict) -> dict:
    return {**schema, "type": [schema["type"], "null"]} | ({"enum": [*schema["enum"], None]} if "enum" in schema else {})


OPENAPI: dict = {
    "openapi": "3.1.0",
    "info": {
        "title": "mp3converter gateway",
        "version": "2",
        "description": (
            "Upload a video, get an MP3. Log in with HTTP Basic at POST /login to get a bearer token, "
            "POST the video to /upload, poll GET /jobs/{job_id}, download with GET /download?fid=<mp3_fid>. "
            'Every error is JSON {"error": "...", "field": "..."} ("field" only when one input is at fault).'
        ),
    },
    "security": BEARER,
    "paths": {
        "/login": {
            "post": {
                "summary": "Exchange email and password (HTTP Basic) for a bearer token (a JWT).",
                "operationId": "login",
                "security": [{"basicAuth": []}],
                "responses": _responses(
                    {
                        "200": {
                            "description": "The token, as plain text.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                    (401, "Missing or wrong credentials."),
                    (429, "Too many failed logins for this user or address; see Retry-After."),
                    UNAVAILABLE,
                ),
            }
        },
        "/users": {
            "post": {
                "summary": "Create a user (admins only).",
                "operationId": "createUser",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("NewUser")}}},
                "responses": _responses(
                    {"201": _json("The user was created.", _ref("User"))},
                    (400, "The body is not a JSON object with a valid email and a password of 8 to 1024 characters."),
                    UNAUTHORIZED,
                    (403, "The token is not an admin's."),
                    (408, "The body stopped arriving for BODY_READ_TIMEOUT_S seconds."),
                    (409, "A user with this email exists."),
                    (413, "The body is larger than 64 KiB."),
                    UNAVAILABLE,
                ),
            }
        },
        "/users/{email}": {
            "delete": {
                "summary": "Delete a user (admins only); their tokens stop working at once.",
                "operationId": "deleteUser",
                "parameters": [{"name": "email", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": _responses(
                    {"204": {"description": "Deleted."}},
                    UNAUTHORIZED,
                    (403, "The token is not an admin's."),
                    (404, "No such user."),
                    (409, "An admin cannot delete their own account."),
                    UNAVAILABLE,
                ),
            }
        },
        "/users/me/password": {
            "post": {
                "summary": "Change the caller's password; answers a fresh token, every earlier one is refused.",
                "operationId": "changePassword",
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("PasswordChange")}}},
                "responses": _responses(
                    {
                        "200": {
                            "description": "A fresh token, as plain text.",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        }
                    },
                    (400, "The body is not a JSON object with current_password and a new_password of 8 to 1024 "
                          "characters."),
                    UNAUTHORIZED,
                    (403, "The current password is wrong."),
                    (408, "The body stopped arriving for BODY_READ_TIMEOUT_S seconds."),
                    (413, "The body is larger than 64 KiB."),
                    (429, "Too many wrong passwords for this user or address; see Retry-After."),
                    UNAVAILABLE,
                ),
            }
        },
        "/upload": {
            "post": {
                "summary": "Upload a video to convert; the job is queued.",
                "description": (
                    "The token is checked before the body is read, and the body is stored as it streams in. "
                    "Send the option fields before the file part: an invalid option after it is only noticed "
                    "once the whole file has arrived."
                ),
                "operationId": "upload",
                "parameters": [
                    {
                        "name": "Idempotency-Key",
                        "in": "header",
                        "required": False,
                        "description": (
                            "A repeat within 24 hours by the same user answers 202 with the first job "
                            "(idempotent_replay: true) without storing the body."
                        ),
                        "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x21-\\x7E]+$"},
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _ref("UploadForm"),
                            "encoding": {"file": {"contentType": "application/octet-stream"}},
                        }
                    },
                },
                "responses": _responses(
                    {"202": _json("Queued (or, for a repeated Idempotency-Key, the first upload's job).", _ref("Accepted"))},
                    (400, "Not multipart, no/several file parts, an empty file, an invalid option or Idempotency-Key."),
                    UNAUTHORIZED,
                    (408, "The body stopped arriving for BODY_READ_TIMEOUT_S seconds."),
                    (413, "The body is larger than MAX_UPLOAD_MB, or would take the user's videos and MP3s past "
                          "MAX_STORED_MB_PER_USER."),
                    (415, "The file does not start like a known video container or audio file."),
                    (429, "The user is already streaming MAX_CONCURRENT_UPLOADS_PER_USER uploads, or has "
                          "MAX_JOBS_IN_FLIGHT_PER_USER jobs queued or converting."),
                    UNAVAILABLE,
                ),
            }
        },
        "/jobs": {
            "get": {
                "summary": "The caller's jobs, newest first (admins too see only their own here).",
                "operationId": "listJobs",
                "parameters": [
                    {
                        "name": "limit",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                    },
                    {
                        "name": "offset",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "integer", "minimum": 0, "maximum": 1000000, "default": 0},
                    },
                ],
                "responses": _responses(
                    {"200": _json("One page of jobs.", _ref("JobList"))},
                    (400, "limit or offset is not an integer in range."),
                    UNAUTHORIZED,
                    UNAVAILABLE,
                ),
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "summary": "One job (the owner's, or any for an admin).",
                "operationId": "getJob",
                "parameters": [JOB_ID],
                "responses": _responses(
                    {"200": _json("The job.", _ref("Job"))},
                    UNAUTHORIZED,
                    (404, "No such job, or not the caller's."),
                    UNAVAILABLE,
                ),
            },
            "delete": {
                "summary": "Delete a job with its video and MP3; a queued job is thereby cancelled.",
                "operationId": "deleteJob",
                "parameters": [JOB_ID],
                "responses": _responses(
                    {"204": {"description": "Deleted."}},
                    UNAUTHORIZED,
                    (404, "No such job, or not the caller's."),
                    UNAVAILABLE,
                ),
            },
        },
        "/download": {
            "get": {
                "summary": "Download a finished MP3 (the owner's, or any for an admin).",
                "operationId": "download",
                "parameters": [
                    {
                        "name": "fid",
                        "in": "query",
                        "required": True,
                        "description": "mp3_fid of a done job.",
                        "schema": {"type": "string", "pattern": f"^{contract.FILE_ID.pattern}$"},
                    }
                ],
                "responses": _responses(
                    {
                        "200": {
                            "description": "The MP3, streamed.",
                            "headers": {
                                "Content-Disposition": _header('attachment; filename="<original stem>.mp3"'),
                                "Content-Length": _header("Bytes in the MP3.", {"type": "string", "pattern": "^[0-9]+$"}),
                            },
                            "content": {"audio/mpeg": {"schema": {"type": "string", "format": "binary"}}},
                        }
                    },
                    (400, "fid is not 24 lower-case hexadecimal characters."),
                    UNAUTHORIZED,
                    (404, "No such file, or not the caller's."),
                    UNAVAILABLE,
                ),
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: the process answers.",
                "operationId": "healthz",
                "security": PUBLIC,
                "responses": {"200": _json("Alive.", _ref("Status"))},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: MongoDB answers a ping.",
                "operationId": "readyz",
                "security": PUBLIC,
                "responses": _responses({"200": _json("Ready.", _ref("Status"))}, (503, "MongoDB is unreachable.")),
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (requests, latency, publish failures, jobs by status).",
                "operationId": "metrics",
                "security": PUBLIC,
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document.",
                "operationId": "openapi",
                "security": PUBLIC,
                "responses": {"200": _json("The OpenAPI 3.1 document.", {"type": "object"})},
            }
        },
        **WEB_PAGE_PATHS,  # the web page at / and its static files (gateway/web.py)
    },
    "components": {
        "securitySchemes": {
            "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
            "basicAuth": {"type": "http", "scheme": "basic"},
        },
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {"type": "string", "description": "What is wrong, in one sentence."},
                    "field": {"type": "string", "description": "The form field, query parameter or header at fault."},
                },
                "additionalProperties": False,
            },
            "Status": {
                "type": "object",
                "required": ["status"],
                "properties": {"status": {"const": "ok"}},
                "additionalProperties": False,
            },
            "NewUser": {
                "type": "object",
                "required": ["email", "password"],
                "properties": {
                    "email": {"type": "string", "format": "email"},
                    "password": {"type": "string", "minLength": 8, "maxLength": 1024},
                    "admin": {"type": "boolean", "default": False},
                },
            },
            "PasswordChange": {
                "type": "object",
                "required": ["current_password", "new_password"],
                "properties": {
                    "current_password": {"type": "string"},
                    "new_password": {"type": "string", "minLength": 8, "maxLength": 1024},
                },
                "additionalProperties": False,
            },
            "User": {
                "type": "object",
                "required": ["email", "admin"],
                "properties": {"email": {"type": "string"}, "admin": {"type": "boolean"}},
            },
            "UploadForm": {
                "type": "object",
                # Not expressed as `not: {required: [bitrate, quality]}` because Schemathesis 4.32 cannot
                # generate a body with a binary part under `not`; the gateway answers 400 for both.
                "description": "Send bitrate or quality, not both; end after start.",
                "required": ["file"],
                "properties": {
                    "file": {
                        "type": "string",
                        "format": "binary",
                        "contentMediaType": "application/octet-stream",
                        "description": "The video (mp4/mov, mkv/webm, avi, flv, mpeg-ps/ts, wmv, ogg) or audio file "
                                       "(mp3, wav, flac, m4a/aac, ogg vorbis/opus), recognised from its bytes.",
                    },
                    **_form_option,
                },
                "additionalProperties": False,
            },
            "Accepted": {
                "type": "object",
                "required": ["job_id", "status"],
                "properties": {
                    "job_id": {"type": "string", "pattern": f"^{contract.JOB_ID.pattern}$"},
                    "status": {"type": "string", "enum": list(contract.STATUSES)},
                    "idempotent_replay": {"const": True, "description": "Present only on a replay."},
                },
                "additionalProperties": False,
            },
            "Options": {
                "type": "object",
                "description": "The conversion options; null means the default.",
                "required": list(_job_option),
                "properties": {name: _nullable(schema) for name, schema in _job_option.items()},
                "additionalProperties": False,
            },
            "Job": {
                "type": "object",
                "required": [
                    "job_id",
                    "status",
                    "progress",
                    "mp3_fid",
                    "error",
                    "filename",
                    "duration_s",
                    "options",
                    "created_at",
                    "updated_at",
                    "expires_at",
                ],
                "properties": {
                    "job_id": {"type": "string", "pattern": f"^{contract.JOB_ID.pattern}$"},
                    "status": {
                        "type": "string",
                        "enum": list(contract.STATUSES),
                        "description": "expired: retention deleted the MP3.",
                    },
                    "progress": {"type": "integer", "minimum": 0, "maximum": 100},
                    "mp3_fid": {"type": ["string", "null"], "description": "Set when done: GET /download?fid=..."},
                    "error": {"type": ["string", "null"], "description": "Why the job failed."},
                    "filename": {"type": ["string", "null"]},
                    "duration_s": {"type": ["number", "null"],
                                   "description": "The MP3's duration in seconds (after start/end): expected from "
                                                  "the source's when the conversion starts (null before, or when "
                                                  "the container does not say), exact once done."},
                    "options": _ref("Options"),
                    "created_at": {"type": "string", "format": "date-time"},
                    "updated_at": {"type": "string", "format": "date-time"},
                    "expires_at": {
                        "type": ["string", "null"],
                        "format": "date-time",
                        "description": "When the MP3 will be deleted (set when done).",
                    },
                },
                "additionalProperties": False,
            },
            "JobList": {
                "type": "object",
                "required": ["jobs", "limit", "offset", "total"],
                "properties": {
                    "jobs": {"type": "array", "items": _ref("Job")},
                    "limit": {"type": "integer"},
                    "offset": {"type": "integer"},
                    "total": {"type": "integer", "description": "How many jobs the caller has in all."},
                },
                "additionalProperties": False,
            },
        },
    },
}
