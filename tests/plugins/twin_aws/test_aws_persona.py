"""The S3 persona source against moto's S3 server: layout, caching, revalidation, failures."""

import json
import logging

import pytest

from tests.doubles.moto_server import aws, fail_first, moto_server, record_sends  # noqa: F401  (fixtures)
from twin_aws.persona import S3PersonaSource
from twin_server.errors import BackendUnavailable, ConfigurationError, PersonaError

FACTS = {"full_name": "Ada Example", "headline": "Builds calm systems"}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


@pytest.fixture
def bucket(aws):
    name = aws.bucket("persona-test")
    put(aws, "facts.json", json.dumps(FACTS))
    put(aws, "summary.txt", "I build calm systems.")
    put(aws, "projects.md", "Ledger: a tiny accounting tool.")
    return name


def put(aws, name, text, prefix="persona/"):
    aws.s3.put_object(Bucket="persona-test", Key=prefix + name, Body=text.encode())


def make_source(bucket, clock=None, ttl=30.0, prefix="persona"):
    built = S3PersonaSource.from_config({"PERSONA_S3_BUCKET": bucket, "PERSONA_S3_PREFIX": prefix})
    return S3PersonaSource(built.client, bucket, prefix, ttl, clock=clock or Clock())


def test_reads_the_persona_layout_and_nothing_else(aws, bucket):
    put(aws, "notes.txt", "not part of the layout")
    put(aws, "sub/deep.md", "not directly under the prefix")
    put(aws, ".hidden.md", "hidden")
    put(aws, "facts.json", json.dumps({"full_name": "Someone Else"}), prefix="persona-old/")
    persona = make_source(bucket, prefix="persona/").load()
    assert persona.full_name == "Ada Example"
    assert persona.summary == "I build calm systems."
    assert dict(persona.notes) == {"projects": "Ledger: a tiny accounting tool."}


def test_a_request_within_the_ttl_makes_no_call(bucket):
    clock = Clock()
    source = make_source(bucket, clock)
    first = source.load()
    sends = record_sends(source.client)
    clock.now = 29.9
    assert source.load() is first
    assert sends == []


def test_after_the_ttl_an_unchanged_persona_costs_one_listing(bucket):
    clock = Clock()
    source = make_source(bucket, clock)
    first = source.load()
    sends = record_sends(source.client)
    clock.now = 30.0
    assert source.load() is first
    assert sends == ["ListObjectsV2"]


def test_an_edit_is_picked_up_fetching_only_the_changed_file(aws, bucket):
    clock = Clock()
    source = make_source(bucket, clock)
    source.load()
    put(aws, "summary.txt", "I now build even calmer systems.")
    sends = record_sends(source.client)
    assert source.load().summary == "I build calm systems."  # still within the TTL
    clock.now = 31
    assert source.load().summary == "I now build even calmer systems."
    assert sends == ["ListObjectsV2", "GetObject"]


def test_a_removed_note_disappears(aws, bucket):
    clock = Clock()
    source = make_source(bucket, clock, ttl=0)
    assert "projects" in source.load().notes
    aws.s3.delete_object(Bucket=bucket, Key="persona/projects.md")
    assert "projects" not in source.load().notes


def test_an_invalid_persona_is_a_persona_error_remembered_until_it_changes(aws, bucket, caplog):
    put(aws, "facts.json", "{not json")
    clock = Clock()
    source = make_source(bucket, clock)
    with pytest.raises(PersonaError, match=r"s3://persona-test/persona/facts.json is not valid JSON"):
        source.load()
    sends = record_sends(source.client)
    with pytest.raises(PersonaError):
        source.load()
    assert sends == []
    clock.now = 60
    with pytest.raises(PersonaError):
        source.load()
    assert sum("cannot be loaded" in r.getMessage() for r in caplog.records) == 1  # once, not per request
    put(aws, "facts.json", json.dumps(FACTS))
    clock.now = 120
    assert source.load().full_name == "Ada Example"


def test_an_empty_prefix_says_what_to_upload(bucket):
    with pytest.raises(PersonaError, match=r"s3://persona-test/nobody-here/facts.json is missing"):
        make_source(bucket, prefix="nobody-here").load()


def test_s3_down_on_first_load_is_transient(bucket):
    source = make_source(bucket)
    fail_first(source.client, "ListObjectsV2", times=1, status=503, code="ServiceUnavailable")
    with pytest.raises(BackendUnavailable):
        source.load()
    assert source.load().full_name == "Ada Example"


def test_s3_down_later_serves_the_cached_persona(bucket, caplog):
    clock = Clock()
    source = make_source(bucket, clock)
    first = source.load()
    fail_first(source.client, "ListObjectsV2", times=1, status=500, code="InternalError")
    clock.now = 100
    with caplog.at_level(logging.WARNING, logger="twin_aws.persona"):
        assert source.load() is first
    assert "serving the cached one" in caplog.text
    sends = record_sends(source.client)
    clock.now = 110
    assert source.load() is first
    assert sends == []  # the failed revalidation counts as one: no call per request meanwhile


def test_a_failed_fetch_of_an_edited_file_serves_the_cached_persona_until_it_works(aws, bucket):
    clock = Clock()
    source = make_source(bucket, clock)
    first = source.load()
    put(aws, "summary.txt", "Edited.")
    fail_first(source.client, "GetObject", times=1, status=503, code="SlowDown")
    clock.now = 100
    assert source.load() is first
    clock.now = 200
    assert source.load().summary == "Edited."


def test_a_load_during_a_revalidation_answers_from_the_cache(bucket):
    clock = Clock()
    source = make_source(bucket, clock)
    first = source.load()
    seen = []
    source.client.meta.events.register("before-send.s3.ListObjectsV2", lambda **kw: seen.append(source.load()))
    clock.now = 100
    source.load()
    assert seen == [first]


def test_the_persona_bucket_defaults_to_the_storage_bucket(aws, bucket):
    source = S3PersonaSource.from_config({"S3_BUCKET": bucket})
    assert source.bucket == bucket and source.prefix == "persona"
    assert source.load().full_name == "Ada Example"
    with pytest.raises(ConfigurationError, match="TWIN_PERSONA_S3_BUCKET"):
        S3PersonaSource.from_config({})
