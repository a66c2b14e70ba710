"""What an erasure may touch (GDPR Art. 17). Pure: no database, no clock.

The person is found by address equality only. Inside other people's text their
address counts only as a whole address (`anna@example.hu` is not inside
`johanna@example.hu` nor `x.anna@example.hu`) and their name only as whole
words, never inside a longer name someone else bears, and never a name they
share with an agent, a division or another reporter: that text is about them.
"""

from __future__ import annotations

import re
import unicodedata

ERASED = "[erased]"
ERASED_DOMAIN = "erased.invalid"

# Characters that may stand next to an address inside a longer one.
_LOCAL_CHARS = r"\w.!#$%&'*+/=?^`{|}~@-"


def same_name(a: str, b: str) -> bool:
    return _fold(a) == _fold(b)


def names_for_text(names: list[str], others: list[str]) -> tuple[tuple[str, ...], tuple[tuple[str, str], ...]]:
    """(their names to replace in other people's text, ((name, why kept), ...)).

    `others` are the names of everyone else we know (agents, divisions, other reporters)."""
    folded_others = {_fold(o) for o in others}
    usable: list[str] = []
    kept: list[tuple[str, str]] = []
    for name in sorted({" ".join(n.split()) for n in names if n.strip()}, key=lambda n: (-len(n), n)):
        # One word ("Anna") is anyone's first name; found in a note it may be another person.
        if len(name.split()) < 2 or len(name) < 5:
            kept.append((name, "too short to tell apart"))
        elif _fold(name) in folded_others:
            kept.append((name, "shared with an agent, a division or another reporter"))
        elif not any(same_name(name, u) for u in usable):
            usable.append(name)
    return tuple(usable), tuple(kept)


class Mentions:
    """The person's address and names inside text, replaced by their pseudonym."""

    def __init__(self, address: str, names: tuple[str, ...], pseudonym: str, protected: tuple[str, ...] = ()):
        self.address = address
        self.names = names
        self.pseudonym = pseudonym
        self.pseudo_address = f"{pseudonym}@{ERASED_DOMAIN}"
        # Longer names other people bear that contain one of theirs ("Kovács Anna Mária"):
        # matched first at the same place and left as they are.
        shielding = sorted({p for p in protected if any(_contains_words(p, n) and not same_name(p, n) for n in names)},
                           key=len, reverse=True)
        parts = []
        if shielding:
            parts.append("(?P<keep>" + "|".join(_words(p) for p in shielding) + ")")
        parts.append(f"(?P<address>(?<![{_LOCAL_CHARS}]){re.escape(address)}(?![\\w@-]|\\.[\\w-]))")
        if names:
            parts.append("(?P<name>" + "|".join(_words(n) for n in names) + ")")
        self._pattern = re.compile("|".join(parts), re.IGNORECASE)

    def needles(self) -> tuple[str, ...]:
        """Plain strings a mention contains (for a database to narrow down rows first)."""
        return (self.address, *self.names)

    def found(self, text: str | None) -> bool:
        return bool(text) and any(m.lastgroup != "keep" for m in self._pattern.finditer(text))  # type: ignore[arg-type]

    def replace(self, text: str) -> str:
        if not text:
            return text
        return self._pattern.sub(self._substitute, text)

    def _substitute(self, match: re.Match) -> str:
        if match.lastgroup == "keep":
            return match.group(0)
        return self.pseudo_address if match.lastgroup == "address" else self.pseudonym


def addressed_to(recipients: str, address: str) -> bool:
    """Whether a stored recipient list ("a@x.hu, b@y.hu") holds exactly this address."""
    return any(r.strip().lower() == address for r in recipients.split(","))


def replace_recipient(recipients: str, address: str, pseudo_address: str) -> str:
    """The list with this address (exactly) swapped; unchanged, byte for byte, otherwise."""
    if not addressed_to(recipients, address):
        return recipients
    return ", ".join(pseudo_address if r.strip().lower() == address else r.strip()
                     for r in recipients.split(",") if r.strip())


def quotes(text: str, their_texts: list[str]) -> bool:
    """Whether `text` quotes one of their texts (as a reply, a notice or a summary does:
    quote marks and line breaks aside): one of their lines in it. Lines too short to tell
    apart from a greeting ("Köszönöm!") do not count."""
    body = _flat(text)
    return bool(body) and any(line in body for theirs in their_texts for line in _lines(theirs))


def placeholder(ticket_ref: str | None) -> str:
    """A subject after erasure: the ticket stays findable by its ID, nothing else."""
    return f"[{ticket_ref}] {ERASED}" if ticket_ref else ERASED


def _flat(text: str) -> str:
    return " ".join(re.sub(r"(?m)^[\s>]+", "", text or "").split()).casefold()


def _lines(text: str) -> set[str]:
    return {line for line in map(_flat, (text or "").splitlines()) if len(line) >= 30}


def _fold(name: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", name).casefold().split())


def _words(name: str) -> str:
    return r"(?<!\w)" + r"\s+".join(re.escape(w) for w in name.split()) + r"(?!\w)"


def _contains_words(longer: str, name: str) -> bool:
    return re.search(_words(name), longer, re.IGNORECASE) is not None
