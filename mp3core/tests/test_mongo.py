"""The client settings connect() produces for a MONGO_URI: majority writes and reads from the primary, retried
once across a failover, whatever the URI says (no server needed: pymongo connects in the background, and
the addresses are closed local ports)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pymongo import ReadPreference
from pymongo.database import Database
from pymongo.write_concern import WriteConcern

from mp3core import mongo

# Ports 1-3 on the loopback: nothing listens there, so nothing is ever reached.
STANDALONE = "mongodb://127.0.0.1:1/mp3converter"
REPLICA_SET = ("mongodb://mp3-gateway:secret@127.0.0.1:1,127.0.0.1:2,127.0.0.1:3/mp3converter"
               "?replicaSet=rs0&authSource=mp3converter")
# Options an operator might copy from a single-server setup; the code's durability must win over them.
WEAKENED = ("mongodb://127.0.0.1:1,127.0.0.1:2/mp3converter?replicaSet=rs0&w=1&journal=false"
            "&readPreference=secondaryPreferred&readConcernLevel=local&retryWrites=false&retryReads=false")


@pytest.fixture
def connected() -> Iterator[list[Database]]:
    opened: list[Database] = []
    yield opened
    for db in opened:
        db.client.close()


def connect(uri: str, opened: list[Database]) -> Database:
    db = mongo.connect(uri)
    opened.append(db)
    return db


@pytest.mark.parametrize("uri", [STANDALONE, REPLICA_SET, WEAKENED], ids=["standalone", "replica-set", "weakened"])
def test_writes_wait_for_a_majority_and_reads_come_from_the_primary(connected, uri):
    db = connect(uri, connected)
    assert db.name == "mp3converter"
    # Every collection the services use inherits them: job state and both GridFS buckets' files and chunks.
    for target in (db, *(db[name] for name in ("jobs", "idempotency_keys", "videos.files", "videos.chunks",
                                               "mp3s.files", "mp3s.chunks"))):
        assert target.write_concern == WriteConcern(w="majority", j=True)
        assert target.read_concern.level == "majority"
        assert target.read_preference == ReadPreference.PRIMARY
    options = db.client.options
    assert options.retry_writes is True
    assert options.retry_reads is True


def test_the_replica_set_name_and_credentials_come_from_the_uri(connected):
    db = connect(REPLICA_SET, connected)
    options = db.client.options
    assert options.replica_set_name == "rs0"
    assert options.pool_options._credentials.username == "mp3-gateway"
    assert options.pool_options._credentials.source == "mp3converter"
    assert {seed for seed in db.client.topology_description.server_descriptions()} == {
        ("127.0.0.1", 1), ("127.0.0.1", 2), ("127.0.0.1", 3)}


def test_a_standalone_uri_names_no_replica_set(connected):
    # FerretDB and the minikube overlay's single MongoDB: the same options, no replica set to discover.
    assert connect(STANDALONE, connected).client.options.replica_set_name is None


def test_times_are_timezone_aware_and_an_unreachable_server_fails_fast(connected):
    db = connect(STANDALONE, connected)
    assert db.codec_options.tz_aware is True
    assert db.client.options.server_selection_timeout == mongo.TIMEOUT_MS / 1000
    assert db.client.options.pool_options.connect_timeout == mongo.TIMEOUT_MS / 1000
