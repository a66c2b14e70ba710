"""Recognise bounces and mail-gateway notices that carry no DSN structure. Pure data + one decision.

Why text at all
---------------
A delivery report (RFC 3464, ``multipart/report``) or a null/MAILER-DAEMON
sender is recognised elsewhere, first.  Many delivery systems send neither:
old Sendmail/qmail/Exim set-ups, Domino, GroupWise, MDaemon, Kerio,
hMailServer, Exchange relays, and the virus/spam gateways in front of them
(Symantec, Sophos, Barracuda, Proofpoint, Mimecast, Trend Micro, amavis +
ClamAV).  Their notices come from ``postmaster@``, ``mailer@``,
``antivirus@``, ``quarantine@`` or a plain host address, in the local
language, with the failed recipients and often the original in the text.
Acknowledging them is backscatter to an innocent address.

The decision (several independent signals, never one word)
----------------------------------------------------------
=============  ======  ==========================================================
signal         weight  what
=============  ======  ==========================================================
``sender``     2       From's local part or display name is a delivery system's
                       or a gateway's (``MAILER-DAEMON``, ``"Mail Delivery
                       System"``, ``antivirus@``, ``quarantine@``, …)
``subject``    2       the subject opens with a bounce/gateway phrase
                       ("Undeliverable:", "Kézbesíthetetlen:", "Unzustellbar:")
``phrase``     2       the text says it in a delivery system's words ("This is
                       the mail system at host", "Ihre Nachricht konnte nicht
                       zugestellt werden", "vírust találtunk a levélben")
``code``       1       an SMTP reply or enhanced status code (``550 5.1.1``,
                       ``#5.1.1``, ``smtp;550``)
``block``      1       a "failed recipients" block ("The following addresses
                       had permanent fatal errors", "was not delivered to:")
``original``   1       the original inlined ("------ This is a copy of the
                       message, including all the headers. ------", a
                       ``Received:`` header block) or attached (message/rfc822,
                       text/rfc822-headers, a text file of headers)
``replied``    -4      the subject starts with a reply/forward prefix ("Re:",
                       "Fwd:", "AW:", "VS:", "Továbbítás:"): a person pressed
                       Reply or Forward on it
``greeting``   -4      the text opens with a greeting to a person ("Hello,",
                       "Tisztelt Ügyfélszolgálat!") and the sender is not a
                       delivery system's (gateways may say "Hello,"); machines
                       greet roles ("Dear user", "Tisztelt Feladó!") or nobody
=============  ======  ==========================================================

A notice needs a score of at least 4, a ``sender`` or ``subject`` signal
(what a person would see in the list of mails), and a ``sender`` signal or
one of ``code``/``block``/``original`` (what a person rarely types).  So a
customer who pastes a bounce under her own subject, forwards one ("Fwd:"),
or writes "Delivery failure" about a parcel stays a person: nothing a
person sends is dropped (P6).  The text is read up to the first forward
marker ("---------- Forwarded message ---------") and only its first
``SCAN_CHARS`` characters: crafted bodies cost a bounded amount.

Kind: ``bounce`` when any bounce subject, phrase or failed-recipients block
fires; ``automatic`` when only gateway words do ("quarantined", "spam
digest": a gateway telling about mail it holds, not about a delivery).

Every pattern is written lower-case (the text is lower-cased once) and
keeps accented letters out of ``[...]`` classes (the accent folding rewrites
each one into a class of its own). Its repeats are bounded (a space in a
phrase is at most a few blanks and one line break), so none can backtrack
across a crafted line; most start with a literal the engine skips ahead to.
Subjects are matched as one alternation per kind: that runs on every mail.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

from mailbridge.mail import Address, Part
from mailbridge.policy.addresses import normalise_address
from mailbridge.policy.autoreply_phrases import fold_accents
from mailbridge.policy.reply_prefixes import REPLY_PREFIX

__all__ = [
    "BOUNCE", "AUTOMATIC", "SCAN_CHARS", "Notice", "read_notice", "failed_recipients",
    "is_mailer_daemon", "bounce_subject", "has_reply_prefix", "quoted_message_ids",
]

BOUNCE, AUTOMATIC = "bounce", "automatic"
# What is read of a text: notices say what they are in their first lines; beyond
# this an inlined original follows, and a crafted body costs nothing more.
SCAN_CHARS = 16 * 1024
# Of a text attachment, whether it is a returned message's headers.
ATTACHED_HEAD = 2048

WEIGHTS = {"sender": 2, "subject": 2, "phrase": 2, "code": 1, "block": 1, "original": 1,
           "replied": -4, "greeting": -4}
THRESHOLD = 4

# --- who sends them ---------------------------------------------------------------------------
# The senders SPEC names outright (never a ticket, whatever they say): RFC 5321's postmaster and
# the MAILER-DAEMON of every Unix MTA.
MAILER_DAEMON_LOCAL_PARTS = ("mailer-daemon", "mailerdaemon", "mail-daemon", "maildaemon", "postmaster")

# Local parts (before any +tag) of delivery systems and gateways: one signal each, not a verdict.
DELIVERY_SYSTEM_LOCAL_PARTS = (
    *MAILER_DAEMON_LOCAL_PARTS,
    "mailer", "mail-router", "mailrouter", "mdaemon", "mailadmin", "mail-admin", "smtp", "smtpgw",
    "antivirus", "anti-virus", "virusalert", "virus-alert", "viruswall", "virusscan", "virus",
    "mailscanner", "mail-scanner", "mailsweeper", "amavis", "amavisd", "clamav", "clamsmtp",
    "quarantine", "spamquarantine", "spam-quarantine", "quarantine-notify", "quarantine-digest",
    "spamfilter", "spam-filter", "mailfilter", "mail-filter", "contentfilter", "mailguard",
    "mailsecurity", "emailsecurity", "email-security", "pmx", "pps", "spamtitan", "iscan",
)
# "noreply"-style local parts count only on a host whose first label says gateway.
NO_REPLY_LOCAL_PARTS = ("noreply", "no-reply", "donotreply", "do-not-reply", "system", "notify", "notification")
GATEWAY_HOST_LABELS = (
    "gateway", "gw", "mailgw", "smtpgw", "mx", "relay", "antispam", "antivirus", "spamfilter", "mailfilter",
    "esa", "mailsec", "quarantine", "pps",
)
# Display names, matched whole (so "Postmaster Logisztika Kft." is a company, not a daemon).
DELIVERY_SYSTEM_NAMES = (
    r"(?:the )?mail delivery (?:system|subsystem|service|agent)", r"mailer[- ]?daemon", r"mail[- ]?daemon",
    r"post ?master", r"mail (?:administrator|router|system|server|gateway)", r"microsoft outlook",
    r"microsoft exchange(?: server)?", r"lotus domino", r"domino (?:router|mail router)", r"groupwise(?: .{0,20})?",
    r"mdaemon(?: .{0,30})?", r"hmailserver", r"kerio connect(?: .{0,30})?", r"courier mail server at .{1,100}",
    r"zimbra(?: .{0,20})?", r"(?:e-?mail |mail )?(?:anti-?virus|virus ?scanner|virus ?alert|virus ?wall)(?: .{0,30})?",
    r"mail ?scanner(?: .{0,30})?", r"mail ?sweeper", r"amavisd?(?:-new)?(?: .{0,30})?", r"clamav(?: .{0,30})?",
    r"(?:spam |e-?mail |mail )?quarantine(?: .{0,30})?", r"symantec .{0,40}", r"sophos .{0,40}",
    r"barracuda .{0,40}", r"proofpoint .{0,40}", r"mimecast(?: .{0,40})?", r"trend ?micro .{0,40}",
    r"interscan .{0,40}", r"spamtitan(?: .{0,30})?", r"e-?mail security(?: .{0,30})?",
    # the same in the languages we serve
    r"levél(?:kézbesítő|továbbító) rendszer", r"levelező ?rendszer", r"levelező ?szerver", r"vírusirtó(?: .{0,30})?",
    r"vírus ?(?:védelem|ellenőrző|szűrő)(?: .{0,30})?", r"levélszemét ?szűrő", r"karantén(?: .{0,30})?",
    r"e-?mail-?zustell(?:system|dienst)", r"mail-?zustellsystem", r"e-?mail-?virenschutz", r"virenschutz(?: .{0,30})?",
    r"virenscanner", r"mail-?quarantäne", r"système de (?:remise|distribution) du courrier",
    r"sistema de entrega de correo", r"sistema di recapito(?: della posta)?", r"system dostarczania poczty",
    r"systém (?:doručování|doručení) pošty", r"e-?mail ?bezorgsysteem", r"sistema de entrega de correio",
)

# --- subjects ----------------------------------------------------------------------------------
# (kind, phrase) in lower case; matched at the start of the subject, after an optional
# "[", "(", "*" or a gateway's own bracketed tag.  Accents may be missing.
SUBJECTS: tuple[tuple[str, str], ...] = (
    # English: Sendmail, Postfix, Exim, qmail, Exchange, Domino, GroupWise, MDaemon, Courier, gateways
    (BOUNCE, r"undeliverable(?: mail| message| e-?mail)?\s*:"), (BOUNCE, r"undeliverable (?:mail|message|e-?mail)\b"),
    (BOUNCE, r"undelivered mail returned to sender"), (BOUNCE, r"undelivered (?:mail|message)\b"),
    (BOUNCE, r"returned mail\b"), (BOUNCE, r"mail delivery fail(?:ed|ure)"), (BOUNCE, r"delivery failure\s*:"),
    (BOUNCE, r"delivery status notification"), (BOUNCE, r"delivery notification\s*:"), (BOUNCE, r"failure notice\b"),
    (BOUNCE, r"delivery has failed"), (BOUNCE, r"message (?:not delivered|undeliverable|delivery failure)"),
    (BOUNCE, r"non-?delivery (?:report|notification)"), (BOUNCE, r"permanent delivery failure"),
    (BOUNCE, r"warning: could not send message"), (BOUNCE, r"could not send message"), (BOUNCE, r"notice: mail delivery status"),
    (BOUNCE, r"message status - undeliverable"), (BOUNCE, r"mail system error"), (BOUNCE, r"delivery failure report"),
    (BOUNCE, r"delayed mail\b"), (BOUNCE, r"your message (?:could not be|couldn't be|was not) delivered"),
    (BOUNCE, r"virus (?:found|detected|alert)"), (BOUNCE, r"virus\s*[\]:(]"), (BOUNCE, r"banned (?:content|file|attachment)"),
    (BOUNCE, r"(?:message|e-?mail|mail) (?:blocked|rejected)\b"), (BOUNCE, r"blocked\s*[\]:]"), (BOUNCE, r"rejected\s*[\]:]"),
    (BOUNCE, r"(?:symantec|sophos|trend micro|mimecast|barracuda|proofpoint)[^\n]{0,60}(?:detected|blocked|rejected|virus)"),
    (AUTOMATIC, r"(?:spam |message |e-?mail )?quarantine(?:d)? (?:summary|digest|report|notification|notice)"),
    (AUTOMATIC, r"(?:message|e-?mail|mail) (?:quarantined|held)\b"), (AUTOMATIC, r"quarantined\s*[\]:]"),
    (AUTOMATIC, r"(?:spam|end user) digest"), (AUTOMATIC, r"(?:spam|junk) (?:summary|report)\b"),
    (AUTOMATIC, r"(?:messages? on hold|hold (?:queue )?notification)"),
    # Hungarian
    (BOUNCE, r"kézbesíthetetlen"), (BOUNCE, r"nem kézbesíthető"), (BOUNCE, r"kézbesítési (?:hiba|jelentés|értesítés)"),
    (BOUNCE, r"sikertelen kézbesítés"), (BOUNCE, r"a levél nem kézbesíthető"), (BOUNCE, r"visszaküldött levél"),
    (BOUNCE, r"nem kézbesített (?:levél|üzenet)"), (BOUNCE, r"vírus(?:t|os)? (?:észlel|talál|riasztás|figyelmeztetés)"),
    (BOUNCE, r"vírusos (?:levél|üzenet)"), (BOUNCE, r"(?:letiltott|elutasított) (?:levél|üzenet)"),
    (AUTOMATIC, r"karantén(?:ba helyezett| értesítő| összesítő| jelentés)"), (AUTOMATIC, r"levélszemét[- ]összesítő"),
    # German
    (BOUNCE, r"unzustellbar"), (BOUNCE, r"nicht zustellbar"), (BOUNCE, r"zustellungsfehler"),
    (BOUNCE, r"fehler bei der zustellung"), (BOUNCE, r"benachrichtigung über den zustellungsstatus"),
    (BOUNCE, r"nachricht (?:konnte nicht zugestellt werden|nicht zugestellt)"), (BOUNCE, r"virus (?:gefunden|entdeckt)"),
    (BOUNCE, r"virenwarnung"), (BOUNCE, r"virus-?warnung"), (BOUNCE, r"nachricht (?:blockiert|abgewiesen)"),
    (AUTOMATIC, r"quarantäne(?:-?bericht|-?benachrichtigung|-?zusammenfassung|:)"), (AUTOMATIC, r"spam-?bericht"),
    # French
    (BOUNCE, r"non remis"), (BOUNCE, r"non distribuable"), (BOUNCE, r"échec de (?:la )?(?:remise|distribution)"),
    (BOUNCE, r"message non (?:délivré|remis|distribué)"), (BOUNCE, r"notification d'état de (?:la )?remise"),
    (BOUNCE, r"virus détecté"), (BOUNCE, r"message bloqué"), (AUTOMATIC, r"(?:message mis en )?quarantaine\s*:"),
    # Spanish
    (BOUNCE, r"no se puede entregar"), (BOUNCE, r"no entregado"), (BOUNCE, r"(?:error|fallo) en la entrega"),
    (BOUNCE, r"mensaje no entregado"), (BOUNCE, r"notificación de estado de (?:la )?entrega"), (BOUNCE, r"correo devuelto"),
    (BOUNCE, r"virus detectado"), (BOUNCE, r"mensaje bloqueado"), (AUTOMATIC, r"(?:mensaje en )?cuarentena\s*:"),
    # Italian
    (BOUNCE, r"non recapitabile"), (BOUNCE, r"mancato recapito"), (BOUNCE, r"impossibile recapitare"),
    (BOUNCE, r"errore di recapito"), (BOUNCE, r"messaggio non (?:consegnato|recapitato)"), (BOUNCE, r"virus rilevato"),
    (BOUNCE, r"messaggio bloccato"), (AUTOMATIC, r"(?:messaggio in )?quarantena\s*:"),
    # Polish
    (BOUNCE, r"niedostarczalne"), (BOUNCE, r"niedostarczon[aey]"), (BOUNCE, r"nie dostarczono"),
    (BOUNCE, r"nie można dostarczyć"), (BOUNCE, r"niedoręczon[aey]"), (BOUNCE, r"powiadomienie o stanie dostarczenia"),
    (BOUNCE, r"wiadomość (?:nie została dostarczona|niedostarczona)"), (BOUNCE, r"wykryto wirus"),
    (BOUNCE, r"wiadomość zablokowana"), (AUTOMATIC, r"kwarantann?a\s*:"),
    # Czech
    (BOUNCE, r"nedoručitelné"), (BOUNCE, r"nedoručen(?:á|o)"), (BOUNCE, r"nelze doručit"), (BOUNCE, r"chyba doručení"),
    (BOUNCE, r"oznámení o stavu doručení"), (BOUNCE, r"zpráva (?:nebyla )?nedoručena"), (BOUNCE, r"nalezen virus"),
    (BOUNCE, r"zablokovaná zpráva"), (AUTOMATIC, r"karanténa\s*:"),
    # Dutch
    (BOUNCE, r"onbestelbaar"), (BOUNCE, r"niet bezorgd"), (BOUNCE, r"onbezorgbaar"), (BOUNCE, r"bezorgingsfout"),
    (BOUNCE, r"melding over de bezorgingsstatus"), (BOUNCE, r"virus gevonden"), (BOUNCE, r"bericht geblokkeerd"),
    (AUTOMATIC, r"quarantaine(?:melding|overzicht|\s*:)"),
    # Portuguese
    (BOUNCE, r"não é possível entregar"), (BOUNCE, r"não entregue"), (BOUNCE, r"falha na entrega"),
    (BOUNCE, r"mensagem não entregue"), (BOUNCE, r"notificação de (?:status|estado) de entrega"),
    (BOUNCE, r"vírus detectado"), (BOUNCE, r"mensagem bloqueada"), (AUTOMATIC, r"(?:mensagem em )?quarentena\s*:"),
)

# --- what the text says ------------------------------------------------------------------------
# (kind, phrase), anywhere in the text read.  Each names mail, a message or a recipient: "the
# delivery failed" alone is what a customer writes about a parcel.
PHRASES: tuple[tuple[str, str], ...] = (
    # English
    (BOUNCE, r"this is the mail system at host"), (BOUNCE, r"i'm sorry to have to inform you that your message"),
    (BOUNCE, r"this message was created automatically by mail delivery software"),
    (BOUNCE, r"a message that you sent could not be delivered"), (BOUNCE, r"this is the qmail-send program"),
    (BOUNCE, r"i'm afraid i wasn't able to deliver your message"),
    (BOUNCE, r"your message did not reach some or all of the intended recipients"),
    (BOUNCE, r"delivery has failed to these recipients or groups"),
    (BOUNCE, r"your message to [^\n]{1,200} couldn't be delivered"), (BOUNCE, r"your message (?:could not|couldn't|cannot) be delivered"),
    (BOUNCE, r"the original message was received at"), (BOUNCE, r"transcript of session follows"),
    (BOUNCE, r"unsent message follows"), (BOUNCE, r"automatically generated delivery status notification"),
    (BOUNCE, r"delivery to the following recipients? (?:failed|has failed|was unsuccessful)"),
    (BOUNCE, r"delivery failure report"), (BOUNCE, r"the message that you sent was undeliverable"),
    (BOUNCE, r"permanent fatal (?:delivery )?errors"), (BOUNCE, r"permanent delivery failure"),
    (BOUNCE, r"this is a delivery status notification"), (BOUNCE, r"could not be delivered to one or more (?:of its )?recipients"),
    (BOUNCE, r"unable to deliver (?:your |the )?(?:message|mail|e-?mail)"), (BOUNCE, r"(?:message|mail) could not be delivered"),
    (BOUNCE, r"the following recipient\(s\) (?:cannot|could not) be reached"), (BOUNCE, r"message delivery failed"),
    (BOUNCE, r"(?:recipient|user) (?:address )?(?:unknown|rejected)"), (BOUNCE, r"no such (?:user|mailbox|recipient)"),
    (BOUNCE, r"mailbox (?:unavailable|full|is full|not found|does not exist)"),
    (BOUNCE, r"(?:contain(?:s|ed)?|infected with|found) (?:a |the )?virus"), (BOUNCE, r"virus (?:was )?(?:found|detected)"),
    (BOUNCE, r"(?:your|the) (?:message|mail|e-?mail) (?:has been|was) (?:blocked|rejected|deleted)"),
    (BOUNCE, r"banned (?:file|attachment|content)"), (BOUNCE, r"(?:message|mail) (?:was )?not delivered because"),
    (BOUNCE, r"message you sent (?:could not|couldn't|was not) (?:be )?delivered"), (BOUNCE, r"detected (?:a |the )?virus"),
    (AUTOMATIC, r"(?:message|messages|mail|e-?mail)s? (?:has|have) been (?:quarantined|held)"),
    (AUTOMATIC, r"(?:held|placed|waiting) in (?:the )?(?:spam )?quarantine"), (AUTOMATIC, r"release (?:the |this |a )?message"),
    (AUTOMATIC, r"(?:spam|end user) digest"), (AUTOMATIC, r"quarantine (?:summary|digest|report)"),
    # Hungarian
    (BOUNCE, r"a kézbesítés nem sikerült"), (BOUNCE, r"(?:az )?üzenet(?:e|ét)?(?:et)? nem (?:sikerült|lehetett) kézbesíteni"),
    (BOUNCE, r"(?:a )?level(?:e|ét)?(?:et)? nem (?:sikerült|lehetett) kézbesíteni"), (BOUNCE, r"a levél nem kézbesíthető"),
    (BOUNCE, r"nem kézbesíthető (?:üzenet|levél)"), (BOUNCE, r"kézbesítési hiba"), (BOUNCE, r"ismeretlen címzett"),
    (BOUNCE, r"(?:a )?postafiók (?:megtelt|nem létezik|nem található)"), (BOUNCE, r"vírust (?:talált|találtunk|észlelt|tartalmaz)"),
    (BOUNCE, r"(?:levél|üzenet)[^\n]{0,40}(?:letiltottuk|visszautasít|elutasít)"),
    (AUTOMATIC, r"karanténba (?:helyez|került)"),
    # German
    (BOUNCE, r"(?:ihre )?nachricht konnte nicht (?:an [^\n]{1,80} )?zugestellt werden"),
    (BOUNCE, r"übermittlung an folgende empfänger"), (BOUNCE, r"zustellung an folgende empfänger"),
    (BOUNCE, r"benachrichtigung über den zustellungsstatus"), (BOUNCE, r"empfänger (?:unbekannt|existiert nicht)"),
    (BOUNCE, r"postfach (?:ist )?(?:voll|unbekannt)"), (BOUNCE, r"(?:ein )?virus (?:gefunden|entdeckt|erkannt)"),
    (BOUNCE, r"nachricht (?:wurde )?(?:blockiert|abgewiesen|gelöscht)"), (BOUNCE, r"virus enth(?:ielt|ält)"),
    (AUTOMATIC, r"in (?:die )?quarantäne (?:verschoben|gestellt)"),
    # French
    (BOUNCE, r"votre message n'a pas pu être (?:remis|distribué)"), (BOUNCE, r"échec de (?:la )?remise"),
    (BOUNCE, r"impossible de remettre (?:le|votre) message"), (BOUNCE, r"destinataire inconnu"),
    (BOUNCE, r"boîte aux lettres (?:pleine|inexistante)"), (BOUNCE, r"virus (?:a été )?détecté"),
    (BOUNCE, r"message a été (?:bloqué|rejeté)"), (AUTOMATIC, r"mis en quarantaine"),
    # Spanish
    (BOUNCE, r"error al entregar (?:el mensaje )?a estos destinatarios"), (BOUNCE, r"no se (?:pudo|ha podido) entregar"),
    (BOUNCE, r"su mensaje no (?:se )?(?:pudo|ha podido) (?:ser )?entregar"), (BOUNCE, r"destinatario desconocido"),
    (BOUNCE, r"buzón (?:lleno|no existe)"), (BOUNCE, r"virus detectado"), (BOUNCE, r"mensaje (?:ha sido|fue) bloqueado"),
    (AUTOMATIC, r"(?:puesto|retenido) en cuarentena"),
    # Italian
    (BOUNCE, r"recapito non riuscito"), (BOUNCE, r"non è stato possibile recapitare"), (BOUNCE, r"impossibile recapitare"),
    (BOUNCE, r"messaggio non (?:è stato )?(?:consegnato|recapitato)"), (BOUNCE, r"destinatario sconosciuto"),
    (BOUNCE, r"casella (?:di posta )?piena"), (BOUNCE, r"virus rilevato"), (BOUNCE, r"messaggio è stato bloccato"),
    (AUTOMATIC, r"messo in quarantena"),
    # Polish
    (BOUNCE, r"doręczenie do tych adresatów"), (BOUNCE, r"nie można dostarczyć (?:wiadomości|do)"),
    (BOUNCE, r"wiadomość nie została dostarczona"), (BOUNCE, r"wiadomości nie (?:udało się|można) dostarczyć"),
    (BOUNCE, r"nieznany adresat"), (BOUNCE, r"skrzynka (?:jest )?pełna"), (BOUNCE, r"wykryto wirus"),
    (BOUNCE, r"wiadomość została zablokowana"), (AUTOMATIC, r"(?:przeniesiona|umieszczona) w kwarantannie"),
    # Czech
    (BOUNCE, r"doručení těmto příjemcům"), (BOUNCE, r"(?:zprávu|zpráva) (?:se )?(?:nepodařilo|nelze) doručit"),
    (BOUNCE, r"zpráva nebyla doručena"), (BOUNCE, r"neznámý příjemce"), (BOUNCE, r"schránka (?:je )?plná"),
    (BOUNCE, r"(?:nalezen|zjištěn) virus"), (BOUNCE, r"zpráva byla zablokována"), (AUTOMATIC, r"přesunuta do karantény"),
    # Dutch
    (BOUNCE, r"bezorging is mislukt"), (BOUNCE, r"(?:uw )?bericht kon niet worden (?:bezorgd|afgeleverd)"),
    (BOUNCE, r"kan niet worden bezorgd"), (BOUNCE, r"onbekende ontvanger"), (BOUNCE, r"postvak is vol"),
    (BOUNCE, r"virus gevonden"), (BOUNCE, r"bericht is geblokkeerd"), (AUTOMATIC, r"in quarantaine geplaatst"),
    # Portuguese
    (BOUNCE, r"falha na entrega para estes destinatários"), (BOUNCE, r"não foi possível entregar"),
    (BOUNCE, r"(?:a )?(?:sua )?mensagem não pôde ser entregue"), (BOUNCE, r"destinatário desconhecido"),
    (BOUNCE, r"caixa de correio (?:cheia|inexistente)"), (BOUNCE, r"vírus detectado"), (BOUNCE, r"mensagem foi bloqueada"),
    (AUTOMATIC, r"(?:colocada|retida) em quarentena"),
)

# The lines that introduce a block of failed recipients, in each language.
FAILED_BLOCK_HEADERS = (
    r"the following addresses had (?:permanent fatal errors|delivery problems)", r"following address(?:\(es\)|es)? failed",
    r"the following recipient\(s\) (?:cannot|could not) be reached", r"delivery to the following recipients? (?:failed|has failed)",
    r"delivery has failed to these recipients or groups", r"could not be delivered to the following recipients?",
    r"wasn't able to deliver your message to the following addresses", r"was not delivered to\s*:",
    r"failed recipients?\s*:", r"undeliverable to the following", r"unable to deliver (?:the )?message to the following",
    r"the following recipients? (?:was|were) rejected", r"delivery failed for the following recipients?",
    r"for the following recipients?\s*:",
    r"a kézbesítés nem sikerült a következő címzett", r"a következő címzett(?:ek)?(?:nek|hez| számára)?[^\n]{0,40}(?:sikertelen|nem sikerült)",
    r"sikertelen kézbesítés a következő", r"hibás címzett(?:ek)?\s*:", r"az alábbi címzett",
    r"übermittlung an folgende empfänger oder gruppen", r"die folgenden empfänger konnten nicht", r"folgende empfänger",
    r"fehlgeschlagene empfänger\s*:", r"échec de (?:la )?remise à ces destinataires", r"aux destinataires suivants",
    r"error al entregar (?:el mensaje )?a estos destinatarios", r"a los siguientes destinatarios",
    r"recapito non riuscito a questi destinatari", r"ai seguenti destinatari", r"doręczenie do tych adresatów",
    r"do następujących adresatów", r"doručení těmto příjemcům", r"následujícím příjemcům",
    r"bezorging is mislukt voor deze ontvangers", r"bij de volgende ontvangers",
    r"falha na entrega para estes destinatários", r"aos seguintes destinatários",
)

# The lines after which the returned original follows.
ORIGINAL_SEPARATORS = (
    r"this is a copy of the message, including all the headers", r"below this line is a copy of the message",
    r"original message follows", r"unsent message follows", r"returned message follows", r"message header follows",
    r"original message headers\s*:", r"a copy of the original message", r"az eredeti üzenet(?: fejlécei| másolata)",
    r"kopie der (?:ursprünglichen )?nachricht", r"ursprüngliche nachricht folgt", r"copie du message d'origine",
    r"copia del mensaje original", r"copia del messaggio originale", r"kopia oryginalnej wiadomości",
    r"kopie původní zprávy", r"kopie van het oorspronkelijke bericht", r"cópia da mensagem original",
)
# A returned message's headers, inlined at the start of a line.
_RETURNED_HEADERS = re.compile(r"^(?:received: from |return-path: <|message-id: <)", re.MULTILINE)

# The lines a person's mail client writes above a message she forwards: nothing below is hers.
FORWARD_MARKERS = (
    r"-{2,80} ?(?:forwarded message|továbbított (?:üzenet|levél)|weitergeleitete nachricht|message transféré"
    r"|mensaje reenviado|messaggio inoltrato|mensagem encaminhada|doorgestuurd bericht|przekazana wiadomość"
    r"|wiadomość przekazana dalej|přeposlaná zpráva) ?-{2,80}",
    r"begin forwarded message:", r"anfang der weitergeleiteten nachricht:", r"début du message réexpédié",
    r"továbbított üzenet kezdete:", r"inicio del mensaje reenviado:", r"inizio messaggio inoltrato:",
)

# A text that opens with a greeting to a person ("Hello Anna,", "Tisztelt Ügyfélszolgálat!").
GREETINGS = (
    r"hello", r"hi", r"hey", r"dear", r"good (?:morning|afternoon|evening|day)", r"tisztelt", r"kedves", r"szia",
    r"sziasztok", r"helló", r"jó napot(?: kívánok)?", r"üdvözlöm", r"hallo", r"guten (?:tag|morgen|abend)",
    r"sehr geehrte[rs]?", r"liebe[rs]?", r"bonjour", r"bonsoir", r"madame", r"monsieur", r"cher", r"chère", r"hola",
    r"buenos días", r"buenas tardes", r"estimad[oa]s?", r"ciao", r"buongiorno", r"buonasera", r"gentile", r"egregi[oa]",
    r"dzień dobry", r"witam", r"szanown[aiy]", r"dobrý den", r"vážen(?:ý|á)", r"ahoj", r"goedemorgen", r"goedemiddag",
    r"goedendag", r"beste", r"geachte", r"olá", r"bom dia", r"boa tarde", r"prezad[oa]s?",
)
# ... but not a machine's greeting of whoever sent the mail.
GREETED_ROLES = (
    r"sender", r"user", r"recipient", r"e-?mail user", r"mail user", r"postmaster", r"administrator", r"feladó",
    r"felhasználó", r"címzett", r"absender(?:in)?", r"benutzer(?:in)?", r"nutzer(?:in)?", r"empfänger(?:in)?",
    r"expéditeur", r"utilisateur",
    r"destinataire", r"remitente", r"usuario", r"destinatario", r"mittente", r"utente", r"nadawc[ao]", r"użytkowniku",
    r"odbiorc[ao]", r"odesílateli", r"uživateli", r"příjemce", r"afzender", r"gebruiker", r"ontvanger", r"remetente",
    r"utilizador", r"usuário", r"destinatário",
)


# --- compiled once -----------------------------------------------------------------------------
def _words(fragment: str) -> str:
    # One space in a phrase stands for any run of blanks or one line break between the words,
    # bounded: folded lines in a notice must not let a pattern run away.
    return fold_accents(fragment).replace(" ", r"[ \t]{0,8}\n?[ \t]{0,8}")


_MAILER_DAEMON = frozenset(MAILER_DAEMON_LOCAL_PARTS)
_SYSTEM_LOCAL = frozenset(DELIVERY_SYSTEM_LOCAL_PARTS)
_NO_REPLY = frozenset(NO_REPLY_LOCAL_PARTS)
_GATEWAY_LABELS = frozenset(GATEWAY_HOST_LABELS)
# A subject may open with "[", "(", "*" or a gateway's bracketed tag ("[SPAM] ", "***VIRUS*** ").
_SUBJECT_OPENING = r"^[ \t]{0,8}(?:\[[^\]\n]{0,40}\][ \t]{0,8}|\*{1,3}[^*\n]{0,30}\*{1,3}[ \t]{0,8})?[\[(*]{0,3}[ \t]{0,3}"


@functools.cache
def _system_name() -> re.Pattern[str]:
    # Compiled on first use, like the tables below: every parse worker and the poller
    # import this module, and compiling them all took 30 ms of its start.
    return re.compile(r"(?:" + "|".join(fold_accents(n) for n in DELIVERY_SYSTEM_NAMES) + r")\Z")


@functools.cache
def _subjects() -> tuple[tuple[str, re.Pattern[str]], ...]:
    # One alternation per kind: this runs on every mail, and one match beats 119 (18 µs to 2 µs a mail).
    return tuple((kind, re.compile(_SUBJECT_OPENING + "(?:" + "|".join(_words(p) for k, p in SUBJECTS if k == kind) + ")"))
                 for kind in (BOUNCE, AUTOMATIC))


class _Reading(NamedTuple):
    phrases: tuple[tuple[str, re.Pattern[str]], ...]
    block: re.Pattern[str]
    original: re.Pattern[str]
    forward: re.Pattern[str]
    greeting: re.Pattern[str]


@functools.cache
def _reading() -> _Reading:
    """What a notice's text is read with: only mail from a delivery system or with a
    bounce subject (and the delivery reports) needs it (21 ms to compile)."""
    return _Reading(
        tuple((kind, re.compile(_words(p))) for kind, p in PHRASES),
        re.compile("|".join(_words(p) for p in FAILED_BLOCK_HEADERS)),
        re.compile("|".join(_words(p) for p in ORIGINAL_SEPARATORS)),
        re.compile(r"^[ \t>]{0,8}(?:" + "|".join(_words(p) for p in FORWARD_MARKERS) + ")", re.MULTILINE),
        re.compile(r"(?:" + "|".join(fold_accents(g) for g in GREETINGS) + r")(?![^\W\d_])(?![ \t]{0,3}(?:"
                   + "|".join(fold_accents(r) for r in GREETED_ROLES) + r")(?![^\W\d_]))[ \t]{0,3}(?:[,!]|[^\W\d_]|\Z)"),
    )


# An SMTP reply code where a delivery system quotes one: "550 5.1.1", "#5.1.1", "smtp;550",
# "Status: 5.2.2", "said: 554", "(5.7.1)".
_STATUS_CODE = re.compile(
    r"\b[45]\d\d[ -][45]\.\d{1,3}\.\d{1,3}\b|#[45]\.\d{1,3}\.\d{1,3}\b|\bsmtp; ?[45]\d\d\b"
    r"|\bstatus: ?[45]\.\d{1,3}\.\d{1,3}\b|\((?:[45]\.\d{1,3}\.\d{1,3})\)"
    r"|\b(?:said|replied|response|error|answered|reply was)[: ]{1,3}[45]\d\d\b")
# A recipient at the start of a line of a failed-recipients block: "  jdoe@example.com",
# "<jdoe@example.com>:", "jdoe@example.com on 20/11/2026", "jdoe@example.com (user unknown)".
_LINE_ADDRESS = re.compile(r"[ \t]{0,16}<?([^\s<>@()\[\],;:\"]{1,64}@[^\s<>@()\[\],;:\"]{1,253})>?(?=[\s:(,;<]|\Z)")
_ANGLED_RECIPIENT = re.compile(r"^[ \t]{0,4}<([^\s<>@]{1,64}@[^\s<>@]{1,253})>:", re.MULTILINE)
_BLOCK_LINES = 25  # a block lists a few recipients, each with a reason or two under it
_BLOCKS = 10  # ... and a notice has one block, or one per kind of failure
_QUOTED_ID = re.compile(r"^[ \t>]{0,8}message-id:[ \t]{0,8}(<[^<>\s]{1,250}>)", re.IGNORECASE | re.MULTILINE)
_EMBEDDED_ORIGINAL = ("message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers")


@dataclass(frozen=True)
class Notice:
    """What the words of a mail say it is: a bounce, a gateway's automatic notice, or neither."""

    kind: str = ""  # BOUNCE | AUTOMATIC | "" (a person, as far as the words go)
    signals: tuple[str, ...] = ()  # the signals that fired, for the log and the tests
    score: int = 0

    def __bool__(self) -> bool:
        return bool(self.kind)

    @property
    def reason(self) -> str:
        return "bounce-text" if self.kind == BOUNCE else "gateway-notice"


NOT_A_NOTICE = Notice()


def is_mailer_daemon(email: str) -> bool:
    """MAILER-DAEMON@ or postmaster@ (any host): SPEC's senders that never open a ticket."""
    return _local_part(email) in _MAILER_DAEMON


def has_reply_prefix(subject: str) -> bool:
    return bool(REPLY_PREFIX.match(subject or ""))


def bounce_subject(subject: str) -> str:
    """BOUNCE or AUTOMATIC when the subject opens with a delivery system's or gateway's words, else ""."""
    text = (subject or "")[:300].lower()
    if not text or REPLY_PREFIX.match(text):
        return ""
    return next((kind for kind, pattern in _subjects() if pattern.match(text)), "")


def read_notice(subject: str, sender: Address, text: str, attachments: Sequence[Part] = ()) -> Notice:
    """Is this a bounce or a gateway notice by what it says? NOT_A_NOTICE for a person's mail."""
    from_system = _from_delivery_system(sender)
    subject_kind = bounce_subject(subject)
    if not from_system and not subject_kind:
        return NOT_A_NOTICE  # most mail stops here, before its text is read
    signals: list[str] = ["sender"] if from_system else []
    kinds = {subject_kind} if subject_kind else set()
    if subject_kind:
        signals.append("subject")
    if has_reply_prefix(subject):
        signals.append("replied")
    window = _window(text)
    patterns = _reading()
    phrase_kinds = {kind for kind, pattern in patterns.phrases if pattern.search(window)}
    if phrase_kinds:
        signals.append("phrase")
        kinds |= phrase_kinds
    if _STATUS_CODE.search(window):
        signals.append("code")
    if patterns.block.search(window):
        signals.append("block")
        kinds.add(BOUNCE)
    if patterns.original.search(window) or _RETURNED_HEADERS.search(window) or _attached_original(attachments):
        signals.append("original")
    if not from_system and patterns.greeting.match(window.lstrip()[:200]):
        signals.append("greeting")  # gateways greet too ("Hello,"): it speaks only against a person's address
    score = sum(WEIGHTS[s] for s in signals)
    structural = from_system or {"code", "block", "original"} & set(signals)
    if score < THRESHOLD or not structural:
        return Notice("", tuple(signals), score)
    return Notice(BOUNCE if BOUNCE in kinds or not kinds else AUTOMATIC, tuple(signals), score)


def failed_recipients(text: str) -> tuple[str, ...]:
    """The addresses a notice's failed-recipients blocks (or Postfix/qmail "<addr>:" lines) name."""
    window = _window(text)
    patterns = _reading()
    cut = patterns.original.search(window)
    if cut:  # the returned original's own addresses are not failures
        window = window[: cut.start()]
    found: list[str] = []
    for header in itertools.islice(patterns.block.finditer(window), _BLOCKS):
        line_end = window.find("\n", header.end())
        lines = [window[header.end(): len(window) if line_end < 0 else line_end],
                 *window[len(window) if line_end < 0 else line_end + 1:].split("\n", _BLOCK_LINES)[:_BLOCK_LINES]]
        for line in lines:
            if _RETURNED_HEADERS.match(line):
                break
            m = _LINE_ADDRESS.match(line.lstrip(" \t:"))
            if m:
                found.append(m.group(1))
    found.extend(m.group(1) for m in _ANGLED_RECIPIENT.finditer(window))
    return tuple(sorted({a for a in (normalise_address(f.strip(".")) for f in found) if a}))


def quoted_message_ids(text: str) -> tuple[str, ...]:
    """The Message-IDs of returned headers quoted in a text ("Message-ID: <…>" at a line's start)."""
    return tuple(dict.fromkeys(m.group(1) for m in _QUOTED_ID.finditer(text[: 16 * SCAN_CHARS])))


# --- helpers -----------------------------------------------------------------------------------
def _local_part(email: str) -> str:
    local = (email or "").rpartition("@")[0].lower()
    return local.partition("+")[0]


def _from_delivery_system(sender: Address) -> bool:
    local = _local_part(sender.email)
    if local in _SYSTEM_LOCAL:
        return True
    if local in _NO_REPLY:
        host = sender.email.rpartition("@")[2].lower()
        if host.partition(".")[0].rstrip("0123456789-") in _GATEWAY_LABELS or host.partition(".")[0] in _GATEWAY_LABELS:
            return True
    name = " ".join((sender.name or "").lower().strip(" \"'").split())[:120]
    return bool(name) and bool(_system_name().match(name))


def _window(text: str) -> str:
    """The text a notice is read in: lower case, its first SCAN_CHARS, up to a forward marker."""
    window = (text or "")[:SCAN_CHARS].lower()
    marker = _reading().forward.search(window)
    return window[: marker.start()] if marker else window


def _attached_original(attachments: Sequence[Part]) -> bool:
    for part in attachments:
        if part.content_type in _EMBEDDED_ORIGINAL:
            return True
        if part.content_type == "text/plain" and part.data:
            head = part.data[:ATTACHED_HEAD].decode("ascii", "replace").lower()
            if _RETURNED_HEADERS.search(head):
                return True
    return False
