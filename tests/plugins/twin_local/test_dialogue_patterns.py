"""The rewritten patterns of ``twin_local.dialogue`` find exactly what the originals find, kept here as the oracle.

The originals start each branch with ``\\b``; the rewrites move it behind the first letter (and spell out
branches that open with a group) so the regex engine can skip ahead. Same matches, positions and groups, on
random and adversarial text: word boundaries, apostrophes, underscores, digits, non-ASCII letters.

The copy is on purpose: it is what proves the rewrite changed no reply. When a pattern is changed on
purpose (what it matches, not how fast), delete its original here rather than editing both.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from twin_local import dialogue, offline
from twin_local.offline import OfflineLLM
from twin_local.analysis import normalise
from twin_server.evaluation import load_cases

# --- the oracle: dialogue.py's tables as they were before the rewrite, verbatim --------------------------------

#: Intent patterns and how much they boost passages by tag.
INTENTS: tuple[tuple[re.Pattern[str], Mapping[str, float]], ...] = tuple(
    (re.compile(pattern), boosts)
    for pattern, boosts in (
        (r"\bwho (are|r) (you|u)\b|\bintroduce yourself\b|\bwho is this\b|\bwho am i (talking|speaking|chatting)\b",
         {"name": 6.0, "role": 4.0}),
        (r"\byour (full |real )?name\b|\bcall you\b|\bwhat are you called\b", {"name": 6.0}),
        (r"\bwhere\b.*\b(live|living|based|located|from|stay)\b|\bwhere are you\b|\b(your )?location\b"
         r"|\bhome ?town\b|\bwhich (city|country)\b|\bwhat (city|country)\b|\bcall home\b", {"location": 6.0}),
        (r"\bwhat do you do\b(?! (for fun|in your|at the|on (the )?weekends?|outside))"
         r"|\byour (current )?(job|role|position|title|occupation|profession|employer|company)\b"
         r"|\bwhere do you work\b|\bwho do you work for\b|\bfor a living\b|\bwhat do you work on\b"
         r"|\b(company|employer|organi[sz]ation)\b(?!.*\b(before|previous|prior|past|earlier)\b)"
         r"|\bwho (employs|pays) you\b|\bwhere are you employed\b", {"role": 6.0}),
        (r"\bskill|\bgood at\b|\bexpertise\b|\bstrengths?\b|\b(tech )?stack\b|\btechnolog|\bwhat tools\b"
         r"|\blanguages? do you (use|code|program|write|know)\b|\bprogramming languages?\b"
         r"|\bcan you (code|program)\b", {"skills": 6.0}),
        (r"\b(story|background|bio|biography|journey)\b|\babout (yourself|you)\b"
         r"|\bhow did you (start|get into|get started|become)\b", {"summary": 6.0}),
        (r"\b(experience|career|previous (job|role|work|employer)s?|past (job|role|work)s?|worked (at|for|before)"
         r"|employment|work history|cv|resume|résumé|(before|prior to) (joining|you joined|your current))\b"
         r"|\bwhere did you work\b|\bwhere have you worked\b", {"experience": 6.0}),
        (r"\b(your|my|any|the|which|what) projects?\b|\bprojects\b|\bportfolio\b|\bopen[ -]source\b"
         r"|\bwhat have you (built|made|created)\b|\bside projects?\b", {"projects": 5.0}),
        (r"\b(study|studied|degree|universit|college|school|education|qualification|graduat|master'?s|bachelor)",
         {"education": 6.0}),
        (r"\b(hobby|hobbies|interests?|interested in|free time|spare time|for fun|weekends?|outside (of )?work"
         r"|passions?|pastimes?|sports?|unwind|relax|get up to)\b", {"interests": 6.0}),
        (r"\bdo you speak\b|\blanguages? (do )?you speak\b|\bspeak any\b|\bwhat languages\b(?! do you (use|code))"
         r"|\bspoken languages?\b|\bnative (english |)speaker\b|\bnative language\b|\bhow many languages\b",
         {"languages": 6.0}),
        (r"\b(contact|e-?mail|reach you|get in touch|website|your site|linkedin)\b", {"contact": 6.0}),
        (r"\bpronouns?\b", {"pronouns": 6.0}),
    )
)

#: Personal questions that stay unanswered unless the facts have one of these keys.
PRIVATE: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (re.compile(pattern), keys)
    for pattern, keys in (
        (r"\bhow old\b|\byour age\b|\bwhen were you born\b|\byour birthday\b", ("age", "birthday", "date_of_birth")),
        (r"\bare you (married|single|dating)\b|\bdo you have (a |any )?(kids|children|girlfriend|boyfriend|husband"
         r"|wife|partner)\b", ("family", "relationship", "children")),
        (r"\b(salary|income|wages?|earnings|net worth|compensation)\b|\bhow much do you (earn|make|get paid)\b"
         r"|\byour pay\b", ("salary",)),
        (r"\bwho (did|do|will) you vote\b|\bpolitic|\breligio", ("politics", "religion")),
        (r"\b(home|street|postal|house) address\b|\bwhere exactly do you live\b", ("address",)),
    )
)

_INJECTION = re.compile(
    r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|rules?|prompts?|directions?|guidelines?"
    r"|programming|constraints?)\b"
    r"|\b(system|initial|hidden|original|secret|developer)\s+(prompt|instructions?|message|rules)\b"
    r"|\byour (instructions|rules|prompt|guidelines|directives|configuration)\b"
    r"|\b(repeat|print|reveal|show|output|display|dump|recite|leak)\b.{0,30}\b(above|prompt|instructions|rules)\b"
    r"|\b(pretend|imagine)\b.{0,12}\b(you are|you're|to be)\b|\brole[ -]?play\b"
    r"|\b(talk|speak|write|answer|respond|reply) (like|as) (an? |my |the )?(pirate|[a-z]+ from now)"
    r"|^(please |now )?(act|behave) as\b|\b(can|could|would) you (please )?(act|behave) as\b"
    r"|\byou are now\b|\bfrom now on,? you\b|\b(developer|dan|jailbreak|god|sudo) mode\b"
    r"|^\s*\[?(system|developer|admin|administrator)\]?\s*:|\bforget (that )?you('re| are)\b"
)
_ARITHMETIC = re.compile(
    r"\d\s*[+*/×÷^]\s*\d|\d\s+x\s+\d|\d\s*(plus|minus|times|multiplied by|divided by|to the power of)\s*\d"
    r"|\b(calculate|compute|solve|square root|cube root|factorial|derivative|integral)\b|\d+\s*(%|percent) of\b"
)
_WRITING = re.compile(
    r"^(please |can you |could you |would you |will you )*(write|compose|draft|generate|create|make up|rewrite"
    r"|proofread|paraphrase|give me|tell me|sing|recite)\b(?! (me )?(about|more)\b).{0,40}(?<!your )(?<!life )"
    r"\b(poem|essay|story|haiku|limerick|song|lyrics|joke|riddle|letter|e-?mail|code|function|script|program"
    r"|recipe|speech|tweet|article|sql|regex|sonnet|cover letter)s?\b"
    r"|^(please |can you |could you |would you )*(translate|summari[sz]e)\b(?!.{0,40}\b(your|yourself)\b)"
)
_ARE_YOU_AI = re.compile(
    r"\b(are|r) (you|u) (an? |the )?(actual |real )?(real|human|person|ai|bot|robot|chatbot|machine|program"
    r"|computer|language model|llm|twin|digital twin)\b"
    r"|\b(are|r) (you|u) (really|actually|truly|for real)\b"
    r"|\b(talking|chatting|speaking) (to|with) (an? )?(real person|human|ai|bot|robot|machine|computer)\b"
    r"|\b(is|am) (this|that|it|i) (really |actually )?((talking|chatting|speaking) (to|with) )?(an? |the )?"
    r"(real |actual )?(person|human|ai|bot|robot|chatbot|machine|program|computer|chatgpt|gpt|llm|language model)\b"
    r"|\bor an? (ai|bot|robot|machine|computer|program)\b"
    r"|\b(machine|bot|ai|computer|program|robot)\b.{0,20}\b(answering|replying|talking|responding|writing)\b"
)
GREETING = re.compile(
    r"^(hi|hello|hey|hiya|howdy|greetings|good (morning|afternoon|evening|day)|hola|ola|olá)\b"
    r"(\s*(there|everyone|all|you))?[\s!.,:;-]*"
)
_INTERJECTION = re.compile(r"^((ok|okay|cool|great|nice|awesome|perfect|brilliant|lovely|wow|oh|ah|alright|right"
                           r"|i see|got it|fair enough|interesting)\b(?! to (meet|e-?meet|hear|know))[\s!.,:;-]*)+")
HOW_ARE_YOU = re.compile(
    r"^(how are you|how're you|how are things|how('s| is) it going|how('s| is) your day( going)?|how have you been"
    r"|how do you do|what'?s up|how('s| is) life|how('s| is) everything|you ok|you alright)( doing)?( today)?"
    r"[\s?!.]*$"
)
NICE_TO_MEET = re.compile(r"^(nice|good|great|pleased|lovely) to (meet|e-?meet) you\b|^pleasure to meet you\b")
THANKS = re.compile(r"^(thanks|thank you|thx|ty|cheers|many thanks|much appreciated|appreciate it)\b")
GOODBYE = re.compile(r"^(bye|goodbye|good bye|see you|see ya|farewell|take care)\b")
MORE = re.compile(r"^(tell me more|more|go on|and|what else|anything else|continue|keep going|say more|elaborate)"
                  r"( please)?[\s?!.]*$")

_ANSWER_KINDS: tuple[tuple[re.Pattern[str], frozenset[str]], ...] = tuple(
    (re.compile(pattern), frozenset(kinds.split()))
    for pattern, kinds in (
        (r"\bwhen\b|\bwhat year\b|\bwhich year\b|\bsince when\b|\bhow long ago\b", "year"),
        (r"\bhow long (have|has|had|were|was|did) you\b|\bhow many years\b", "year duration"),
        (r"\bhow long (do|does|did|will|can|would)\b|\bhow soon\b|\bhow quickly\b|\bhow often\b", "duration"),
        (r"\bhow much\b.*\b(cost|charge|spend|pay|build|make)\b|\b(cost|costs|price|priced|expensive|cheap|afford"
         r"|budget)\b", "money"),
        (r"\bhow (big|large|long|tall|wide|heavy|fast|far|deep|small|accurate|precise|quick)\b|\bwhat size\b"
         r"|\bsize of\b|\bhow much does it weigh\b", "measure quantity"),
        (r"\bhow many\b|\bnumber of\b|\bhow big\b", "quantity"),
        (r"\bwhere\b", "place"),
        (r"\b(programming )?language\b(?!s? (do|did|can) you speak)|\b(written|coded|built|programmed) (it )?in\b",
         "code"),
    )
)
_SECOND_PERSON = re.compile(r"\b(you|your|yours|yourself|u|ur|ya|favou?rite)\b")
_ANAPHORA = re.compile(r"\b(it|its|that|this|there|they|them|their|those|these|he|she|him|her)\b")
_FOLLOW_UP_START = re.compile(r"^(and|so|but|also|then|what about|how about|why|how|when|where|who)\b")
_RELATION = re.compile(r"\b(before|prior to|earlier than|after|since leaving|following)\b")



EVALS = Path(__file__).resolve().parents[3] / "evals"

# --- the comparison ---------------------------------------------------------------------------------------------

#: (original, rewritten) for every pattern kept whole; the injection and arithmetic tests were split (see below).
PAIRS = (
    [(o, n) for (o, _), (n, _) in zip(INTENTS, dialogue.INTENTS, strict=True)]
    + [(o, n) for (o, _), (n, _) in zip(PRIVATE, dialogue.PRIVATE, strict=True)]
    + [(o, n) for (o, _), (n, _) in zip(_ANSWER_KINDS, dialogue._ANSWER_KINDS, strict=True)]
    + [(globals()[name], getattr(dialogue, name)) for name in (
        "_ARE_YOU_AI", "_WRITING", "GREETING", "_INTERJECTION", "HOW_ARE_YOU", "NICE_TO_MEET", "THANKS", "GOODBYE",
        "MORE", "_SECOND_PERSON", "_ANAPHORA", "_FOLLOW_UP_START", "_RELATION")]
)
#: Patterns whose groups the model never reads: spelling out a leading group leaves different groups, same spans.
SPANS_ONLY = {id(n) for o, n in PAIRS if o.groups != n.groups}
#: Every word and fragment the originals spell, so random text often comes near a match.
WORDS = sorted({w for o, _ in PAIRS + [(_INJECTION, None), (_ARITHMETIC, None)]
                for w in re.findall(r"[a-zé']+", re.sub(r"\\[bsd]", " ", o.pattern))})
GLUE = ["", " ", " ", " ", "  ", "'", "_", "-", ",", ".", "?", "!", ":", "\n", "\t", "é", "ß", "ü", "1", "42", "x",
        "+", "%", "[", "]", "’", "\u00a0", "İ", "ǅ"]
ADVERSARIAL = [
    "", "who are you", "xwho are you", "who are youx", "who_are you", "who are you_", "1who are you", "éwho are you",
    "what do you do for fun", "what do you do", "what do you doé", "my company before", "company", "the companyé",
    "masters", "master's degree", "mastersé", "résumé", "xrésumé", "e-mail me", "email", "emailé", "[system]: hi",
    "  system : now", "please act as a cat", "now behave as", "act as", "2+2", "3 x 4", "5 percent of 10", "1%of x",
    "is this really ada", "are u a bot", "r u real", "machine is answering", "how much does it cost", "cost_",
    "programming language", "programming languages do you speak", "language do you speak", "written it in",
    "before that", "prior to joining", "before you joined", "since leaving", "it's", "that'll", "they're", "u",
    "your location", "yourlocation", "hometown", "home town", "tech stack", "techstack", "stack_", "bio", "biography",
]


def _same(original: re.Pattern[str], rewritten: re.Pattern[str], text: str) -> None:
    want = list(original.finditer(text))
    got = list(rewritten.finditer(text))
    assert [m.span() for m in got] == [m.span() for m in want], (original.pattern, text)
    if id(rewritten) not in SPANS_ONLY:
        assert [m.groups() for m in got] == [m.groups() for m in want], (original.pattern, text)
    assert rewritten.search(text) is not None or original.search(text) is None
    for start in range(0, len(text) + 1, 3):  # a search from inside the text still sees the boundary before it
        a, b = original.search(text, start), rewritten.search(text, start)
        assert (a and a.span()) == (b and b.span()), (original.pattern, text, start)


def _check(text: str) -> None:
    for original, rewritten in PAIRS:
        _same(original, rewritten, text)
    assert dialogue.is_injection(text) == bool(_INJECTION.search(text)), text
    assert dialogue.is_task(text) == bool(_ARITHMETIC.search(text) or _WRITING.search(text)), text


def test_groups_differ_only_where_the_model_reads_none() -> None:
    names = {id(getattr(dialogue, n)) for n in ("_RELATION", "GREETING", "_INTERJECTION", "MORE")}
    assert not names & SPANS_ONLY
    assert len(SPANS_ONLY) < len(PAIRS)


def test_the_rewrites_let_the_engine_skip_ahead() -> None:
    # A leading \b hid the first letters from the engine; now each rewritten table pattern starts with a letter.
    leading = [n for n, _ in dialogue.INTENTS + dialogue.PRIVATE + dialogue._ANSWER_KINDS]
    assert all(not n.pattern.startswith("\\b") for n in leading)


@pytest.mark.parametrize("text", ADVERSARIAL)
def test_adversarial_text(text: str) -> None:
    _check(text)
    _check(text.upper().lower() + " " + text)


def test_the_golden_questions() -> None:
    for name in ("example", "heldout"):
        for case in load_cases(EVALS / f"{name}.jsonl"):
            for text in (case.question, *case.history):
                _check(normalise(text))
                _check(text)


def _lookarounds(pattern: str) -> list[str]:
    """The bodies of the pattern's lookaheads and lookbehinds: the text that decides them is worth generating too."""
    bodies = []
    for found in re.finditer(r"\(\?<?[=!]", pattern):
        depth, at = 1, found.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(pattern[at], 0) if pattern[at - 1] != "\\" else 0
            at += 1
        bodies.append(pattern[found.end():at - 1])
    return bodies


#: Text each original (or a lookaround inside it) matches: glued together, they test the edges of every branch.
POOL = [p for o, _ in PAIRS + [(_INJECTION, None), (_ARITHMETIC, None)] for p in [o.pattern, *_lookarounds(o.pattern)]]
PIECES = st.one_of([st.from_regex(p, fullmatch=True) for p in POOL])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(WORDS), st.sampled_from(GLUE), st.text(max_size=3)), max_size=14))
@example(["who", "", "are", " ", "you"])
def test_near_matches(parts: list[str]) -> None:
    _check("".join(parts))
    _check(" ".join(parts))


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(PIECES, st.sampled_from(GLUE)), min_size=1, max_size=5))
def test_matches_glued_together(parts: list[str]) -> None:
    _check("".join(parts))
    _check(" ".join(parts))


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=40))
def test_random_text(text: str) -> None:
    _check(text)
    _check(normalise(text))


def _original_name_question(first_name: str) -> re.Pattern[str]:
    # As asks_if_ai built it on every call before.
    name = re.escape(first_name)
    return re.compile(rf"\b(is|am) (this|that|it|i) (really |actually |talking to |chatting with )*{name}\b")


NAMES = ["ada", "bo", "zoë", "o'neil", "x\\bob", "a.b", "jo_"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(NAMES), st.data())
def test_name_question(first_name: str, data: st.DataObject) -> None:
    original = _original_name_question(first_name)
    near = st.from_regex(original, fullmatch=True) | st.sampled_from(NAMES + ["is", "this", "really", "mis"] + GLUE)
    parts = data.draw(st.lists(near, max_size=4))
    for text in ("".join(parts), " ".join(parts)):
        _same(original, dialogue.name_question(first_name), text)


def _original_boosts(text: str, share: float) -> dict[str, float]:
    # offline._boosts as it was: every intent's boosts scaled by the share, the largest kept.
    boosts: dict[str, float] = {}
    for pattern, intent in INTENTS:
        if pattern.search(text):
            for tag, boost in intent.items():
                boosts[tag] = max(boosts.get(tag, 0.0), boost * share)
    return boosts


SHARES = [1.0] + [share * 0.7 for share in OfflineLLM.CARRY]


def _same_boosts(text: str) -> None:
    for share in SHARES:
        want = _original_boosts(text, share)
        got = offline._boosts(text, share)
        assert list(got.items()) == list(want.items()), (text, share)


def test_boosts_of_the_golden_questions() -> None:
    for name in ("example", "heldout"):
        for case in load_cases(EVALS / f"{name}.jsonl"):
            for text in (case.question, *case.history):
                _same_boosts(normalise(text))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(PIECES, st.sampled_from(WORDS), st.sampled_from(GLUE)), min_size=1, max_size=6))
def test_boosts_of_several_intents_at_once(parts: list[str]) -> None:
    _same_boosts(" ".join(parts))
