"""Agent reply commands (#note, #status, ...): tables, no servers."""

from __future__ import annotations

import pytest

from mailbridge.vocabulary import AREAS, CATEGORIES
from mailbridge.policy.commands import VALID_COMMANDS, AgentReply, Command, read_commands

AGENTS = {
    "kiss.anna@crossec.com": "Kiss Anna",
    "nagy.peter@crossec.com": "Nagy Péter",
    "szabo.eva@crossec.com": "Szabó Éva",
}
DIVISIONS = {
    "penzugy@crossec.com": "Pénzügy",
    "fejlesztes@crossec.com": "Fejlesztés",
}


def read(text: str) -> AgentReply:
    return read_commands(text, AGENTS, DIVISIONS)


@pytest.mark.parametrize(
    "line, name, value",
    [
        ("#note", "note", ""),
        ("#NOTE", "note", ""),
        ("#status acknowledged", "status", "acknowledged"),
        ("#status in_progress", "status", "in_progress"),
        ("#status in progress", "status", "in_progress"),
        ("#Status In-Progress", "status", "in_progress"),
        ("#status: closed", "status", "closed"),
        ("#status escalated", "status", "escalated"),
        ("#status RESOLVED", "status", "resolved"),
        ("   #status closed   ", "status", "closed"),
        ("\u00a0#status closed", "status", "closed"),  # NBSP from an HTML mail turned into text
        # P4 categories: Hungarian with or without accents, English aliases
        ("#category Számlázással kapcsolatos kérdés", "category", "Számlázással kapcsolatos kérdés"),
        ("#category szamlazassal kapcsolatos kerdes", "category", "Számlázással kapcsolatos kérdés"),
        ("#category SZÁMLÁZÁSSAL   KAPCSOLATOS KÉRDÉS", "category", "Számlázással kapcsolatos kérdés"),
        ("#category Általános kérdés", "category", "Általános kérdés"),
        ("#category altalanos kerdes", "category", "Általános kérdés"),
        ("#category hibabejelentes", "category", "Hibabejelentés"),
        ("#category \"Érdeklődés\"", "category", "Érdeklődés"),
        ("#category egyeb", "category", "Egyéb"),
        ("#category general question", "category", "Általános kérdés"),
        ("#category bug report", "category", "Hibabejelentés"),
        ("#category Bug", "category", "Hibabejelentés"),
        ("#category fault", "category", "Hibabejelentés"),
        ("#category billing question", "category", "Számlázással kapcsolatos kérdés"),
        ("#category billing", "category", "Számlázással kapcsolatos kérdés"),
        ("#category invoice", "category", "Számlázással kapcsolatos kérdés"),
        ("#category inquiry", "category", "Érdeklődés"),
        ("#category Enquiry", "category", "Érdeklődés"),
        ("#category other", "category", "Egyéb"),
        # P5 areas
        ("#area Crossec Norma", "area", "Crossec Norma"),
        ("#area norma", "area", "Crossec Norma"),
        ("#area GDPR", "area", "GDPR Segédanyagok"),
        ("#area gdpr segedanyagok", "area", "GDPR Segédanyagok"),
        ("#area GDPR materials", "area", "GDPR Segédanyagok"),
        ("#area Üzleti tanácsadás", "area", "Üzleti tanácsadás"),
        ("#area uzleti tanacsadas", "area", "Üzleti tanácsadás"),
        ("#area business consulting", "area", "Üzleti tanácsadás"),
        ("#area consulting", "area", "Üzleti tanácsadás"),
        ("#area other", "area", "Egyéb"),
        ("#area Egyéb", "area", "Egyéb"),
        # agents: e-mail, name in any order and without accents, local part
        ("#assign kiss.anna@crossec.com", "assign", "kiss.anna@crossec.com"),
        ("#assign Kiss.Anna@CROSSEC.com", "assign", "kiss.anna@crossec.com"),
        ("#assign Kiss Anna <kiss.anna@crossec.com>", "assign", "kiss.anna@crossec.com"),
        ("#assign Nagy Péter", "assign", "nagy.peter@crossec.com"),
        ("#assign nagy peter", "assign", "nagy.peter@crossec.com"),
        ("#assign Éva Szabó", "assign", "szabo.eva@crossec.com"),
        ("#assign szabo.eva", "assign", "szabo.eva@crossec.com"),
        # divisions
        ("#escalate Pénzügy", "escalate", "penzugy@crossec.com"),
        ("#escalate penzugy", "escalate", "penzugy@crossec.com"),
        ("#escalate FEJLESZTÉS", "escalate", "fejlesztes@crossec.com"),
        ("#escalate fejlesztes@crossec.com", "escalate", "fejlesztes@crossec.com"),
    ],
)
def test_one_command(line, name, value):
    reply = read(f"{line}\n\nKöszönöm, megoldottuk.\n")
    assert reply.problems == ()
    assert reply.commands == (Command(name, value, 1),)
    assert reply.text == "Köszönöm, megoldottuk.\n"


@pytest.mark.parametrize(
    "text, reason",
    [
        ("#stauts closed", "unknown command #stauts (did you mean #status?)"),
        ("#Státus closed", "unknown command #Státus (did you mean #status?)"),
        ("#categroy egyéb", "unknown command #categroy (did you mean #category?)"),
        ("#esclate penzugy", "did you mean #escalate?"),
        ("#resolved", "unknown command #resolved (did you mean #resolve?)"),
        ("#fontos", "unknown command #fontos (commands: #note, #status"),
        ("#statusclosed", "did you mean #status?"),
        ("#status", "#status needs a value (choices: acknowledged, in_progress, escalated, resolved, closed)"),
        ("#status new", "status 'new' cannot be set"),
        ("#status lezárva", "unknown status 'lezárva' (choices: acknowledged"),
        ("#status in progres", "unknown status 'in progres' (did you mean 'in_progress'?"),
        ("#category Számla", "unknown category 'Számla' (choices: Általános kérdés, Hibabejelentés, "
                             "Számlázással kapcsolatos kérdés, Érdeklődés, Egyéb)"),
        ("#category hibabejelentése", "unknown category 'hibabejelentése' (did you mean 'Hibabejelentés'?"),
        ("#category", "#category needs a value"),
        ("#area Norma 2", "unknown area 'Norma 2'"),
        ("#area", "#area needs a value"),
        ("#assign Kovács Béla", "unknown agent 'Kovács Béla'"),
        ("#assign Kis Ana", "did you mean 'kiss.anna@crossec.com'?"),
        ("#assign kiss.anna@crossec.hu", "unknown agent 'kiss.anna@crossec.hu' (did you mean 'kiss.anna@crossec.com'?"),
        ("#assign", "#assign needs an agent (choices: Kiss Anna <kiss.anna@crossec.com>"),
        ("#escalate Jogi osztály", "unknown division 'Jogi osztály'"),
        ("#escalate", "#escalate needs a division"),
        ("#note please call back", "#note takes no value"),
        ("#resolve fixed\n\nOutcome.", "#resolve takes no value"),
        ("#resolve\n", "#resolve needs the outcome for the customer below the commands"),
        ("#resolve\n\n   \n", "#resolve needs the outcome"),
        ("#status closed\n#status in progress\nx", "conflicting #status: line 1 already says 'closed'"),
        ("#assign Kiss Anna\n#assign Nagy Péter\nx", "conflicting #assign"),
        ("#status closed\n#resolve\nDone.", "#resolve cannot go with #status on line 1"),
        ("#resolve\n#status closed\nDone.", "#status cannot go with #resolve on line 1"),
        ("#note\n#resolve\nDone.", "#resolve cannot go with #note on line 1"),
        ("#escalate Pénzügy\n#status closed\nx", "#status cannot go with #escalate on line 1"),
        ("#escalate Pénzügy\n#resolve\nx", "#resolve cannot go with #escalate"),
    ],
)
def test_problems(text, reason):
    reply = read(text)
    assert not reply.ok
    assert any(reason in p.reason for p in reply.problems), reply.problems


def test_problem_names_the_line_as_written():
    reply = read("#status closed\n\n  #stauts  closed\nszöveg")
    assert [(p.line, p.text) for p in reply.problems] == [(3, "  #stauts  closed")]
    assert reply.commands == (Command("status", "closed", 1),)
    assert reply.text == "szöveg"


@pytest.mark.parametrize(
    "text, commands, body",
    [
        # no commands at all: the whole text (leading blank lines stripped)
        ("Kedves Ügyfelünk!\n#status closed\n", (), "Kedves Ügyfelünk!\n#status closed\n"),
        ("\n\nSzia!", (), "Szia!"),
        ("", (), ""),
        # '#' + digit, space or '#' is ordinary text and ends the block
        ("#123 in the invoice is wrong", (), "#123 in the invoice is wrong"),
        ("# Összefoglaló\nx", (), "# Összefoglaló\nx"),
        ("## Heading", (), "## Heading"),
        ("#status closed\n#42-es számla\n#note", (("status", "closed"),), "#42-es számla\n#note"),
        # blank lines before and between commands; CRLF kept in the text
        ("\r\n#note\r\n\r\n#status in-progress\r\n\r\nBelső megjegyzés.\r\n",
         (("note", ""), ("status", "in_progress")), "Belső megjegyzés.\r\n"),
        # an identical repeat is kept once
        ("#note\n#NOTE\nx", (("note", ""),), "x"),
        ("#area gdpr\n#area GDPR Segédanyagok\nx", (("area", "GDPR Segédanyagok"),), "x"),
        # several commands
        ("#category számlázás kérdés\n", (), ""),  # a problem: no command, no text
        ("#assign szabo eva\n#category bug\n#area norma\n#status in progress\nRendben.",
         (("assign", "szabo.eva@crossec.com"), ("category", "Hibabejelentés"), ("area", "Crossec Norma"),
          ("status", "in_progress")), "Rendben."),
        ("#resolve\n\nA hibát javítottuk a 2.3-as verzióban.\n\n> quoted\n",
         (("resolve", ""),), "A hibát javítottuk a 2.3-as verzióban.\n\n> quoted\n"),
        ("#escalate fejlesztés\n#note\nKérem nézzétek meg.", (("escalate", "fejlesztes@crossec.com"), ("note", "")),
         "Kérem nézzétek meg."),
    ],
)
def test_block_and_text(text, commands, body):
    reply = read(text)
    assert tuple((c.name, c.value) for c in reply.commands) == commands
    assert reply.text == body


def test_ok_and_internal():
    assert read("#note\nx").internal and read("#note\nx").ok
    assert not read("#status closed\nx").internal
    assert read("#resolve\nKész.").ok and read("#resolve\nKész.").command("resolve") is not None
    assert read("#resolve\nKész.").command("status") is None


def test_line_numbers():
    reply = read("\n#note\n\n#status closed\nx")
    assert [(c.name, c.line) for c in reply.commands] == [("note", 2), ("status", 4)]


def test_ambiguous_name_asks_for_the_email():
    agents = {"kiss.anna@crossec.com": "Kiss Anna", "anna.kiss@crossec.com": "Anna Kiss"}
    reply = read_commands("#assign kiss anna\nx", agents, {})
    assert reply.commands[0].value == "kiss.anna@crossec.com"  # the exact name wins over word order
    reply = read_commands("#assign Anna  Kiss\nx", agents, {})
    assert reply.commands[0].value == "anna.kiss@crossec.com"
    agents = {"a@crossec.com": "Kiss Anna", "b@crossec.com": "Kiss Anna"}
    reply = read_commands("#assign kiss anna\nx", agents, {})
    assert "ambiguous" in reply.problems[0].reason and "use the e-mail address" in reply.problems[0].reason


def test_nothing_configured():
    reply = read_commands("#assign Kiss Anna\n#escalate Pénzügy\nx", {}, {})
    assert [p.reason for p in reply.problems] == ["no agents are configured", "no divisions are configured"]


def test_every_category_and_area_is_reachable():
    for name in CATEGORIES:
        assert read(f"#category {name}\nx").commands[0].value == name
    for name in AREAS:
        assert read(f"#area {name}\nx").commands[0].value == name


def test_valid_commands_help_lines_parse_or_are_templates():
    for line in VALID_COMMANDS:
        if "<" in line:
            continue
        reply = read(f"{line}\nKész.")
        assert reply.ok, (line, reply.problems)


# ---------------------------------------------------------------------------
# Desk commands (#open, #log, #mine): pure
# ---------------------------------------------------------------------------

from mailbridge.policy.commands import read_desk_command  # noqa: E402
from mailbridge.policy.forwarding import share_files  # noqa: E402

DESK_AGENTS = {"kiss.anna@crossec.com": "Kiss Anna", "szabo.peter@crossec.com": "Szabó Péter"}


@pytest.mark.parametrize("text, expected", [
    ("#open phone\n#reporter Varga Tünde <Tunde@Example.hu>\n#area gdpr\n#assign Szabó Péter\n\nHívott.\n",
     ("open", "phone", "Varga Tünde", "tunde@example.hu", "", "GDPR Segédanyagok", "szabo.peter@crossec.com", "Hívott.\n")),
    ("#open post\n#reporter Horváth Ödön\n#phone +36 1 234 5678\nLevél jött.",
     ("open", "post", "Horváth Ödön", "", "+36 1 234 5678", "Egyéb", "", "Levél jött.")),
    ("#LOG Phone OUT\nVisszahívtam.", ("log", "phone", "", "", "", "Egyéb", "", "Visszahívtam.")),
    ("\n#mine\n", ("mine", "", "", "", "", "Egyéb", "", "")),
])
def test_desk_commands_read(text, expected):
    c = read_desk_command(text, DESK_AGENTS)
    assert c is not None and c.ok, c
    assert (c.name, c.channel, c.reporter_name, c.reporter_email, c.phone, c.area, c.assign, c.text) == expected


@pytest.mark.parametrize("text", ["Szia!\n#open phone", "#note\n#open phone", "#status closed\n", "# open phone", ""])
def test_not_a_desk_command(text):
    assert read_desk_command(text, DESK_AGENTS) is None


@pytest.mark.parametrize("text, reason", [
    ("#open phone\n\nHívott.", "#open needs #reporter"),
    ("#open fax\n#reporter A <a@example.hu>", "#open needs a channel"),
    ("#open phone\n#reporter Kiss Béla", "needs #phone"),
    ("#open phone\n#reporter A <nem cím>", "not an e-mail address"),
    ("#open phone\n#reporter A <a@example.hu>\n#phone hívjon vissza", "not a phone number"),
    ("#open phone\n#reporter A <a@example.hu>\n#assign Senki", "unknown agent"),
    ("#open phone\n#reporter A <a@example.hu>\n#resolve", "#resolve cannot go with #open"),
    ("#open phone\n#reporter A <a@example.hu>\n#reporter B <b@example.hu>", "given twice"),
    ("#log phone\nx", "in or out"),
    ("#log phone out\n#status closed\nx", "#status cannot go with #log"),
    ("#mine please", "takes no value"),
])
def test_desk_command_problems(text, reason):
    c = read_desk_command(text, DESK_AGENTS)
    assert c is not None and not c.ok
    assert any(reason in p.reason for p in c.problems), c.problems


def test_files_are_attached_while_they_fit_in_the_cap_the_rest_listed():
    files = [{"filename": n, "size": s} for n, s in (("a", 600), ("big", 5000), ("b", 400), ("zero", 0), ("c", 1))]
    attached, listed = share_files(files, 1000)
    assert [f["filename"] for f in attached] == ["a", "b", "zero"] and [f["filename"] for f in listed] == ["big", "c"]
    assert share_files(files, 0) == (({"filename": "zero", "size": 0},), tuple(f for f in files if f["size"]))
