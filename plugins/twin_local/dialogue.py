"""What a visitor's message is doing, read from its wording: the offline model's regular-expression tables.

Every function takes the normalised message (``analysis.normalise``). None
of it knows a particular persona: topics are the persona's own tags ("role",
"skills", ...), and the persona's name is passed in where it matters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType

from twin_local.analysis import message_cache, stem

_BOUNDARY_LETTER = re.compile(r"\\b([a-z])")


def _compile(pattern: str) -> re.Pattern[str]:
    r"""The pattern with each ``\b`` before a letter moved behind it (``\bwho`` becomes ``w(?<=\bw)ho``).

    Same matches, but when every branch starts with a letter the engine skips
    straight to where one of those letters is instead of trying each position:
    a leading ``\b`` hides them from it. A branch opening with a group or
    ``^`` still hides them, so the tables spell such branches out one by one.
    """
    return re.compile(_letters_first(pattern))


def _letters_first(pattern: str) -> str:
    return _BOUNDARY_LETTER.sub(r"\1(?<=\\b\1)", pattern)


def _each(alternatives: str, rest: str = "") -> str:
    r"""``\ba<rest>|\bb<rest>|...`` for ``a|b|...``: a leading group spelled out branch by branch, in order."""
    branches, depth, start = [], 0, 0
    for at, char in enumerate(alternatives):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "|" and not depth:
            branches.append(alternatives[start:at])
            start = at + 1
    branches.append(alternatives[start:])
    return "|".join(rf"\b{branch}{rest}" for branch in branches)


#: Intent patterns and how much they boost passages by tag.
INTENTS: tuple[tuple[re.Pattern[str], Mapping[str, float]], ...] = tuple(
    (_compile(pattern), boosts)
    for pattern, boosts in (
        (r"\bwho (are|r) (you|u)\b|\bintroduce yourself\b|\bwho is this\b|\bwho am i (talking|speaking|chatting)\b",
         {"name": 6.0, "role": 4.0}),
        (r"\byour (full |real )?name\b|\bcall you\b|\bwhat are you called\b", {"name": 6.0}),
        (r"\bwhere\b.*\b(live|living|based|located|from|stay)\b|\bwhere are you\b|\byour location\b|\blocation\b"
         r"|\bhome ?town\b|\bwhich (city|country)\b|\bwhat (city|country)\b|\bcall home\b", {"location": 6.0}),
        (r"\bwhat do you do\b(?! (for fun|in your|at the|on (the )?weekends?|outside))"
         r"|\byour (current )?(job|role|position|title|occupation|profession|employer|company)\b"
         r"|\bwhere do you work\b|\bwho do you work for\b|\bfor a living\b|\bwhat do you work on\b|"
         + _each("company|employer|organi[sz]ation", r"\b(?!.*\b(before|previous|prior|past|earlier)\b)")
         + r"|\bwho (employs|pays) you\b|\bwhere are you employed\b", {"role": 6.0}),
        (r"\bskill|\bgood at\b|\bexpertise\b|\bstrengths?\b|\btech stack\b|\bstack\b|\btechnolog|\bwhat tools\b"
         r"|\blanguages? do you (use|code|program|write|know)\b|\bprogramming languages?\b"
         r"|\bcan you (code|program)\b", {"skills": 6.0}),
        (_each("story|background|bio|biography|journey", r"\b") + r"|\babout (yourself|you)\b"
         r"|\bhow did you (start|get into|get started|become)\b", {"summary": 6.0}),
        (_each(r"experience|career|previous (job|role|work|employer)s?|past (job|role|work)s?|worked (at|for|before)"
               r"|employment|work history|cv|resume|résumé|before (joining|you joined|your current)"
               r"|prior to (joining|you joined|your current)", r"\b")
         + r"|\bwhere did you work\b|\bwhere have you worked\b", {"experience": 6.0}),
        (_each("your|my|any|the|which|what", r" projects?\b") + r"|\bprojects\b|\bportfolio\b|\bopen[ -]source\b"
         r"|\bwhat have you (built|made|created)\b|\bside projects?\b", {"projects": 5.0}),
        ("(" + _each("study|studied|degree|universit|college|school|education|qualification|graduat|master'?s"
                     "|bachelor") + ")", {"education": 6.0}),
        ("(" + _each("hobby|hobbies|interests?|interested in|free time|spare time|for fun|weekends?|outside (of )?work"
                     "|passions?|pastimes?|sports?|unwind|relax|get up to") + r")\b", {"interests": 6.0}),
        (r"\bdo you speak\b|\blanguages? (do )?you speak\b|\bspeak any\b|\bwhat languages\b(?! do you (use|code))"
         r"|\bspoken languages?\b|\bnative (english |)speaker\b|\bnative language\b|\bhow many languages\b",
         {"languages": 6.0}),
        ("(" + _each("contact|e-?mail|reach you|get in touch|website|your site|linkedin") + r")\b", {"contact": 6.0}),
        (r"\bpronouns?\b", {"pronouns": 6.0}),
    )
)

#: Personal questions that stay unanswered unless the facts have one of these keys.
PRIVATE: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = tuple(
    (_compile(pattern), keys)
    for pattern, keys in (
        (r"\bhow old\b|\byour age\b|\bwhen were you born\b|\byour birthday\b", ("age", "birthday", "date_of_birth")),
        (r"\bare you (married|single|dating)\b|\bdo you have (a |any )?(kids|children|girlfriend|boyfriend|husband"
         r"|wife|partner)\b", ("family", "relationship", "children")),
        (_each("salary|income|wages?|earnings|net worth|compensation", r"\b")
         + r"|\bhow much do you (earn|make|get paid)\b|\byour pay\b", ("salary",)),
        (r"\bwho (did|do|will) you vote\b|\bpolitic|\breligio", ("politics", "religion")),
        (_each("home|street|postal|house", r" address\b") + r"|\bwhere exactly do you live\b", ("address",)),
    )
)

_INJECTION = _compile(
    _each("ignore|disregard|forget|override|bypass",
          r"\b.{0,40}\b(instructions?|rules?|prompts?|directions?|guidelines?|programming|constraints?)\b")
    + "|" + _each("system|initial|hidden|original|secret|developer", r"\s+(prompt|instructions?|message|rules)\b")
    + r"|\byour (instructions|rules|prompt|guidelines|directives|configuration)\b|"
    + _each("repeat|print|reveal|show|output|display|dump|recite|leak",
            r"\b.{0,30}\b(above|prompt|instructions|rules)\b")
    + "|" + _each("pretend|imagine", r"\b.{0,12}\b(you are|you're|to be)\b") + r"|\brole[ -]?play\b|"
    + _each("talk|speak|write|answer|respond|reply", r" (like|as) (an? |my |the )?(pirate|[a-z]+ from now)")
    + "|" + _each("can|could|would", r" you (please )?(act|behave) as\b")
    + r"|\byou are now\b|\bfrom now on,? you\b|" + _each("developer|dan|jailbreak|god|sudo", r" mode\b")
    + r"|\bforget (that )?you('re| are)\b"
)
#: The branches of the injection test that hold only at the start of the message.
_INJECTION_OPENING = re.compile(
    r"^(please |now )?(act|behave) as\b|^\s*\[?(system|developer|admin|administrator)\]?\s*:")
_ARITHMETIC_DIGITS = re.compile(
    r"\d(\s*[+*/×÷^]\s*\d|\s+x\s+\d|\s*(plus|minus|times|multiplied by|divided by|to the power of)\s*\d"
    r"|\d*\s*(%|percent) of\b)"
)
_ARITHMETIC_WORDS = _compile(
    r"(\bcalculate|\bcompute|\bsolve|\bsquare root|\bcube root|\bfactorial|\bderivative|\bintegral)\b")
_WRITING = re.compile(
    r"^(please |can you |could you |would you |will you )*(write|compose|draft|generate|create|make up|rewrite"
    r"|proofread|paraphrase|give me|tell me|sing|recite)\b(?! (me )?(about|more)\b).{0,40}(?<!your )(?<!life )"
    r"\b(poem|essay|story|haiku|limerick|song|lyrics|joke|riddle|letter|e-?mail|code|function|script|program"
    r"|recipe|speech|tweet|article|sql|regex|sonnet|cover letter)s?\b"
    r"|^(please |can you |could you |would you )*(translate|summari[sz]e)\b(?!.{0,40}\b(your|yourself)\b)"
)
_ARE_YOU_AI = _compile(
    _each("are|r", r" (you|u) (an? |the )?(actual |real )?(real|human|person|ai|bot|robot|chatbot|machine|program"
                   r"|computer|language model|llm|twin|digital twin)\b")
    + "|" + _each("are|r", r" (you|u) (really|actually|truly|for real)\b")
    + "|" + _each("talking|chatting|speaking",
                  r" (to|with) (an? )?(real person|human|ai|bot|robot|machine|computer)\b")
    + "|" + _each("is|am", r" (this|that|it|i) (really |actually )?((talking|chatting|speaking) (to|with) )?"
                  r"(an? |the )?(real |actual )?(person|human|ai|bot|robot|chatbot|machine|program|computer|chatgpt"
                  r"|gpt|llm|language model)\b")
    + r"|\bor an? (ai|bot|robot|machine|computer|program)\b|"
    + _each("machine|bot|ai|computer|program|robot", r"\b.{0,20}\b(answering|replying|talking|responding|writing)\b")
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
    (_compile(pattern), frozenset(kinds.split()))
    for pattern, kinds in (
        (r"\bwhen\b|\bwhat year\b|\bwhich year\b|\bsince when\b|\bhow long ago\b", "year"),
        (r"\bhow long (have|has|had|were|was|did) you\b|\bhow many years\b", "year duration"),
        (r"\bhow long (do|does|did|will|can|would)\b|\bhow soon\b|\bhow quickly\b|\bhow often\b", "duration"),
        (r"\bhow much\b.*\b(cost|charge|spend|pay|build|make)\b|"
         + _each("cost|costs|price|priced|expensive|cheap|afford|budget", r"\b"), "money"),
        (r"\bhow (big|large|long|tall|wide|heavy|fast|far|deep|small|accurate|precise|quick)\b|\bwhat size\b"
         r"|\bsize of\b|\bhow much does it weigh\b", "measure quantity"),
        (r"\bhow many\b|\bnumber of\b|\bhow big\b", "quantity"),
        (r"\bwhere\b", "place"),
        (r"\bprogramming language\b(?!s? (do|did|can) you speak)|\blanguage\b(?!s? (do|did|can) you speak)|"
         + _each("written|coded|built|programmed", r" (it )?in\b"), "code"),
    )
)
_SECOND_PERSON = _compile("(" + _each("you|your|yours|yourself|u|ur|ya|favou?rite") + r")\b")
_ANAPHORA = _compile("(" + _each("it|its|that|this|there|they|them|their|those|these|he|she|him|her") + r")\b")
_FOLLOW_UP_START = re.compile(r"^(and|so|but|also|then|what about|how about|why|how|when|where|who)\b")
_WORD = re.compile(r"[a-z0-9]+")
_RELATION = _compile("(" + _each("before|prior to|earlier than|after|since leaving|following") + r")\b")


def strip_interjections(text: str) -> str:
    return _INTERJECTION.sub("", text, count=1).strip()


def is_injection(text: str) -> bool:
    """An attempt to change who the twin is or to read its instructions."""
    return bool(_INJECTION.search(text) or _INJECTION_OPENING.match(text))


def is_task(text: str) -> bool:
    """A request for work the twin is not here for: arithmetic, writing, translating, jokes."""
    return bool(_ARITHMETIC_DIGITS.search(text) or _ARITHMETIC_WORDS.search(text) or _WRITING.search(text))


def name_question(first_name: str) -> re.Pattern[str]:
    """"Is this really <name>?" for ``asks_if_ai``: compiled once per persona."""
    asking = _letters_first("(" + _each("is|am") + ") (this|that|it|i) (really |actually |talking to |chatting with )*")
    return re.compile(asking + re.escape(first_name) + r"\b")


def asks_if_ai(text: str, name_question: re.Pattern[str]) -> bool:
    """"Are you a bot?", "is this really <name>?" (``name_question``), "am I talking to a real person?"."""
    return bool(_ARE_YOU_AI.search(text) or name_question.search(text))


def is_personal(text: str, names: frozenset[str]) -> bool:
    """The message is about the person ("you", "your", or a name of theirs, as stems), not the world at large."""
    return bool(_SECOND_PERSON.search(text) or names & {stem(w) for w in _WORD.findall(text)})


@message_cache
def intent_boosts(text: str) -> Mapping[str, float]:
    """How much the intents the message shows (``INTENTS``) boost passages by tag: the most any of them gives."""
    boosts: dict[str, float] = {}
    for pattern, intent in INTENTS:
        if pattern.search(text):
            for tag, boost in intent.items():
                boosts[tag] = max(boosts.get(tag, 0.0), boost)
    return MappingProxyType(boosts)


def answer_kinds_wanted(text: str) -> frozenset[str]:
    """The kinds of specific answer the question asks for ("year", "money", ...; see ``passages.answer_kinds``)."""
    out: frozenset[str] = frozenset()
    for pattern, kinds in _ANSWER_KINDS:
        if pattern.search(text):
            out |= kinds
    return out


@message_cache
def looks_like_follow_up(text: str, content_terms: int) -> bool:
    """It leans on the previous turn: "where is that?", "and before that?", "how many people?"."""
    words = text.split()
    return bool(_ANAPHORA.search(text) or (len(words) <= 4 and (_FOLLOW_UP_START.match(text) or content_terms <= 1))
                or (_FOLLOW_UP_START.match(text) and not _SECOND_PERSON.search(text)))


def leans_on_context(text: str) -> bool:
    """It points at something said before: "how much does it cost?", "where is that?"."""
    return bool(_ANAPHORA.search(text))


def relation(text: str) -> int:
    """-1 for a question about what came before something, +1 for after, 0 otherwise."""
    match = _RELATION.search(text)
    if not match:
        return 0
    return -1 if match.group(1) in ("before", "prior to", "earlier than") else 1
