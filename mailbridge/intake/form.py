"""Web form mail (SPEC Intake 7, policy P1): a WordPress form submission -> its fields. Pure.

The site's form plugin (Contact Form 7, WPForms, Gravity Forms, Elementor, ...)
mails each submission to support@ from the web server. The body lists the
form's labelled fields, in one of two layouts:

- plain text: `Label: value` lines. Labels may carry a required-mark `*`,
  Markdown bold (`**Label:**`), odd spacing or case, or be written
  `--- Label ---`; the value may start on the line after a lone `Label:` and
  runs on over the following lines until the next known label;
- HTML: a table (`<td><strong>Label</strong></td><td>value</td>`, `<th>` /
  `<td>` pairs, or a label row followed by a value row) or paragraphs
  (`<p><strong>Label:</strong> value</p>`), with `<br>` inside values.

`labels` (config `[forms] labels`) maps the label text to a canonical field
name; labels match ignoring case, accents, spacing and punctuation (`fold()`).

Rules:

- The text part is read unless it is missing (the parse stage rendered it from
  the HTML) or the HTML yields more known labels than it does.
- A value ends at the next known label, at a separator line (`--`, `-- `,
  `---`, `<hr>`: the plugin's footer or Elementor's metadata follow it), and,
  in a table, at the end of the row holding it (or of the next row with text,
  when the label has a row of its own). A single-line field (all but
  `description` and `attachment`) that has its value also ends at a line that
  looks like another, unconfigured, label (`Telefonszám: ...`), so a field
  added to the form later cannot spoil the e-mail address above it; the
  multi-line ones keep such lines (`Fontos: ...` inside a description).
- A label seen a second time is text of the description, never a new value.
- Text before the first label is the plugin's preamble and is not a field.
  WPForms' `(Empty)` / `(Üres)` placeholder is an empty value.
- The reporter is the form's name ("Vezetéknév Keresztnév", Hungarian order)
  and E-mail field, never the From (the web server). When the E-mail field is
  absent or not an address, the Reply-To stands in as the address to answer
  (the field still counts as missing, so the ticket is `incomplete`).
- Category and area are the exact P4/P5 names (Hungarian, or an English
  alias, as `#category`/`#area` accept them); a value that is neither is kept
  in `unknown_values` and leaves the category/area None.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import parseaddr
from html.parser import HTMLParser

from mailbridge.intake.parse import html_to_text
from mailbridge.mail import Address, ParsedMail
from mailbridge.policy.addresses import ADDRESS
from mailbridge.policy.classify import fold
from mailbridge.policy.commands import match_area, match_category

REQUIRED = ("last_name", "first_name", "email", "category", "area", "subject")
MULTILINE = frozenset({"description", "attachment"})


@dataclass(frozen=True)
class FormSubmission:
    fields: dict[str, str]  # canonical field -> value, for every label found (values trimmed, multi-line kept)
    missing: tuple[str, ...]  # required canonical fields absent or empty (or an e-mail that is no address), in form order
    reporter: Address  # from the form's fields: e-mail lower-cased, name "Vezetéknév Keresztnév"
    category: str | None  # exact P4 name, None if missing/unknown
    area: str | None  # exact P5 name, None if missing/unknown
    subject: str  # "Probléma rövid leírása" on one line, or ""
    description: str  # "Részletes leírás", or ""
    unknown_values: tuple[str, ...]  # "Kapcsolatfelvétel célja: Panasz": values that are no category/area/address

    @property
    def incomplete(self) -> bool:
        """A required field is missing, or a value could not be understood: an agent must look."""
        return bool(self.missing or self.unknown_values)


def read_form(mail: ParsedMail, labels: dict[str, str]) -> FormSubmission:
    """Reads the submission in `mail`; `labels`: {label text: canonical field}."""
    keys = {key: canonical for label, canonical in labels.items() if (key := _label_key(label))}
    shown: dict[str, str] = {}
    for label, canonical in labels.items():
        shown.setdefault(canonical, label.strip().rstrip("*:").strip())

    found = _read_layouts(mail, keys)
    fields = {canonical: _finish(lines) for canonical, lines in found.items()}
    unknown: list[str] = []

    def one_line(field: str) -> str:
        return " ".join(fields.get(field, "").split())

    email = _address(one_line("email"))
    if one_line("email") and not email:
        unknown.append(f"{shown.get('email', 'email')}: {one_line('email')}")
    category = match_category(one_line("category"))
    if one_line("category") and category is None:
        unknown.append(f"{shown.get('category', 'category')}: {one_line('category')}")
    area = match_area(one_line("area"))
    if one_line("area") and area is None:
        unknown.append(f"{shown.get('area', 'area')}: {one_line('area')}")

    missing = tuple(f for f in REQUIRED if not one_line(f) or (f == "email" and not email))
    name = " ".join(part for part in (one_line("last_name"), one_line("first_name")) if part)
    if email:
        reporter = Address(email, name)
    elif mail.reply_to and mail.reply_to.email != mail.sender.email:
        reporter = Address(mail.reply_to.email, name or mail.reply_to.name)
    else:
        reporter = Address("", name)
    return FormSubmission(
        fields=fields,
        missing=missing,
        reporter=reporter,
        category=category,
        area=area,
        subject=one_line("subject"),
        description=fields.get("description", ""),
        unknown_values=tuple(unknown),
    )


# --------------------------------------------------------------------------- lines


@dataclass(frozen=True)
class _Line:
    text: str
    lead: str = ""  # HTML: the emphasised run the line starts with (<strong>, <b>, <th>, <dt>, <label>)
    rest: str = ""  # HTML: the text after `lead`
    row: int | None = None  # HTML: the innermost table row the line sits in


@dataclass(frozen=True)
class _RowEnd:
    row: int


class _Rule:
    """A separator: `--`, `---`, `<hr>`."""


_RULE = _Rule()
_Item = _Line | _RowEnd | _Rule

_SEPARATOR = re.compile(r"[ \t]*(?:-{2,}|_{3,}|={3,})[ \t]*\Z")
_COLON = re.compile(r"(?P<label>[^:：\n]{1,80}?)[ \t]*[:：](?P<value>.*)\Z", re.DOTALL)
# "Telefonszám: ...", "**Cégnév**: ...": up to five words then a colon and a space (not "10:42", "https://").
_LABEL_LIKE = re.compile(r"[*_ \t]*[^\W\d_][^\W_]*(?:[ \t\-/]+[^\W_]+){0,4}[ \t]*[*_]*[ \t]*[:：](?:[ \t]|\Z)")


def _label_key(text: str) -> str:
    """'**E - mail *:**' -> 'email': folded, only letters and digits."""
    return re.sub(r"[^a-z0-9]", "", fold(text))


def _read_layouts(mail: ParsedMail, keys: dict[str, str]) -> dict[str, list[str]]:
    text_fields = _extract(_text_lines(mail.text), keys) if mail.text else {}
    if not mail.html:
        return text_fields
    html_fields = _extract(_html_lines(mail.html), keys)
    derived = not text_fields or mail.text == html_to_text(mail.html)
    return html_fields if derived or len(html_fields) > len(text_fields) else text_fields


def _text_lines(text: str) -> list[_Item]:
    return [_RULE if _SEPARATOR.match(line) else _Line(line) for line in text.splitlines()]


def _label(item: _Line, keys: dict[str, str]) -> tuple[str, str] | None:
    """(canonical field, value on the same line) when the line starts with a known label."""
    if item.lead and (canonical := keys.get(_label_key(item.lead))):
        return canonical, item.rest.lstrip(" \t:：*").strip()
    line = item.text.strip()
    if len(line) <= 80 and (canonical := keys.get(_label_key(line))):
        return canonical, ""  # the label alone ("Vezetéknév", "--- Vezetéknév ---"): the value follows
    found = _COLON.match(line)
    if found and (canonical := keys.get(_label_key(found.group("label")))):
        value = found.group("value")
        if found.group("label").lstrip()[:1] in ("*", "_"):
            value = value.lstrip("*_")  # "**Vezetéknév:** Kovács"
        return canonical, value.strip()
    return None


def _looks_like_label(item: _Line) -> bool:
    if item.lead and len(item.lead) <= 60:
        if item.lead.rstrip().endswith((":", "：")) or item.rest.lstrip().startswith((":", "：")) or not item.rest:
            return True
    return bool(_LABEL_LIKE.match(item.text))


def _extract(items: list[_Item], keys: dict[str, str]) -> dict[str, list[str]]:
    """{canonical field: its value's lines}, in the order the labels appear."""
    values: dict[str, list[str]] = {}
    current: str | None = None
    row: int | None = None
    waiting = False  # the label's row ended before any value: the next row with text holds it

    for item in items:
        if isinstance(item, _Rule):
            current = None
            continue
        if isinstance(item, _RowEnd):
            if current is not None and row is not None and (item.row == row or waiting):
                if any(line.strip() for line in values[current]):
                    current = None
                else:
                    waiting = True
            continue
        hit = _label(item, keys)
        if hit is not None and hit[0] not in values:
            current, row, waiting = hit[0], item.row, False
            values[current] = [hit[1]] if hit[1] else []
            continue
        if current is None:
            continue
        has_value = any(line.strip() for line in values[current])
        if current not in MULTILINE and has_value and (hit is not None or _looks_like_label(item)):
            current = None
            continue
        values[current].append(item.text)
    return values


_EMPTY_MARKERS = frozenset({"(empty)", "(ures)", "(nincs megadva)"})  # WPForms' placeholder for a field left empty


def _finish(lines: list[str]) -> str:
    """Lines trimmed at the right, runs of blank lines made one, blank ends dropped."""
    out: list[str] = []
    for line in lines:
        line = line.rstrip()
        if line or (out and out[-1]):
            out.append(line)
    value = "\n".join(out).strip()
    return "" if fold(value) in _EMPTY_MARKERS else value


def _address(value: str) -> str:
    """The lower-cased address in an E-mail field ('x@y.hu', 'mailto:x@y.hu', 'Név <x@y.hu>'), or ""."""
    value = re.sub(r"(?i)^mailto:", "", value.strip())
    if "<" in value:
        value = parseaddr(value)[1]
    value = value.strip().strip("<>").lower()
    return value if ADDRESS.match(value) else ""


# --------------------------------------------------------------------------- HTML

_HEADINGS = {"h1", "h2", "h3", "h4", "h5", "h6"}
_MARKS = {"strong", "b", "th", "dt", "label"} | _HEADINGS
_PARAGRAPHS = {"p", "ul", "ol", "dl", "blockquote", "pre"} | _HEADINGS
_BLOCKS = _PARAGRAPHS | {
    "div", "td", "th", "li", "dt", "dd", "caption", "section", "article", "header", "footer", "center",
    "address", "form", "fieldset", "legend", "tbody", "thead", "tfoot", "body", "html",
}
_SKIP = {"script", "style", "head", "title", "noscript", "template"}
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u200e\u200f\ufeff\u00ad"), None)


def _html_lines(html: str) -> list[_Item]:
    parser = _FormHTML()
    try:
        parser.feed(html)
        parser.close()
    except Exception:  # html.parser on hostile markup: keep what was read
        pass
    parser.flush()
    return parser.items


class _FormHTML(HTMLParser):
    """HTML -> lines (a cell, a paragraph, a <br>), each knowing its leading bold run and table row."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.items: list[_Item] = []
        self.runs: list[tuple[str, bool]] = []  # (text, emphasised) of the line being read
        self.marks = 0
        self.skip = 0
        self.pre = 0
        self.tables = 0
        self.rows: list[tuple[int, int]] = []  # open <tr>s: (id, table depth)
        self.next_row = 0

    # -- lines
    def flush(self, always: bool = False) -> None:
        runs, self.runs = self.runs, []
        text = "".join(t for t, _ in runs)
        if not text.strip() and not always:
            return
        if _SEPARATOR.match(text):
            self.items.append(_RULE)  # "<br>---<br>": Elementor's metadata follows
            return
        lead = ""
        rest = text.strip()
        if runs:
            while runs and not runs[0][0].strip():
                runs = runs[1:]
            count = 0
            while count < len(runs) and (runs[count][1] or not runs[count][0].strip()):
                count += 1
            if count:
                lead = "".join(t for t, _ in runs[:count]).strip()
                rest = "".join(t for t, _ in runs[count:]).strip()
        self.items.append(_Line(text.strip(), lead, rest, self.rows[-1][0] if self.rows else None))

    def paragraph_break(self) -> None:
        self.flush()
        last = self.items[-1] if self.items else None
        if isinstance(last, _Line) and last.text:
            self.items.append(_Line("", row=last.row))

    def end_rows(self, depth: int) -> None:
        while self.rows and self.rows[-1][1] >= depth:
            self.items.append(_RowEnd(self.rows.pop()[0]))

    # -- parser callbacks
    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skip += 1
            return
        if tag == "br":
            self.flush(always=True)
        elif tag == "hr":
            self.flush()
            self.items.append(_RULE)
        elif tag == "table":
            self.flush()
            self.tables += 1
        elif tag == "tr":
            self.flush()
            self.end_rows(self.tables)  # an unclosed <tr> before it
            self.rows.append((self.next_row, self.tables))
            self.next_row += 1
        elif tag in _BLOCKS:
            self.flush()
        if tag == "pre":
            self.pre += 1
        if tag in _MARKS:
            self.marks += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
            return
        if tag in _MARKS:
            self.marks = max(0, self.marks - 1)
        if tag == "pre":
            self.pre = max(0, self.pre - 1)
        if tag == "table":
            self.flush()
            self.end_rows(self.tables)
            self.tables = max(0, self.tables - 1)
            self.paragraph_break()
        elif tag == "tr":
            self.flush()
            if self.rows and self.rows[-1][1] == self.tables:
                self.items.append(_RowEnd(self.rows.pop()[0]))
        elif tag in ("td", "th", "p", "li", "dd", "dt"):
            self.flush()
            self.marks = 0  # an unclosed <b> does not make the next cell a label
            if tag == "p":
                self.paragraph_break()
        elif tag in _PARAGRAPHS:
            self.paragraph_break()
        elif tag in _BLOCKS:
            self.flush()

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        data = data.translate(_INVISIBLE)
        if self.pre:
            lines = data.replace("\r\n", "\n").split("\n")
            for index, line in enumerate(lines):
                if index:
                    self.flush(always=True)
                self.runs.append((line.replace("\u00a0", " "), self.marks > 0))
            return
        text = re.sub(r"[\s\u00a0]+", " ", data)
        if not self.runs or not "".join(t for t, _ in self.runs).strip():
            text = text.lstrip()
        if text:
            self.runs.append((text, self.marks > 0))
