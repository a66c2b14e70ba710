"""How mail clients introduce the quoted history of a reply, language by language.

Pure data; `mailbridge.intake.quotes` reads a reply with it. A language or a
client is added here, as a row, never as a code branch.

Three kinds of introduction, as the common clients write them:

``ATTRIBUTION_VERBS``  the verb of an attribution line: "On 3 Dec 2024, at 10:12,
                       Anna <anna@example.com> wrote:" (Gmail, Apple Mail,
                       Thunderbird, K-9, Yahoo…). The line must also end with a
                       colon and name a date or an address (see quotes.py), so
                       "my colleague wrote: …" in running text is not one.
``HEADER_FIELDS``      the field names of a header block: "From: … / Sent: … /
                       To: … / Subject: …" (Outlook in every form, GMX/web.de,
                       Freemail). Two different ones on consecutive lines make a
                       block, so a sentence starting "From: our accounting…" is not.
``SEPARATORS``         the words of a separator line: "-----Original Message-----",
                       "-------- Eredeti üzenet --------", "Begin forwarded message:".
"""

from __future__ import annotations

ATTRIBUTION_VERBS: dict[str, tuple[str, ...]] = {
    "en": ("wrote", "writes", "has written", "Quoting"),
    "hu": ("írta", "ezt írta", "írt"),
    "de": ("schrieb", "geschrieben", "hat geschrieben", "schreibt", "Zitat von"),
    "fr": ("a écrit", "écrit", "ecrit", "a ecrit", "Citation de"),
    "es": ("escribió", "escribio", "ha escrito"),
    "it": ("ha scritto", "scritto", "scrisse"),
    "pt": ("escreveu", "escrito"),
    "nl": ("schreef", "het volgende geschreven", "geschreven"),
    "pl": ("napisał", "napisała", "napisał(a)", "pisze", "napisal"),
    "cs": ("napsal", "napsala", "napsal(a)", "napsali", "odeslal", "píše"),
    "ru": ("написал", "написала", "написал(а)", "писал", "писала", "писал(а)", "писали", "пишет"),
    "fi": ("kirjoitti",),
    "sv": ("skrev",),
    "no": ("skrev", "skreiv"),
    "da": ("skrev",),
}

# The first field of a block is any of these; the block needs two different ones.
HEADER_FIELDS: dict[str, tuple[str, ...]] = {
    "en": ("From", "Sent", "To", "Cc", "Bcc", "Subject", "Date", "Reply-To", "Importance"),
    "hu": ("Feladó", "Elküldve", "Küldve", "Címzett", "Címzettek", "Másolat", "Másolatot kap", "Titkos másolat",
           "Tárgy", "Dátum", "Válaszcím", "Feladás dátuma", "Küldés ideje"),
    "de": ("Von", "Gesendet", "An", "Kopie", "Betreff", "Datum", "Antwort an", "Wichtigkeit"),
    "fr": ("De", "Envoyé", "Envoyé le", "À", "A", "Cc", "Cci", "Objet", "Date", "Répondre à"),
    "es": ("De", "Enviado", "Enviado el", "Para", "CC", "CCO", "Asunto", "Fecha", "Responder a"),
    "it": ("Da", "Inviato", "Inviato il", "A", "Cc", "Ccn", "Oggetto", "Data", "Rispondi a"),
    "pt": ("De", "Enviada", "Enviado", "Enviada em", "Enviado em", "Para", "Cc", "Cco", "Assunto", "Data"),
    "nl": ("Van", "Verzonden", "Aan", "CC", "BCC", "Onderwerp", "Datum", "Beantwoorden aan"),
    "pl": ("Od", "Wysłano", "Wysłane", "Do", "DW", "UDW", "Kopia", "Temat", "Data"),
    "cs": ("Od", "Odesláno", "Komu", "Kopie", "Skrytá kopie", "Předmět", "Datum"),
    "ru": ("От", "Отправлено", "Кому", "Копия", "Тема", "Дата"),
    "fi": ("Lähettäjä", "Lähetetty", "Vastaanottaja", "Kopio", "Aihe", "Päivämäärä", "Päiväys"),
    "sv": ("Från", "Skickat", "Skickat den", "Till", "Kopia", "Ämne", "Datum"),
    "no": ("Fra", "Sendt", "Til", "Kopi", "Emne", "Dato"),
    "da": ("Fra", "Sendt", "Til", "Cc", "Emne", "Dato"),
}

# The field that names the sender, which every header block has.
SENDER_FIELDS: tuple[str, ...] = ("From", "Feladó", "Von", "De", "Da", "Van", "Od", "От", "Lähettäjä", "Från", "Fra")

# A block also names when the mail was sent, or an address: "Feladó: Kiss Béla / Címzett:
# raktár / Tárgy: 2 nyomtató" in a customer's own text is about a parcel, not a mail.
DATE_FIELDS: tuple[str, ...] = (
    "Sent", "Date", "Elküldve", "Küldve", "Dátum", "Feladás dátuma", "Küldés ideje", "Gesendet", "Datum",
    "Envoyé", "Envoyé le", "Enviado", "Enviado el", "Fecha", "Inviato", "Inviato il", "Data", "Enviada",
    "Enviada em", "Enviado em", "Verzonden", "Wysłano", "Wysłane", "Odesláno", "Отправлено", "Дата",
    "Lähetetty", "Päivämäärä", "Päiväys", "Skickat", "Skickat den", "Sendt", "Dato",
)

SEPARATORS: dict[str, tuple[str, ...]] = {
    "en": ("Original Message", "Original message", "Forwarded message", "Begin forwarded message",
           "Forwarded Message", "Reply message", "Original Email", "Original Mail"),
    "hu": ("Eredeti üzenet", "Eredeti levél", "Továbbított üzenet", "Továbbított levél", "Eredeti Üzenet"),
    "de": ("Ursprüngliche Nachricht", "Originalnachricht", "Original-Nachricht", "Weitergeleitete Nachricht",
           "Anfang der weitergeleiteten Nachricht", "Ursprüngliche Mitteilung", "Ursprüngliche Mail"),
    "fr": ("Message d'origine", "Message d’origine", "Message original", "Mail original", "Message transféré",
           "Début du message réexpédié", "Début du message transféré"),
    "es": ("Mensaje original", "Mensaje reenviado", "Inicio del mensaje reenviado"),
    "it": ("Messaggio originale", "Messaggio inoltrato", "Inizio messaggio inoltrato"),
    "pt": ("Mensagem original", "Mensagem encaminhada", "Início da mensagem reencaminhada"),
    "nl": ("Oorspronkelijk bericht", "Origineel bericht", "Doorgestuurd bericht", "Begin doorgestuurd bericht"),
    "pl": ("Wiadomość oryginalna", "Oryginalna wiadomość", "Oryginalny e-mail", "Przekazana wiadomość"),
    "cs": ("Původní zpráva", "Původní e-mail", "Přeposlaná zpráva", "Původní zpráva"),
    "ru": ("Исходное сообщение", "Пересылаемое сообщение", "Оригинальное сообщение", "Перенаправленное сообщение"),
    "fi": ("Alkuperäinen viesti", "Välitetty viesti"),
    "sv": ("Ursprungligt meddelande", "Originalmeddelande", "Vidarebefordrat meddelande"),
    "no": ("Opprinnelig melding", "Originalmelding", "Videresendt melding"),
    "da": ("Oprindelig meddelelse", "Original meddelelse", "Videresendt meddelelse", "Oprindelig besked"),
}

# Where the attribution names its author by a date and address alone, with no verb
# (Gmail in Russian: "вт, 3 дек. 2024 г. в 10:12, Анна <anna@example.ru>:"), the
# line ends in the address and a colon; quotes.py matches that shape for every language.
