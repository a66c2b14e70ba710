"""The one TOML file, validated on load.

pydantic does the checking: `extra="forbid"` turns an unknown key into an
error and its location names the key, so ops read `imap.port: …` and the
file instead of a traceback. Secrets may come from the environment
(`MAILBRIDGE_IMAP_PASSWORD`, `MAILBRIDGE_SMTP_PASSWORD`) or from `*_file`
keys (systemd credentials), never only from the file.
"""

from __future__ import annotations

import os
import re
import tomllib
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator,
                      model_validator)

from mailbridge.errors import ConfigError
from mailbridge.vocabulary import AREAS, CATEGORIES

ENV_CONFIG = "MAILBRIDGE_CONFIG"
DEFAULT_CONFIG_PATH = Path("/etc/mailbridge/mailbridge.toml")


# Upper bounds keep every duration a date can be moved by (and `inf`, which passes `gt=0`)
# inside what datetime arithmetic and socket timeouts take: a century of days at most.
MAX_DAYS = 36500
MAX_CONFIG_BYTES = 1024 * 1024  # a config is a few kB; /dev/zero is not one


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _credential_path(path: str) -> Path:
    """A `*_file` key's path: relative names resolve in systemd's credentials folder."""
    p = Path(path)
    if not p.is_absolute() and os.environ.get("CREDENTIALS_DIRECTORY"):
        p = Path(os.environ["CREDENTIALS_DIRECTORY"]) / p
    return p


def _read_secret_file(path: str, key: str) -> str:
    """Reads a `*_file` secret (its path already fixed to the credentials folder)."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path!r}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{key}: {path!r} is not UTF-8 text") from None


class LoginSecret:
    """The password of a mail server, read when connecting (`login_password()`), not on load:
    commands that talk to no mail server (`tickets list`, …) need no secret they cannot read.

    password_file beats the environment, which beats the config file itself.
    """

    def _fix_secret(self, env_name: str | None) -> None:
        if self.password_file:  # type: ignore[attr-defined]
            # Fixed to $CREDENTIALS_DIRECTORY now, as systemd sets it for the process that loads.
            self.password_file = str(_credential_path(self.password_file))  # type: ignore[attr-defined]
        elif env_name:
            self.password = os.environ.get(env_name) or self.password  # type: ignore[attr-defined]

    def login_password(self) -> str:
        if self.password_file:  # type: ignore[attr-defined]
            return _read_secret_file(self.password_file, f"{self._section}.password_file")  # type: ignore
        return self.password  # type: ignore[attr-defined]


def _check_oauth(section: "ImapSettings | SmtpSettings") -> None:
    """auth = "xoauth2" takes its token from exactly one of token_command and token_file.

    The token itself is read when connecting (mailbridge/adapters/oauth.py), not here:
    it expires within the hour. A relative token_file is fixed to $CREDENTIALS_DIRECTORY now.
    """
    if section.auth != "xoauth2":
        for key in ("token_command", "token_file"):
            if getattr(section, key):
                raise ValueError(f'{key} is used only with auth = "xoauth2"')
        return
    if bool(section.token_command) == bool(section.token_file):
        raise ValueError('auth = "xoauth2" needs exactly one of token_command and token_file')
    if not section.username:
        raise ValueError('auth = "xoauth2" needs username (the mailbox the token is for)')
    if section.token_file:
        section.token_file = str(_credential_path(section.token_file))


class ImapSettings(LoginSecret, Section):
    _section: str = PrivateAttr("imap")  # the key an unreadable password_file is named by
    host: str = "localhost"
    port: int = Field(993, ge=1, le=65535)
    tls: bool = True
    username: str = ""
    password: str = Field("", repr=False)
    password_file: str | None = None
    auth: Literal["password", "xoauth2"] = "password"
    token_command: str = ""  # auth = "xoauth2": prints the access token (or JSON with it)
    token_file: str = ""  # auth = "xoauth2": holds the access token (or JSON with it)
    folder: str = "INBOX"
    processed_folder: str = "mailbridge/processed"
    quarantine_folder: str = "mailbridge/quarantine"
    poll_interval: float = Field(60, gt=0, le=86400)
    batch_size: int = Field(200, ge=1, le=5000)
    timeout: float = Field(60, gt=0, le=3600)
    # A bigger mail is not fetched: quarantined with the reason, left in the quarantine folder.
    max_message_bytes: int = Field(50 * 1024 * 1024, ge=64 * 1024, le=1024 * 1024 * 1024)
    parse_timeout: float = Field(30, gt=0, le=600)  # seconds one mail may take to read; then quarantined

    @model_validator(mode="after")
    def _secret(self) -> "ImapSettings":
        self._fix_secret("MAILBRIDGE_IMAP_PASSWORD")
        _check_oauth(self)
        return self


class MailboxSettings(ImapSettings):
    """One of several mailboxes (`[[mailboxes]]`): its own IMAP settings and defaults."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    default_category: str | None = None  # e.g. a billing address: every new ticket is billing
    default_area: str | None = None

    @model_validator(mode="after")
    def _secret(self) -> "MailboxSettings":
        # Not MAILBRIDGE_IMAP_PASSWORD: one variable cannot be every mailbox's password.
        self._fix_secret(None)
        self._section = f"mailboxes[{self.name}]"
        _check_oauth(self)
        return self

    @model_validator(mode="after")
    def _defaults_known(self) -> "MailboxSettings":
        if self.default_category is not None and self.default_category not in CATEGORIES:
            raise ValueError(f"unknown category {self.default_category!r} (choices: {', '.join(CATEGORIES)})")
        if self.default_area is not None and self.default_area not in AREAS:
            raise ValueError(f"unknown area {self.default_area!r} (choices: {', '.join(AREAS)})")
        return self


class SmtpSettings(LoginSecret, Section):
    _section: str = PrivateAttr("smtp")
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    tls: bool = False
    username: str = ""
    password: str = Field("", repr=False)
    password_file: str | None = None
    auth: Literal["password", "xoauth2"] = "password"
    token_command: str = ""
    token_file: str = ""
    from_address: str = "support@example.com"
    from_name: str = "Support"
    timeout: float = Field(30, gt=0, le=3600)

    @model_validator(mode="after")
    def _secret(self) -> "SmtpSettings":
        self._fix_secret("MAILBRIDGE_SMTP_PASSWORD")
        if self.tls and self.starttls:
            raise ValueError("tls and starttls are exclusive: tls is SMTPS (port 465), starttls upgrades port 587")
        _check_oauth(self)
        return self


class DatabaseSettings(Section):
    url: str = "sqlite:////var/lib/mailbridge/mailbridge.db"


class StorageSettings(Section):
    path: str = "/var/lib/mailbridge/storage"
    max_attachment_bytes: int = Field(25 * 1024 * 1024, ge=0)


class TicketSettings(Section):
    id_prefix: str = Field("CRX", pattern=r"^[A-Za-z][A-Za-z0-9]{0,15}$")
    reopen_days: int = Field(14, ge=0, le=MAX_DAYS)
    default_language: Literal["hu", "en"] = "hu"
    # Going live on a mailbox that already holds mail: mail our server received before this day
    # (local midnight, policy.timezone) becomes tickets without an acknowledgement.
    acknowledge_since: date | None = None

    @field_validator("acknowledge_since", mode="before")
    @classmethod
    def _iso_date(cls, value: Any) -> Any:
        if value is None or (isinstance(value, date) and not isinstance(value, datetime)):
            return value
        if isinstance(value, str):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise ValueError(f"not an ISO date (YYYY-MM-DD, e.g. 2026-12-01): {value!r}")


class PolicySettings(Section):
    ack_business_days: int = Field(2, ge=0, le=30)
    timezone: str = "Europe/Budapest"
    country: str = "HU"
    # "" acknowledges at once; "08:00-18:00" only then, on working days (local time).
    ack_hours: str = Field("", pattern=r"^$|^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-4]):[0-5]\d$")
    sla_warn_hours: float = Field(4, ge=0, le=24 * 366)  # warn the assignee this long before the deadline

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value


def _areas_known(areas: list[str]) -> list[str]:
    for area in areas:
        if area not in AREAS:
            raise ValueError(f"unknown area {area!r} (choices: {', '.join(AREAS)})")
    return areas


def _email_address(value: str) -> str:
    if "@" not in value:
        raise ValueError(f"not an e-mail address: {value!r}")
    return value.strip().lower()


AreaList = Annotated[list[str], AfterValidator(_areas_known)]
EmailAddress = Annotated[str, AfterValidator(_email_address)]


class Agent(Section):
    name: str
    email: EmailAddress
    areas: AreaList = Field(default_factory=list)
    active: bool = True
    fallback: bool = False  # gets what no active agent covers


class Division(Section):
    name: str
    email: EmailAddress
    areas: AreaList = Field(default_factory=list)


class FormSettings(Section):
    senders: list[str] = Field(default_factory=list)
    labels: dict[str, str] = Field(
        default_factory=lambda: {
            "Vezetéknév": "last_name",
            "Keresztnév": "first_name",
            "E-mail": "email",
            "Kapcsolatfelvétel célja": "category",
            "Érintett termék vagy szolgáltatás": "area",
            "Probléma rövid leírása": "subject",
            "Részletes leírás": "description",
            "Fájl csatolása": "attachment",
        }
    )


class ClassificationRule(Section):
    keywords: list[str]
    category: str | None = None
    area: str | None = None

    @field_validator("category")
    @classmethod
    def _category(cls, value: str | None) -> str | None:
        if value is not None and value not in CATEGORIES:
            raise ValueError(f"unknown category {value!r} (choices: {', '.join(CATEGORIES)})")
        return value

    @field_validator("area")
    @classmethod
    def _area(cls, value: str | None) -> str | None:
        if value is not None and value not in AREAS:
            raise ValueError(f"unknown area {value!r} (choices: {', '.join(AREAS)})")
        return value


class ClassificationSettings(Section):
    # Empty means the built-in Hungarian and English defaults (policy/classify.py).
    rules: list[ClassificationRule] = Field(default_factory=list)


class OutboxSettings(Section):
    max_attempts: int = Field(8, ge=1, le=100)  # then the message is failed and the assignee told
    templates_path: str = ""  # files here shadow the shipped templates (same relative path)
    company_name: str = "Crossec Solutions Kft."
    website: str = "https://crossec.com"

    @field_validator("templates_path")
    @classmethod
    def _templates_folder(cls, value: str) -> str:
        # A folder that is not there would leave every shipped template in use, silently.
        if value and not Path(value).is_dir():
            raise ValueError(f"not a folder: {value!r}")
        return value


class MailRuleSettings(Section):
    """One mail rule (see policy/mail_rules.py): all given conditions must hold."""

    name: str
    sender: list[str] = Field(default_factory=list)
    header: dict[str, str] = Field(default_factory=dict)  # header name -> regex
    subject: str = ""
    body: str = ""
    category: str | None = None
    area: str | None = None
    no_ack: bool = False
    ignore: bool = False

    @model_validator(mode="after")
    def _valid(self) -> "MailRuleSettings":
        from mailbridge.policy.mail_rules import check_rule

        if problem := check_rule(self.as_rule()):
            raise ValueError(problem)
        return self

    def as_rule(self):  # type: ignore[no-untyped-def]
        from mailbridge.policy.mail_rules import MailRule

        return MailRule(self.name, tuple(self.sender), tuple(self.header.items()), self.subject, self.body,
                        self.category, self.area, self.no_ack, self.ignore)


class SpamSettings(Section):
    enabled: bool = True
    flag_header: str = "X-Spam-Flag"
    score_header: str = "X-Spam-Score"
    threshold: float = 5.0


class SecuritySettings(Section):
    trusted_authserv_ids: list[str] = Field(default_factory=list)
    require_agent_auth: bool = True
    max_acks_per_sender_per_day: int = Field(5, ge=0, le=1_000_000)


class RetentionSettings(Section):
    closed_ticket_days: int = Field(0, ge=0, le=MAX_DAYS)  # 0 keeps them forever
    raw_message_days: int = Field(0, ge=0, le=MAX_DAYS)


class MetricsSettings(Section):
    # "127.0.0.1:9464" serves Prometheus metrics there; "" serves none. Loopback only by design.
    listen: str = Field("", pattern=r"^$|^(127\.\d+\.\d+\.\d+|localhost|\[::1\]):\d{1,5}$")


class AlarmSettings(Section):
    # Intake must never fail silently: no successful poll for this long is an alarm.
    poll_stale_minutes: float = Field(15, gt=0, le=60 * 24 * 31)
    ops_address: str = ""  # also mailed when an alarm starts ("" : log and `check` only)


class DeskSettings(Section):
    """The agents' day by mail: the morning digest, the supervisors' Monday report, forwards."""

    # Local time (policy.timezone) of the agents' digest on working days, and of the Monday report.
    digest_time: str = "08:00"
    agent_digest: bool = True  # false: no morning digest (the supervisors' report still goes)
    # Attachments forwarded to an agent with a follow-up, in all; the rest are listed with their sizes.
    forward_attachment_bytes: int = Field(10 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)

    @field_validator("digest_time")
    @classmethod
    def _time_of_day(cls, value: str) -> str:
        if not re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
            raise ValueError(f"not a time of day like 08:00: {value!r}")
        return value


class Supervisor(Section):
    name: str
    email: EmailAddress


class LoggingSettings(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(Section):
    imap: ImapSettings = Field(default_factory=ImapSettings)
    mailboxes: list[MailboxSettings] = Field(default_factory=list)
    smtp: SmtpSettings = Field(default_factory=SmtpSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    tickets: TicketSettings = Field(default_factory=TicketSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    agents: list[Agent] = Field(default_factory=list)
    divisions: list[Division] = Field(default_factory=list)
    forms: FormSettings = Field(default_factory=FormSettings)
    classification: ClassificationSettings = Field(default_factory=ClassificationSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    mail_rules: list[MailRuleSettings] = Field(default_factory=list)
    spam: SpamSettings = Field(default_factory=SpamSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    alarm: AlarmSettings = Field(default_factory=AlarmSettings)
    desk: DeskSettings = Field(default_factory=DeskSettings)
    supervisors: list[Supervisor] = Field(default_factory=list)

    @property
    def intake_mailboxes(self) -> list[MailboxSettings]:
        """The mailboxes to take mail in from: `[[mailboxes]]`, or `[imap]` alone as "default"."""
        if self.mailboxes:
            return list(self.mailboxes)
        default = MailboxSettings(name="default", **self.imap.model_dump())
        default._section = "imap"
        return [default]

    @property
    def own_addresses(self) -> frozenset[str]:
        """Addresses that are ours: mail from them is never a customer's."""
        own = {self.smtp.from_address.lower()}
        for box in (self.imap, *self.mailboxes):
            if "@" in box.username:
                own.add(box.username.lower())
        return frozenset(own)

    @model_validator(mode="after")
    def _unique_mailboxes(self) -> "Settings":
        names = [m.name for m in self.mailboxes]
        if len(names) != len(set(names)):
            raise ValueError("mailboxes: two mailboxes have the same name")
        return self

    @property
    def agent_addresses(self) -> frozenset[str]:
        return frozenset(a.email for a in self.agents)

    @property
    def division_addresses(self) -> frozenset[str]:
        return frozenset(d.email for d in self.divisions)


def _describe(error: dict[str, Any]) -> str:
    location = ""
    for part in error["loc"]:
        location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    message = message.removeprefix("Value error, ")
    return f"{location}: {message}" if location else message


def settings_from_dict(raw: dict[str, Any], source: str = "<config>") -> Settings:
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        suffix = f" (and {more} more)" if more else ""
        raise ConfigError(f"{source}: {_describe(first)}{suffix}") from None


def config_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get(ENV_CONFIG):
        return Path(os.environ[ENV_CONFIG])
    return DEFAULT_CONFIG_PATH


def load_settings(path: Path) -> Settings:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (give --config PATH or set {ENV_CONFIG})") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: not a config file: larger than {MAX_CONFIG_BYTES // 1024} kB")
    try:
        # utf-8-sig: Windows editors put a byte-order mark in front of UTF-8; TOML has no use for it.
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                          "TOML files are UTF-8") from None
    try:
        return settings_from_dict(tomllib.loads(text), str(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except RecursionError:  # tomllib (and validation) recurse once per level of nesting
        raise ConfigError(f"{path}: not valid TOML: arrays or tables nested too deeply") from None
