"""Mail made to order for tests and benchmarks (realistic headers, Hungarian text)."""

from __future__ import annotations

import random
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from datetime import datetime, timedelta, timezone

FIRST = ["József", "Anna", "Gábor", "Eszter", "Ödön", "Tünde", "Péter", "Kata", "Zoltán", "Lilla"]
LAST = ["Kovács", "Nagy", "Tóth", "Szabó", "Horváth", "Varga", "Kiss", "Molnár", "Németh", "Farkas"]
TOPICS = [
    ("Hibás számla érkezett", "A múlt havi számlán kétszer szerepel ugyanaz a tétel."),
    ("Nem működik a Crossec Norma exportja", "Az export gomb megnyomása után hibaüzenet jelenik meg."),
    ("Kérdés a GDPR segédanyagokról", "Szeretném megkérdezni, hogy a sablonok frissültek-e."),
    ("Érdeklődés üzleti tanácsadás iránt", "Árajánlatot kérnénk egy kétnapos workshopra."),
    ("Question about my invoice", "Could you please resend the invoice for October?"),
]


def simple_mail(n: int, *, sender: str | None = None, subject: str | None = None, body: str | None = None,
                in_reply_to: str | None = None, size_hint: int = 0, seed: int | None = None) -> bytes:
    rnd = random.Random(n if seed is None else seed)
    first, last = rnd.choice(FIRST), rnd.choice(LAST)
    topic, text = TOPICS[n % len(TOPICS)]
    message = EmailMessage()
    message["From"] = f"{last} {first} <{sender or f'customer{n}@example.hu'}>"
    message["To"] = "Crossec ügyfélszolgálat <support@crossec.com>"
    message["Subject"] = subject or f"{topic} #{n}"
    message["Date"] = format_datetime(datetime(2026, 11, 2, tzinfo=timezone.utc) + timedelta(minutes=n))
    message["Message-ID"] = make_msgid(idstring=f"m{n}", domain="example.hu")
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    filler = "\n".join(f"{i}. sor: {text}" for i in range(max(0, size_hint // 80)))
    message.set_content(f"Tisztelt Ügyfélszolgálat!\n\n{body or text}\n{filler}\n\nÜdvözlettel:\n{last} {first}\n")
    return bytes(message)
