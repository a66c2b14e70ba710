"""Self-tests of the test-server fixtures (tests/servers.py)."""

from __future__ import annotations

import smtplib
import time
from email.message import EmailMessage

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from servers import Mailbox


def make_raw(i: int, subject: str | None = None, size: int = 0) -> bytes:
    body = b"x" * size + b"\r\n"
    return (b"From: Customer <customer%d@example.com>\r\n"
            b"To: support@example.com\r\n"
            b"Subject: %s\r\n"
            b"Message-ID: <msg-%d@example.com>\r\n"
            b"\r\n" % (i, (subject or f"message {i}").encode(), i)) + body


@pytest.fixture(params=["dovecot", "pymap"])
def any_mailbox(request) -> Mailbox:
    """The same checks against both IMAP servers."""
    return request.getfixturevalue("mailbox" if request.param == "dovecot"
                                   else "pymap_mailbox")


# --------------------------------------------------------------------------
# Both servers
# --------------------------------------------------------------------------

def test_fresh_mailbox_is_empty(any_mailbox):
    assert any_mailbox.count() == 0
    assert any_mailbox.uids() == []
    assert any_mailbox.messages() == []
    assert any_mailbox.folders() == ["INBOX"]


def test_deliver_then_read_back(any_mailbox):
    raw1, raw2 = make_raw(1), make_raw(2, "Árvíztűrő tükörfúrógép")  # 8-bit header
    uid1 = any_mailbox.deliver(raw1)
    uid2 = any_mailbox.deliver(raw2)
    assert any_mailbox.uids() == [uid1, uid2]
    assert any_mailbox.messages() == [raw1, raw2]  # byte for byte
    # BODY.PEEK: reading did not mark anything \Seen
    assert all(b"\\Seen" not in f for f in any_mailbox.flags().values())


def test_deliver_to_new_folder_with_flags(any_mailbox):
    uid = any_mailbox.deliver(make_raw(1), folder="Processed/2024", flags=[b"\\Seen"])
    assert "Processed/2024" in any_mailbox.folders()
    assert any_mailbox.uids("Processed/2024") == [uid]
    assert b"\\Seen" in any_mailbox.flags("Processed/2024")[uid]
    assert any_mailbox.count() == 0


def test_deliver_many(any_mailbox):
    raws = [make_raw(i, size=200) for i in range(300)]
    uids = any_mailbox.deliver_many(raws)
    assert len(uids) == 300
    assert any_mailbox.uids() == uids
    assert any_mailbox.messages() == raws


def test_set_flags_as_another_client(any_mailbox):
    uids = any_mailbox.deliver_many([make_raw(i) for i in range(3)])
    any_mailbox.set_flags(uids[:1], [b"\\Seen"])
    any_mailbox.set_flags(uids[1:2], [b"\\Deleted"])
    flags = any_mailbox.flags()
    assert b"\\Seen" in flags[uids[0]]
    assert b"\\Deleted" in flags[uids[1]]
    assert not {b"\\Seen", b"\\Deleted"} & set(flags[uids[2]])
    any_mailbox.expunge()
    assert any_mailbox.uids() == [uids[0], uids[2]]


def test_mailboxes_are_isolated(any_mailbox):
    any_mailbox.deliver(make_raw(1))
    other = any_mailbox.server.new_mailbox()
    assert other.username != any_mailbox.username
    assert other.count() == 0


def test_wrong_password_is_rejected(any_mailbox):
    bad = Mailbox(any_mailbox.host, any_mailbox.port, any_mailbox.username, "wrong")
    start = time.monotonic()
    with pytest.raises(LoginError):
        with bad.client():
            pass
    assert time.monotonic() - start < 2  # no auth failure delay in tests


def test_uid_move_and_uid_expunge(any_mailbox):
    uids = any_mailbox.deliver_many([make_raw(i) for i in range(4)])
    any_mailbox.deliver(make_raw(99), folder="Done")  # create target
    with any_mailbox.client() as c:
        caps = c.capabilities()
        assert {b"IDLE", b"MOVE", b"UIDPLUS"} <= set(caps)
        c.select_folder("INBOX")
        c.move(uids[:2], "Done")
        c.add_flags(uids[2:], [b"\\Deleted"])
        c.uid_expunge(uids[2:3])  # only this one goes
        assert c.search(["ALL"]) == [uids[3]]
    assert any_mailbox.count("Done") == 3
    assert any_mailbox.messages("Done")[1:] == [make_raw(0), make_raw(1)]


def test_idle_sees_new_mail(mailbox):
    # Dovecot only: pymap sometimes sends an untagged "(FLAGS (\Recent))" in IDLE
    # that imaplib cannot parse, which made this flaky on pymap.
    with mailbox.client() as c:
        c.select_folder("INBOX")
        c.idle()
        try:
            mailbox.deliver(make_raw(1))
            responses = c.idle_check(timeout=5)
        finally:
            c.idle_done()
    assert (1, b"EXISTS") in responses


# --------------------------------------------------------------------------
# Dovecot only
# --------------------------------------------------------------------------

def test_imap_settings(mailbox, dovecot_server):
    s = mailbox.imap_settings()
    assert s == {"host": "127.0.0.1", "port": dovecot_server.port, "tls": False,
                 "username": mailbox.username, "password": "secret"}
    c = IMAPClient(s["host"], s["port"], ssl=s["tls"])
    c.login(s["username"], s["password"])
    c.logout()


def test_reset_uidvalidity_keeps_messages(mailbox):
    raws = [make_raw(i) for i in range(5)]
    mailbox.deliver_many(raws)
    mailbox.set_flags(mailbox.uids()[1:2], [b"\\Deleted"])
    mailbox.expunge()  # UIDs now 1,3,4,5
    del raws[1]
    old = mailbox.uidvalidity()
    assert mailbox.uids() == [1, 3, 4, 5]

    new = mailbox.reset_uidvalidity()

    assert new != old and mailbox.uidvalidity() == new
    assert mailbox.uids() == [1, 2, 3, 4]  # renumbered from 1
    assert mailbox.messages() == raws       # same mail, same order
    assert mailbox.uidnext() == 5


def test_reset_uidvalidity_of_subfolder(mailbox):
    mailbox.deliver(make_raw(1), folder="Archive/Old")
    mailbox.deliver(make_raw(2))
    inbox_validity = mailbox.uidvalidity()
    old = mailbox.uidvalidity("Archive/Old")
    assert mailbox.reset_uidvalidity("Archive/Old") != old
    assert mailbox.messages("Archive/Old") == [make_raw(1)]
    assert mailbox.uidvalidity() == inbox_validity  # INBOX untouched


def test_reset_uidvalidity_drops_open_sessions(mailbox):
    mailbox.deliver(make_raw(1))
    with mailbox.client() as c:
        old = c.select_folder("INBOX")[b"UIDVALIDITY"]
        new = mailbox.reset_uidvalidity()
        with pytest.raises((IMAPClient.AbortError, OSError)):
            c.noop()
    with mailbox.client() as c:  # reconnecting client sees the change
        assert c.select_folder("INBOX")[b"UIDVALIDITY"] == new != old


def test_kick_only_drops_that_user(mailbox, dovecot_server):
    other = dovecot_server.new_mailbox()
    with mailbox.client() as c, other.client() as oc:
        c.select_folder("INBOX")
        oc.select_folder("INBOX")
        assert mailbox.kick() == 1
        with pytest.raises((IMAPClient.AbortError, OSError)):
            c.noop()
        oc.noop()


def test_restart_keeps_mail_and_drops_clients(mailbox, dovecot_server):
    raws = [make_raw(i) for i in range(3)]
    mailbox.deliver_many(raws)
    validity = mailbox.uidvalidity()
    port = dovecot_server.port
    with mailbox.client() as c:
        c.select_folder("INBOX")
        dovecot_server.restart()
        with pytest.raises((IMAPClient.AbortError, OSError)):
            c.noop()
    assert dovecot_server.port == port
    assert mailbox.messages() == raws
    assert mailbox.uidvalidity() == validity
    assert mailbox.uids() == [1, 2, 3]


def test_kill_then_start_keeps_mail(mailbox, dovecot_server):
    mailbox.deliver(make_raw(1))
    dovecot_server.kill()
    assert not dovecot_server.running
    with pytest.raises(OSError):
        with mailbox.client(timeout=2):
            pass
    dovecot_server.start()
    assert mailbox.messages() == [make_raw(1)]


# --------------------------------------------------------------------------
# pymap only
# --------------------------------------------------------------------------

def test_pymap_facts(pymap_mailbox):
    """Documented quirks: UIDs start at 101; no UIDVALIDITY reset."""
    assert pymap_mailbox.deliver(make_raw(1)) == 101
    with pytest.raises(NotImplementedError):
        pymap_mailbox.reset_uidvalidity()
    with pymap_mailbox.client() as c:
        assert b"STARTTLS" not in c.capabilities()


# --------------------------------------------------------------------------
# SMTP sink
# --------------------------------------------------------------------------

def _email(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "mailbridge@example.com"
    msg["To"] = "customer@example.com"
    msg["Subject"] = f"Ticket #{n}: Jegy érkezett"
    msg.set_content("Köszönjük, megkaptuk.\n")
    return msg


def test_smtp_sink_receives(smtp_sink):
    s = smtp_sink.settings()
    assert s == {"host": "127.0.0.1", "port": smtp_sink.port, "starttls": False,
                 "tls": False, "username": None, "password": None}
    with smtplib.SMTP(s["host"], s["port"], timeout=5) as smtp:
        smtp.send_message(_email(1), to_addrs=["customer@example.com", "cc@example.com"])
    [msg] = smtp_sink.wait_for(1)
    assert msg["Subject"] == "Ticket #1: Jegy érkezett"
    assert msg.get_content() == "Köszönjük, megkaptuk.\n"
    [env] = smtp_sink.envelopes
    assert env.mail_from == "mailbridge@example.com"
    assert env.rcpt_tos == ["customer@example.com", "cc@example.com"]
    assert b"Subject: Ticket #1" in env.raw
    smtp_sink.clear()
    assert smtp_sink.messages == [] and smtp_sink.envelopes == []


def test_smtp_sink_refuse_next(smtp_sink):
    smtp_sink.refuse_next()
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as exc:
            smtp.send_message(_email(1))
        assert exc.value.smtp_code == 451
        assert exc.value.smtp_error == b"Try again later"
        smtp.send_message(_email(2))  # retry on the same connection succeeds
    assert [m["Subject"] for m in smtp_sink.wait_for(1)] == ["Ticket #2: Jegy érkezett"]
    assert smtp_sink.refused == 1


def test_smtp_sink_refuse_permanent(smtp_sink):
    smtp_sink.refuse_next(2, code=554, text="Rejected")
    for _ in range(2):
        with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as smtp:
            with pytest.raises(smtplib.SMTPResponseException) as exc:
                smtp.send_message(_email(1))
            assert exc.value.smtp_code == 554
    with smtplib.SMTP(smtp_sink.host, smtp_sink.port, timeout=5) as smtp:
        smtp.send_message(_email(3))
    assert len(smtp_sink.wait_for(1)) == 1


def test_smtp_sink_wait_for_times_out(smtp_sink):
    with pytest.raises(TimeoutError):
        smtp_sink.wait_for(1, timeout=0.1)
