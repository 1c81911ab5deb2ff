"""What a visitor's message is doing, read from its wording: the offline model's regular-expression tables.

Every function takes the normalised message (``analysis.normalise``). None
of it knows a particular persona: topics are the persona's own tags ("role",
"skills", ...), and the persona's name is passed in where it matters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from twin_local.analysis import stem

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


def strip_interjections(text: str) -> str:
    return _INTERJECTION.sub("", text, count=1).strip()


def is_injection(text: str) -> bool:
    """An attempt to change who the twin is or to read its instructions."""
    return bool(_INJECTION.search(text))


def is_task(text: str) -> bool:
    """A request for work the twin is not here for: arithmetic, writing, translating, jokes."""
    return bool(_ARITHMETIC.search(text) or _WRITING.search(text))


def asks_if_ai(text: str, first_name: str) -> bool:
    """"Are you a bot?", "is this really <name>?", "am I talking to a real person?"."""
    if _ARE_YOU_AI.search(text):
        return True
    name = re.escape(first_name)
    return bool(re.search(rf"\b(is|am) (this|that|it|i) (really |actually |talking to |chatting with )*{name}\b",
                          text))


def is_personal(text: str, names: frozenset[str]) -> bool:
    """The message is about the person ("you", "your", or a name of theirs, as stems), not the world at large."""
    return bool(_SECOND_PERSON.search(text) or names & {stem(w) for w in re.findall(r"[a-z0-9]+", text)})


def answer_kinds_wanted(text: str) -> frozenset[str]:
    """The kinds of specific answer the question asks for ("year", "money", ...; see ``passages.answer_kinds``)."""
    out: frozenset[str] = frozenset()
    for pattern, kinds in _ANSWER_KINDS:
        if pattern.search(text):
            out |= kinds
    return out


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
