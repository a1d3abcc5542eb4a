"""What a route template, a campaign slug and a referrer domain *are*.

One definition, used twice: the SDK rewrites what it sees into these shapes (or drops
it), and the collector refuses any value that is not already in them. So a value the SDK
would have rewritten or dropped can never be stored, whoever sent it.

The definitions are positive: a route segment is made of words, short numbers and a
file extension; a campaign slug is words, years, dates and quarter names; a referrer is
the registrable domain of a public host. Anything else (a person's name with a dot, a
random token, a long or grouped number, an address) does not fit, whatever its spelling.
Text is NFKC-normalised first, and invisible or bidirectional-control characters refuse
the whole value, so look-alike spellings (a fullwidth at sign, superscript digits, a
zero-width space) cannot slip past the character classes.
"""

from __future__ import annotations

import ipaddress
import itertools
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Sequence
from functools import cache
from typing import Final

from headcount._caches import CleanOnlyCache

__all__ = [
    "MAX_REGISTRABLE_LABEL",
    "MAX_ROUTE_LENGTH",
    "bad_route_segments",
    "campaign_slug",
    "normalize_text",
    "referrer_domain",
    "segment_problem",
    "slug_problem",
]

# --- Unicode ---------------------------------------------------------------------------

# Control, format (zero-width, bidi overrides, tags), private-use, surrogate, unassigned
# and line/paragraph separators: none of them is ever part of a name a person reads.
_INVISIBLE_CATEGORIES: Final = frozenset({"Cc", "Cf", "Co", "Cs", "Cn", "Zl", "Zp"})
# Letters and marks that render as nothing (Hangul fillers, blank braille, the combining
# grapheme joiner, Mongolian and Khmer vowel separators) and variation selectors.
_INVISIBLE_CHARS: Final = frozenset(
    "\u034f\u115f\u1160\u17b4\u17b5\u180e\u2800\u3164\uffa0"
    + "".join(chr(c) for c in range(0xFE00, 0xFE10))
)
_ASCII_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def normalize_text(value: str) -> str | None:
    """``value`` in NFKC form, or None when it holds an invisible or bidi character."""
    if value.isascii():
        return None if _ASCII_CONTROL.search(value) else value
    text = unicodedata.normalize("NFKC", value)
    for char in text:
        if char in _INVISIBLE_CHARS or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            return None
        if 0xE0100 <= ord(char) <= 0xE01EF:  # supplementary variation selectors
            return None
    return text


# --- words and runs ----------------------------------------------------------------------

# Letter pairs that make up 98 % of the pairs in English prose (measured on the Python
# standard library's own words). A random letter string uses rarer pairs most of the
# time; real words, including German and French ones, rarely do. See _random_letters.
_COMMON_PAIRS: Final = frozenset(
    re.findall(
        "..",
        "abacadafagaiakalamanaparasatauavawaxaybabcbebibjblbobrbsbubycacccechcickclcocrcs"
        "ctcucydadddedgdidldodpdrdsdudyeaebecedeeefegeielemeneoepeqereseteuevewexeyfafe"
        "fffiflfofrfsftfugageghgiglgngogrgsgtguhahehihmhohrhshtiaibicidieifigiliminioip"
        "irisitivixizjejojskakekikskwkxlalcldlelflglilllolplsltlulymambmemimlmmmompmsmu"
        "nanbncndnenfngninknlnnnonpnrnsntnunvnyoaobocodofogoiokolomonoooporosotouovowpa"
        "pcpdpephpiplpoppprpsptpupyqurarcrdrergrirkrlrmrnrorprrrsrtrurvrysascsesgshsisk"
        "slsmsospssstsusytatctdtetfthtitltmtotptrtstttutwtxtyuaubucudueufuguiulumunupur"
        "usutvavevivpwawewhwiwowrwsxaxcxexixpxtycyeyiypysytze",
    )
)
_RUN: Final = re.compile(r"[^\W_]+")
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def _random_letters(run: str) -> bool:
    """A letter run of 8+ Latin letters that reads like no word (qxkzpmrtvbnjlcydfgwh).

    Counts letter pairs outside _COMMON_PAIRS: 3 or more in 8 letters, one more per six
    letters beyond. On 15,000 random strings this flags 81 % of 8-letter, 92 % of
    10-letter and 98 % of 16-letter ones; among 2,900 common words and names it flags
    keyboard walks and mostly Polish words (which then count under a placeholder).
    """
    if len(run) < 8:
        return False
    if not run.isascii():
        # Accents folded away first: an accent must not hide a token
        # (qxkzpmrtvbnjlcydfgwhé). Words of other scripts are not judged by these pairs.
        run = _fold_to_ascii(run)
        if len(run) < 8 or not run.isascii():
            return False
    return _rare_pairs(run) >= _rare_enough(len(run))


def _rare_pairs(run: str) -> int:
    """Letter pairs of ``run`` (digits left out) outside _COMMON_PAIRS."""
    word = "".join(c for c in run.lower() if not c.isdigit())
    return sum(word[i : i + 2] not in _COMMON_PAIRS for i in range(len(word) - 1))


def _rare_enough(letters: int) -> int:
    """How many rare pairs make ``letters`` letters random: 3 in 8, one more per six."""
    return 3 + (letters - 8) // 6


def _switches(run: str) -> int:
    """How often a run changes between letters and digits (a1b2 → 3)."""
    return sum(a.isdigit() != b.isdigit() for a, b in itertools.pairwise(run))


def _token_run(run: str) -> bool:
    """A run of letters and digits mixed the way ids, hashes and tokens mix them."""
    digits = sum(c.isdigit() for c in run)
    if digits == 0:
        return _random_letters(run)
    if digits == len(run):
        return False  # numbers have rules of their own
    if len(run) >= 8 and all(c in _HEX for c in run):
        return True  # hex: hashes, ids, nip.io-style encoded addresses
    if len(run) >= 6 and _switches(run) >= 3:
        return True
    if len(run) >= 16:
        return True
    letters = "".join(c for c in run if not c.isdigit())
    return _random_letters(letters)


def _chains(member: Sequence[bool]) -> list[list[int]]:
    """Maximal groups of consecutive runs that are all members, joined only by punctuation.

    Any other run between two members breaks the chain; punctuation (dots, dashes,
    slashes, colons) and placeholders do not, since that is how numbers and hex strings
    are split to hide them (``/203/{a}/0/{b}/113/{c}/77``, ``415{a}555{b}0123``).
    """
    chains: list[list[int]] = []
    current: list[int] = []
    for index, is_member in enumerate(member):
        if is_member:
            current.append(index)
        elif current:
            chains.append(current)
            current = []
    if current:
        chains.append(current)
    return chains


def _number_chain_problem(text: str) -> tuple[str, list[tuple[int, int]]] | None:
    """Grouped or split numbers and hex strings anywhere in ``text``.

    Returns a reason and the character spans involved, so a caller can tell which route
    segments to replace.
    """
    runs = list(_RUN.finditer(text))
    if not runs:
        return None
    spans = _grouped_number(runs, 6)
    if spans is not None:
        return "contains a grouped number (phone number, address or id)", spans
    return _hex_chain_problem(text, runs)


def _grouped_number(runs: Sequence[re.Match[str]], digits: int) -> list[tuple[int, int]] | None:
    """The spans of the first number of ``digits`` digits or more, or of four groups or
    more, written in groups; a single letter does not break one (x-415-y-555-z-0123)."""
    numbered = [r for r in runs if not (len(r.group()) == 1 and r.group().isalpha())]
    numeric = [r.group().isdigit() for r in numbered]
    for chain in _chains(numeric):
        if len(chain) >= 4 or sum(len(numbered[i].group()) for i in chain) >= digits:
            return [numbered[i].span() for i in chain]
    return None


def _hex_chain_problem(
    text: str, runs: Sequence[re.Match[str]]
) -> tuple[str, list[tuple[int, int]]] | None:
    hexish = [all(c in _HEX for c in r.group()) for r in runs]
    for chain in _chains(hexish):
        joined = "".join(runs[i].group() for i in chain)
        if joined.isdigit():
            continue  # numbers have rules of their own (dates are fine in campaigns)
        if len(joined) >= 16 or (len(joined) >= 12 and any(c.isdigit() for c in joined)):
            return "contains a hex string", [runs[i].span() for i in chain]
        if len(chain) >= 6 and all(len(runs[i].group()) == 2 for i in chain):
            return "contains a hardware (MAC) address", [runs[i].span() for i in chain]
    return None


_VOWELS: Final = frozenset("aeiouAEIOU")


def _code_group(run: str) -> bool:
    """Letters and digits mixed the way a code's groups mix them: a few letters, or
    letters without a vowel, among digits (kj39, 1weo5, s919d; not iphone15)."""
    letters = "".join(c for c in run if not c.isdigit())
    return (
        bool(letters)
        and len(letters) < len(run)
        and (len(letters) <= 3 or not any(c in _VOWELS for c in letters))
    )


def _grouped_token_problem(
    text: str, runs: Sequence[re.Match[str]]
) -> tuple[str, list[tuple[int, int]]] | None:
    """A code or token written in short groups (an invite code ``kj39-xp82-mn47-qw15``,
    a licence key, a secret in groups of four or five letters): each group alone is too
    short to judge.

    Among consecutive groups of three or more characters, joined only by punctuation:
    three code groups (``_code_group``) that use five or more different letters, over
    twelve characters or more; or, over groups of four or more, as many rare letter
    pairs (within the groups) as ``_random_letters`` asks of a run of all their letters.
    Technical series repeat their letters or are made of short groups (``h1-h2-h3``,
    ``mp3-mp4-m4a``, ``x86-x64-arm64``, ``e2e4-e7e5-g1f3``, ``pdf-png-jpg-svg``), and
    words use common pairs (``html-json-yaml-toml``), so they pass."""
    grouped = [r.group().isascii() and len(r.group()) >= 3 for r in runs]
    for chain in _chains(grouped):
        groups = [runs[i].group() for i in chain]
        codes = [g for g in groups if _code_group(g)]
        letters = {c.lower() for g in codes for c in g if not c.isdigit()}
        if len(codes) >= 3 and len(letters) >= 5 and sum(map(len, groups)) >= 12:
            return "contains a code written in groups", [runs[i].span() for i in chain]
    long_enough = [r.group().isascii() and len(r.group()) >= 4 for r in runs]
    for chain in _chains(long_enough):
        if len(chain) < 3:
            continue
        groups = [runs[i].group() for i in chain]
        total = sum(sum(not c.isdigit() for c in g) for g in groups)
        if total >= 8 and sum(map(_rare_pairs, groups)) >= _rare_enough(total):
            return "contains random letters written in groups", [runs[i].span() for i in chain]
    return None


# --- route templates -------------------------------------------------------------------

_PLACEHOLDER: Final = re.compile(r"\{[A-Za-z_][A-Za-z0-9_]*\}")
# RFC 3986 path characters (unreserved and sub-delimiters, ':' and '@'), plus any letter
# or mark; percent signs, quotes, brackets, backslashes and whitespace are not.
_SEGMENT_PUNCTUATION: Final = frozenset("-._~!$&'()*+,;=:@")
_VERSION_PART: Final = re.compile(r"v?\d{1,3}")
_LONG_DIGITS: Final = re.compile(r"\d{4,}")
# File types a literal route can end in. A dot anywhere else is how "name.surname"
# identifiers are spelled, so it is not part of a route segment.
_EXTENSIONS: Final = frozenset(
    """
    html htm xhtml php asp aspx jsp cgi txt text md rst xml json jsonld js mjs cjs map css
    scss ico png jpg jpeg gif svg svgz webp avif bmp tif tiff heic pdf zip gz tgz tar bz2
    xz zst 7z rar csv tsv rss atom xsl xslt webmanifest manifest appcache woff woff2 ttf
    otf eot mp3 mp4 m4a m4v webm ogg oga ogv opus wav flac aac mov avi mkv doc docx xls
    xlsx ppt pptx odt ods odp rtf epub mobi ics vcf wasm yaml yml toml ini cfg conf log bin
    exe dmg pkg deb rpm apk msi iso img sig asc pem crt cer p7s gpg sha256 sha512 md5 whl
    egg jar war py rb go rs java kt swift c h cpp hpp cs ts tsx jsx vue sql gql graphql
    proto wsdl plist mf lock sum mod well-known
    """.split()  # noqa: SIM905 - a word list reads better as words
)


# Words that build tools and libraries put between a file's name and its extension.
_FILE_NAME_PARTS: Final = frozenset(
    """
    min bundle chunk esm umd cjs mjs prod production dev development slim module modules
    config d test spec lite full core common vendor vendors runtime main app polyfills
    worker sw legacy modern es5 es6 es2015 es2017 es2020 browser node global standalone
    debug release latest stable beta alpha rc pack packed compressed gz br
    """.split()  # noqa: SIM905 - a word list reads better as words
)


def _literal_problem(literal: str, segment: str) -> str | None:
    for char in literal:
        if char in _SEGMENT_PUNCTUATION or char.isalnum() or unicodedata.category(char)[0] == "M":
            continue
        if char == "\x00":  # stands for a placeholder, see segment_problem
            continue
        return "contains a character that is not part of a route (%, quotes, brackets, spaces)"
    if "@" in literal.lstrip("@"):
        return "contains an e-mail address"
    if literal.count(":") > 1:
        return "contains an IPv6 address"
    for run in _RUN.finditer(literal):
        text = run.group()
        # A long number is one inside a word too (user12345, order987654321): a year or
        # an id, and the year is refused on its own (2024) as well.
        if (text.isdigit() and len(text) >= 4) or _LONG_DIGITS.search(text):
            return "contains a long number"
        if _token_run(text):
            return "contains a token, hash or random id"
    # Within the segment only: across segments short paths would be judged as one
    # (/tv/4k-hdr-tv, /sql/ddl-dml-dcl).
    if _grouped_token_problem(literal, list(_RUN.finditer(literal))) is not None:
        return "contains a code or token written in groups"
    if "." in literal.strip("."):
        parts = literal.split(".")
        if parts[0] == "":
            parts = parts[1:]  # .well-known, .htaccess: a leading dot names a hidden file
        versions = len(parts) <= 3 and all(_VERSION_PART.fullmatch(p) for p in parts)
        extension = parts[-1].lower() in _EXTENSIONS and all(parts)
        if extension and len(parts) > 2:
            # name.surname.pdf is a person with a file extension: between the name and
            # the extension only build words (jquery.min.js), versions (lib-3.6.0.js)
            # and more extensions (archive.tar.gz, app.js.map) are file-name parts.
            extension = all(
                part.lower() in _FILE_NAME_PARTS
                or part.lower() in _EXTENSIONS
                or _VERSION_PART.fullmatch(part)
                for part in parts[1:-1]
            )
        if not (versions or extension):
            return "contains a dotted name (name.surname, host name or address)"
    elif literal.endswith(".") and literal.strip("."):
        return "ends with a dot (a host name or address)"
    host = segment.strip("[]").rstrip(".")
    if ":" in host or host.replace(".", "").isdigit():
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            pass
        else:
            return "contains an IP address"
    return None


def _segment_problem(segment: str) -> str | None:
    """Why one route segment (already NFKC) is not part of a template, or None.

    A segment is a ``{placeholder}``, ``*``, or literal text: words in any script, short
    numbers, a version (``v2.1``), an optional file extension (``robots.txt``), joined
    by RFC 3986 path punctuation, with ``@`` only in front (``/@{user}``).
    """
    if segment in ("", "*"):
        return None
    if "{" in segment:
        for placeholder in _PLACEHOLDER.finditer(segment):
            # A name is held to what a literal segment may be: {sk_live_4eC39…} or
            # {alice_1985} is an identifier in braces, not a parameter's name.
            if _segment_problem(placeholder.group()[1:-1]) is not None:
                return "holds an identifier in braces where a placeholder's name goes"
        if _PLACEHOLDER.fullmatch(segment):
            return None
    if segment in (".", ".."):
        return "is a '.' or '..' segment"
    literal = _PLACEHOLDER.sub("\x00", segment)
    if "{" in literal or "}" in literal:
        return "contains a malformed {placeholder}"
    return _literal_problem(literal, segment)


# Only template text is remembered (see _caches): a segment that is an identifier is
# checked again each time rather than kept in memory.
_segment_problems: Final = CleanOnlyCache[str, "str | None"](
    _segment_problem, lambda _, problem: problem is None, maxsize=8192
)


def segment_problem(segment: str) -> str | None:
    """Why one route segment (already NFKC) is not part of a template, or None: see
    ``_segment_problem``; remembered for segments that are template text."""
    if len(segment) > MAX_ROUTE_LENGTH:
        # Never template text, and never kept: a visitor's path could otherwise fill the
        # cache with long runs of words (8,192 of them).
        return f"is longer than a whole route may be ({MAX_ROUTE_LENGTH} characters)"
    return _segment_problems(segment)


def _masked(route: str) -> str:
    # Same length, so offsets still point into the route; braces break every chain.
    return _PLACEHOLDER.sub(lambda m: "{" * len(m.group()), route)


def bad_route_segments(segments: Sequence[str]) -> dict[int, str]:
    """Indices of the segments of a route that are not template text, with the reason.

    Besides each segment on its own, numbers and hex strings split over several segments
    (``/415/555/0123``) mark every segment they touch.
    """
    bad = {}
    for index, segment in enumerate(segments):
        problem = segment_problem(segment)
        if problem is not None:
            bad[index] = problem
    starts = [0]
    for segment in segments[:-1]:
        starts.append(starts[-1] + len(segment) + 1)
    while True:
        # Segments already marked are blanked out, keeping offsets: another chain may
        # hide further on.
        masked = ["{" * len(s) if i in bad else s for i, s in enumerate(segments)]
        found = _number_chain_problem(_masked("/".join(masked)))
        if found is None:
            break
        problem, spans = found
        before = len(bad)
        for start, _ in spans:
            # A search, not a scan: a visitor's path of thousands of short segments would
            # make a scan per span quadratic (1.2 s of CPU for 16 KB).
            bad.setdefault(bisect_right(starts, start) - 1, problem)
        if len(bad) == before:
            break  # cannot happen with offsets kept, but never loop forever
    return bad


# --- campaign slugs ----------------------------------------------------------------------

MAX_SLUG_LENGTH: Final = 64
# The longest route the wire takes (wire.MAX_ROUTE_LENGTH): a longer segment is never
# part of a template.
MAX_ROUTE_LENGTH: Final = 200
# Separators people type between words ("Tom & Jerry", "fb/ig"): one '-' for a run.
_DASHES: Final = re.compile(r"[\s\-\u2010-\u2015\u2212\u2e3a\u2e3b\ufe58\ufe63!?,()\[\]\"&/]+")
# Marks that decorate a word ("Mother's Day", "20% off", "#blackfriday"): dropped.
_DECORATION: Final = re.compile(r"['\u2018\u2019\u02bc`%#]")
_SLUG_CHARS: Final = re.compile(r"[a-z0-9._-]+")
# Mailchimp prefixes its default campaign value with the campaign's 10-hex web id.
_MAILCHIMP_ID: Final = re.compile(r"[0-9a-f]{10}[-_](?=.)")
_YEAR: Final = re.compile(r"(?:19|20)\d\d")
_DATE: Final = re.compile(r"(?:19|20)\d\d(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])?")


def _fold_to_ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _number_group_ok(group: list[str]) -> bool:
    """Digits in a campaign name: years, dates, quarters and small numbers, no more."""
    years = [run for run in group if _YEAR.fullmatch(run) or _DATE.fullmatch(run)]
    rest = [run for run in group if run not in years]
    if len(years) == 1:
        # A date or date-time to the minute: 2025_11_28_10_15, 28-11-2025 (Mailchimp's
        # defaults); a second more is a timestamp, not a campaign's name.
        return len(rest) <= 4 and all(len(run) <= 2 for run in rest)
    if years:
        return False
    return len(group) <= 2 and all(len(run) <= 3 for run in group) and len("".join(group)) <= 4


# Suffixes under which a campaign value may be a domain name: the long-standing generic
# ones, and any country code (two letters). The newer generic suffixes read like names
# (john.kim, james.bond, harrison.ford), so a value under one is a person, not a source.
_CAMPAIGN_GENERIC_SUFFIXES: Final = frozenset(
    ("com", "org", "net", "edu", "gov", "mil", "int", "info", "biz", "app", "dev")
)


def _campaign_domain(value: str) -> bool:
    """Whether a dotted campaign value is a site's own domain (chatgpt.com, t.co)."""
    if referrer_domain(value) != value:
        return False
    top = value.rpartition(".")[2]
    return len(top) == 2 or top in _CAMPAIGN_GENERIC_SUFFIXES


def _slug_identifier_problem(value: str) -> str | None:
    parts = re.split(r"[._-]", value)
    if "." in value and not _campaign_domain(value):
        # Dots only inside version numbers (2.0) or in a public domain name (ChatGPT
        # tags its links utm_source=chatgpt.com); name.surname is a person.
        for match in re.finditer(r"\.", value):
            before, after = value[: match.start()], value[match.end() :]
            if not (before[-1:].isdigit() and after[:1].isdigit()):
                return "contains a dot outside a version number (name.surname form)"
    group: list[str] = []
    for part in [*parts, ""]:
        if part.isdigit():
            group.append(part)
            continue
        if group and len(part) == 1 and part.isalpha():
            continue  # a single letter does not break a number (x-415-y-555-z-0123)
        if group and not _number_group_ok(group):
            return "contains a long or grouped number (phone number, address or id)"
        group = []
        if not part:
            continue
        digit_runs = re.findall(r"\d+", part)
        if digit_runs and not all(
            len(run) <= 3 or _YEAR.fullmatch(run) or _DATE.fullmatch(run) for run in digit_runs
        ):
            return "contains a long number"
        if _switches(part) > 2 or (
            len(part) >= 8 and all(c in _HEX for c in part) and any(c.isdigit() for c in part)
        ):
            return "contains a token, hash or id"
        if _random_letters(re.sub(r"\d", "", part)):
            return "contains a random-looking token"
    # Numbers were judged above, by campaign rules (dates); hex and tokens split up are
    # judged here.
    runs = list(_RUN.finditer(value))
    if _hex_chain_problem(value, runs) is not None:
        return "contains a hex string"
    if _grouped_token_problem(value, runs) is not None:
        return "contains a code or token written in groups"
    return None


def campaign_slug(value: str) -> str | None:
    """A utm value as a campaign slug, or None when it is not a campaign name (see
    ``_campaign_slug``); remembered only for values that are campaign names."""
    return _campaign_slugs(value)


def _campaign_slug(value: str) -> str | None:
    """A utm value as a campaign slug, or None when it is not a campaign name.

    Cleans what people and tools type (``Winter Sale`` → ``winter-sale``, ``Q4_2025`` →
    ``q4_2025``, Mailchimp's ``3b5c8a9d2e-EMAIL_CAMPAIGN_2025_11_28`` →
    ``email_campaign_2025_11_28``) and refuses what names a recipient: e-mail addresses,
    ``name+tag`` and ``name.surname`` forms, UUIDs, hex runs, long or grouped numbers,
    phone numbers, IP addresses and random tokens. ``value`` is already percent-decoded.
    """
    text = normalize_text(value)
    if text is None or len(text) > 4 * MAX_SLUG_LENGTH:
        return None
    text = _fold_to_ascii(text).casefold().strip()
    text = _DECORATION.sub("", text)
    text = _DASHES.sub("-", text).strip("-_.")
    while _MAILCHIMP_ID.match(text):
        text = _MAILCHIMP_ID.sub("", text, count=1).strip("-_.")
    if not text or len(text) > MAX_SLUG_LENGTH or not _SLUG_CHARS.fullmatch(text):
        return None
    if _slug_identifier_problem(text) is not None:
        return None
    return text


# Like route segments (_segment_problems), a refused value (an e-mail address, a token)
# is checked again each time rather than kept in memory next to its None.
_campaign_slugs: Final = CleanOnlyCache[str, "str | None"](
    _campaign_slug, lambda _, slug: slug is not None, maxsize=4096
)


def slug_problem(value: str) -> str | None:
    """Why ``value`` is not a campaign slug exactly as the SDK would send it, or None."""
    cleaned = campaign_slug(value)
    if cleaned is None:
        return "is not a campaign name (identifier-like or not a slug)"
    if cleaned != value:
        return "is not in canonical slug form (lowercase, '-' for spaces, no id prefix)"
    return None


# --- referrer domains --------------------------------------------------------------------

# The label in front of the public suffix. Real site names fit easily; data smuggled in a
# host name (a 63-character label of base32) does not.
MAX_REGISTRABLE_LABEL: Final = 40
_LDH: Final = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?")
# Names that only resolve inside one network (RFC 6762, RFC 8375, ICANN's .internal).
_PRIVATE_SUFFIXES: Final = frozenset(
    {"local", "localhost", "internal", "lan", "home", "localdomain", "corp", "intranet", "arpa"}
)


@cache
def _public_suffix_list():  # type: ignore[no-untyped-def]
    # The list ships inside the package; nothing is fetched, now or later. Its rules are
    # kept in Unicode only (punycode variants would cost 5x the load time); punycode
    # hosts are decoded for the lookup instead, see _registrable.
    from publicsuffixlist import PublicSuffixList

    return PublicSuffixList(accept_unknown=False, accept_encoded_idn=False)


def _registrable(ascii_host: str) -> str | None:
    lookup = ascii_host
    if "xn--" in ascii_host:
        try:
            lookup = ascii_host.encode("ascii").decode("idna")
        except UnicodeError:
            return None
    found = _public_suffix_list().privatesuffix(lookup)
    if not found:
        return None
    try:
        return str(found).encode("idna").decode("ascii")
    except UnicodeError:
        return None


def _embeds_address(labels: Sequence[str]) -> bool:
    """nip.io / sslip.io style hosts: an IPv4 or IPv6 address spelled into the labels."""
    host = ".".join(labels)
    runs = list(_RUN.finditer(host))
    numeric = [r.group().isdigit() and len(r.group()) <= 3 for r in runs]
    if any(len(chain) >= 4 for chain in _chains(numeric)):
        return True
    for label in labels:
        if len(label) == 8 and all(c in _HEX for c in label) and any(c.isdigit() for c in label):
            return True  # an IPv4 address in hex, as nip.io also accepts
        groups = label.split("-")
        hex_groups = len(groups) >= 3 and all(all(c in _HEX for c in g) for g in groups)
        if hex_groups and ("--" in label or len(groups) >= 5):
            return True
    return False


def _label_problem(label: str) -> bool:
    if label.startswith("xn--"):
        try:
            label = label.encode("ascii").decode("idna")
        except UnicodeError:
            return True
    if len(label) > MAX_REGISTRABLE_LABEL:
        return True
    # A phone number, or a code or token written in groups (415-555-0123.com), as in
    # routes; a site's name may hold a few grouped digits (24-7-365.com) where a route
    # holds none.
    runs = list(_RUN.finditer(label))
    return (
        _grouped_number(runs, 7) is not None
        or _hex_chain_problem(label, runs) is not None
        or _grouped_token_problem(label, runs) is not None
        or any(_token_run(run.group()) for run in runs)
    )


def referrer_domain(host: str) -> str | None:
    """The registrable domain of a public host name (``news.example.co.uk`` →
    ``example.co.uk``), or None for anything that is not one (``_registrable_domain``);
    remembered only for a name that is its own registrable domain."""
    return _registrable_domains(host)


def _registrable_domain(host: str) -> str | None:
    """The registrable domain of a public host name (``news.example.co.uk`` →
    ``example.co.uk``), or None for anything that is not one.

    None for IP literals, single labels, ``localhost``, ``.local`` / ``.internal`` /
    ``.lan`` and other unlisted suffixes, hosts that embed an IP address, labels over 63
    characters, and a registrable label that is over-long or looks like a token.
    """
    text = normalize_text(host)
    if text is None:
        return None
    text = text.rstrip(".").lower()
    if not text or len(text) > 253:
        return None
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        pass
    else:
        return None
    if not text.isascii():
        try:
            text = text.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    labels = text.split(".")
    if len(labels) < 2 or labels[-1] in _PRIVATE_SUFFIXES:
        return None
    if any(len(label) > 63 or not _LDH.fullmatch(label) for label in labels):
        return None
    if _embeds_address(labels):
        return None
    registrable = _registrable(text)
    if not registrable or _label_problem(registrable.split(".", 1)[0]):
        return None
    return str(registrable)


# Campaign values with a dot are asked too (is "chatgpt.com" a domain?): a refused one
# (john.smith) must not stay in memory, so only a name that is its own domain is kept.
_registrable_domains: Final = CleanOnlyCache[str, "str | None"](
    _registrable_domain, lambda host, domain: domain == host, maxsize=4096
)
