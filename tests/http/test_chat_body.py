"""The chat body's quick check answers as the schema does, for every body it accepts."""

from hypothesis import example, given, settings, strategies as st

from twin_server.errors import ValidationError
from twin_server.http.schemas import chat_request_schema, load_body, plain_chat_body

MAX = 40
texts = st.one_of(
    st.text(max_size=MAX + 5),
    st.sampled_from(["", " ", "\u2028", "\x1c", "\ufeff", "hi", "\ud800", "x" * MAX, "x" * (MAX + 1), "visitor-0001",
                     "a b", "visitor-0001\n", "ab", "A" * 128, "A" * 129]),
)
values = st.one_of(texts, st.none(), st.integers(), st.booleans(), st.lists(st.integers(), max_size=2),
                   st.floats(allow_nan=False))
bodies = st.one_of(
    st.dictionaries(st.sampled_from(["message", "session_id", "extra", "Message"]), values, max_size=3),
    values,
)


def schema_answer(body):
    try:
        return load_body(chat_request_schema(MAX), body)
    except ValidationError:
        return None


@settings(max_examples=600, deadline=None)
@given(bodies)
@example({"message": "hi"})
@example({"message": "hi", "session_id": "visitor-0001"})
@example({"message": "hi", "session_id": None})
@example({"message": "hi", "session_id": "visitor-0001\n"})
@example({"message": "hi\ud800"})
def test_the_quick_check_accepts_only_what_the_schema_accepts_and_reads_it_alike(body):
    quick = plain_chat_body(body, MAX)
    if quick is not None:
        assert quick == schema_answer(body)


def test_the_quick_check_takes_the_common_bodies():
    assert plain_chat_body({"message": "What do you do?"}, MAX) == {"message": "What do you do?", "session_id": None}
    assert plain_chat_body({"message": "Olá", "session_id": "visitor-0001"}, MAX) == {
        "message": "Olá", "session_id": "visitor-0001"}
    for refused in ({"message": "   "}, {"message": "hi", "session_id": "../x"}, {"message": "hi", "session_id": "visitor-0001\n"}, {"message": "x" * 41},
                    {"message": "hi", "extra": 1}, {"message": "\ud800"}, ["message"], {"session_id": "visitor-0001"}):
        assert plain_chat_body(refused, MAX) is None
