"""The event values: every field's rule and limit, dedup ids, question counting, and plain-text detection."""

from datetime import datetime, timedelta, timezone

import pytest

from twin_server.events import (
    EMAIL_MAX, NAME_MAX, NOTES_MAX, QUESTION_MAX, SESSIONS_PER_QUESTION, Lead, Question, describe, find_emails,
    normalise_question, valid_email,
)
from twin_server.owner.detection import contacts_in, name_in, question_from

T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)
SESSION = "session-one"


@pytest.mark.parametrize("address", ["jane@example.com", "jane.doe+jobs@mail.example.co.uk", "a_b-c@x-y.io"])
def test_valid_addresses(address):
    assert valid_email(address)


@pytest.mark.parametrize("address", ["", "jane", "jane@", "@example.com", "jane@example", "jane@@example.com",
                                     "jane..doe@example.com", ".jane@example.com", "jane@-example.com",
                                     "jane doe@example.com", "jane@example.c", "x" * 65 + "@example.com",
                                     "a@" + "b" * 250 + ".com", None, 42])
def test_invalid_addresses(address):
    assert not valid_email(address)


def test_find_emails_in_text_each_once_without_trailing_punctuation():
    text = "Mail me at Jane@Example.com. Or jane@example.com, or bob@work.io!"
    assert find_emails(text) == ["Jane@Example.com", "bob@work.io"]
    assert find_emails("no address here, just @ signs and example.com") == []


def test_a_lead_keeps_its_fields_within_their_limits():
    lead = Lead.create(SESSION, " jane@example.com ", "Jane Doe", "Wants to talk about a role.", at=T0)
    assert (lead.email, lead.name, lead.notes) == ("jane@example.com", "Jane Doe", "Wants to talk about a role.")
    assert lead.id == Lead.id_for(SESSION, "JANE@example.com")  # one lead per session and address
    assert Lead.from_dict(lead.to_dict()) == lead


@pytest.mark.parametrize("email, name, notes, complaint", [
    ("not an address", "", "", "email is not a valid"),
    ("", "", "", "email must not be empty"),
    (["jane@example.com"], "", "", "email must be a string"),
    ("jane@example.com", "J" * (NAME_MAX + 1), "", "name must be at most"),
    ("jane@example.com", "Jane\nDoe", "", "control characters"),
    ("jane@example.com", "", "n" * (NOTES_MAX + 1), "notes must be at most"),
    ("jane@example.com", "", "bell\x07", "control characters"),
    ("jane@example.com", {"first": "Jane"}, "", "name must be a string"),
    ("j" * EMAIL_MAX + "@example.com", "", "", "email must be at most"),
])
def test_a_lead_breaking_a_rule_is_refused(email, name, notes, complaint):
    with pytest.raises(ValueError, match=complaint):
        Lead.create(SESSION, email, name, notes, at=T0)


def test_a_question_counts_its_asks_per_session_and_forgets_a_deleted_one():
    first = Question.create("session-a1", "What is your salary?", at=T0)
    again = Question.create("session-b1", "what is your salary", at=T0 + timedelta(hours=1))
    assert again.id == first.id  # the same question, normalised
    merged = first.merged(again).merged(Question.create("session-a1", "WHAT IS YOUR SALARY ?!", at=T0))
    assert merged.count == 3 and merged.session_ids == ("session-b1", "session-a1")  # the last to ask last
    assert merged.first_asked == T0 and merged.last_asked == T0 + timedelta(hours=1)
    assert merged.question == "What is your salary?"
    left = merged.without_session("session-a1")
    assert left.count == 1 and left.session_ids == ("session-b1",)
    assert left.without_session("session-b1") is None
    assert Question.from_dict(merged.to_dict()) == merged


def test_a_question_remembers_a_bounded_number_of_sessions():
    entry = Question.create("session-00000", "Why?", at=T0)
    for n in range(1, SESSIONS_PER_QUESTION + 5):
        entry = entry.merged(Question.create(f"session-{n:05d}", "why", at=T0))
    assert len(entry.session_ids) == SESSIONS_PER_QUESTION
    assert entry.count == SESSIONS_PER_QUESTION + 5 and entry.others == 5


@pytest.mark.parametrize("question", ["", "   ", "?!", "q" * (QUESTION_MAX + 1), "nul\x00"])
def test_a_question_breaking_a_rule_is_refused(question):
    with pytest.raises(ValueError):
        Question.create(SESSION, question, at=T0)


def test_normalised_questions_ignore_case_spacing_and_end_punctuation():
    assert normalise_question("  What’s   your STACK?? ") == normalise_question("what's your stack")


def test_describe_gives_a_notifier_the_event_its_fields_and_a_line_of_text():
    lead = Lead.create(SESSION, "jane@example.com", "Jane Doe", "Hiring\nfor a role", at=T0)
    described = describe(lead)
    assert described["event"] == "lead" and described["email"] == "jane@example.com"
    assert described["text"] == "New lead from your twin: Jane Doe <jane@example.com> — Hiring for a role"
    assert "delivery" not in described
    question = describe(Question.create(SESSION, "How old are you?", at=T0))
    assert question["event"] == "unanswered" and question["count"] == 1 and question["session_ids"] == [SESSION]
    assert question["text"] == "Your twin could not answer: How old are you?"


@pytest.mark.parametrize("text, name", [
    ("Hi, I'm Jane Doe, a recruiter. jane@example.com", "Jane Doe"),
    ("my name is jane doe and my email is jane@example.com", "Jane Doe"),
    ("This is Ana-Maria O'Neil from Acme.", "Ana-Maria O'Neil"),
    ("I am Zoë Ångström", "Zoë Ångström"),
    ("Call me Bob.", "Bob"),
    ("I'm interested in your work", ""),
    ("I'm Looking for an engineer", ""),
    ("I am a recruiter at Acme", ""),
    ("this is great", ""),
])
def test_names_given_in_plain_text(text, name):
    assert name_in(text) == name


def test_a_message_with_an_address_is_a_contact_noted_with_the_message():
    [contact] = contacts_in("Hello! I'm Jane Doe, please write to jane@example.com about the role.")
    assert (contact.email, contact.name) == ("jane@example.com", "Jane Doe")
    assert contact.notes.startswith("Hello! I'm Jane Doe")
    assert contacts_in("no address, I'm Jane Doe") == []
    long = contacts_in("x" * 2000 + " jane@example.com")
    assert len(long[0].notes) == NOTES_MAX
    assert len(question_from("q" * 5000)) == QUESTION_MAX
