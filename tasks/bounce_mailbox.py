"""The bounce mailbox: a local Maildir or an IMAP folder; reports come out unread, and go back read, never deleted unread."""

from __future__ import annotations

import imaplib
import os
import re
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tutormax.settings import Settings

PAGE = 500


class MailboxError(ConnectionError):
    """The mailbox cannot be reached or read: a later run tries again."""


class MailboxConfigError(RuntimeError):
    """The mailbox refuses our settings (login, folder): an operator has to fix them."""


@dataclass(frozen=True)
class Fetched:
    key: str    # the Maildir key or the IMAP UID
    raw: bytes


class MaildirBox:
    """Reports in a Maildir (the demo's sink writes them there): unread ones wait in new/, read ones go to cur/."""

    def __init__(self, path: Path) -> None:
        self.new, self.cur = path / "new", path / "cur"
        for sub in (path / "tmp", self.new, self.cur):
            sub.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> MaildirBox:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def pages(self) -> Iterator[list[Fetched]]:
        """Unread reports, a page at a time, in the order their names sort (delivery time first)."""
        names = sorted(name for name in os.listdir(self.new) if not name.startswith("."))
        for start in range(0, len(names), PAGE):
            page = []
            for name in names[start:start + PAGE]:
                try:
                    page.append(Fetched(name, (self.new / name).read_bytes()))
                except FileNotFoundError:
                    pass  # another reader took it meanwhile
            yield page

    def done(self, page: list[Fetched]) -> None:
        """Mark them read, as a mail client does: into cur/ with the S (seen) flag in the name."""
        for fetched in page:
            try:
                os.rename(self.new / fetched.key, self.cur / f"{fetched.key}:2,S")
            except FileNotFoundError:
                pass


class ImapBox:
    """Reports in an IMAP folder: read with BODY.PEEK (fetching marks nothing), then flagged \\Seen or moved."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.imap: imaplib.IMAP4 | None = None

    def __enter__(self) -> ImapBox:
        s = self.settings
        context = ssl.create_default_context(cafile=s.bounce_imap_ca_file or None)
        port = s.bounce_imap_port or (993 if s.bounce_imap_tls == "ssl" else 143)
        try:
            if s.bounce_imap_tls == "ssl":
                imap: imaplib.IMAP4 = imaplib.IMAP4_SSL(s.bounce_imap_host, port, ssl_context=context,
                                                        timeout=s.smtp_timeout)
            else:
                imap = imaplib.IMAP4(s.bounce_imap_host, port, timeout=s.smtp_timeout)
                if s.bounce_imap_tls == "starttls":
                    imap.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise MailboxError(f"cannot reach the bounce mailbox {s.bounce_imap_host}:{port}: "
                               f"{type(exc).__name__}: {exc}") from None
        try:
            imap.login(s.bounce_imap_user, s.bounce_imap_password.get_secret_value())
            status, _ = imap.select(_quoted(s.bounce_imap_folder))
            if status != "OK":
                raise MailboxConfigError(f"the bounce mailbox has no folder {s.bounce_imap_folder!r} "
                                         "(BOUNCE_IMAP_FOLDER)")
            if s.bounce_imap_processed_folder:
                imap.create(_quoted(s.bounce_imap_processed_folder))  # NO when it exists already: fine
        except imaplib.IMAP4.error as exc:
            imap.logout()
            # the server's words name the user at most, never the password
            raise MailboxConfigError(f"the bounce mailbox {s.bounce_imap_host} refused us: {exc}") from None
        self.imap = imap
        return self

    def __exit__(self, *exc) -> None:
        if self.imap is not None:
            try:
                self.imap.logout()
            except (OSError, imaplib.IMAP4.error):
                pass
            self.imap = None

    def _uid(self, *args: str) -> list:
        assert self.imap is not None
        try:
            status, data = self.imap.uid(*args)
        except (OSError, imaplib.IMAP4.abort) as exc:
            raise MailboxError(f"the bounce mailbox dropped us: {type(exc).__name__}: {exc}") from None
        if status != "OK":
            raise MailboxError(f"the bounce mailbox answered {args[0]} with {status}: {data!r}")
        return data

    def pages(self) -> Iterator[list[Fetched]]:
        """Unseen reports, a page at a time, in UID order."""
        uids = [uid.decode() for uid in (self._uid("SEARCH", "UNSEEN")[0] or b"").split()]
        for start in range(0, len(uids), PAGE):
            data = self._uid("FETCH", ",".join(uids[start:start + PAGE]), "(UID BODY.PEEK[])")
            page = []
            for item in data:
                if isinstance(item, tuple):
                    uid = re.search(rb"UID (\d+)", item[0])
                    if uid:
                        page.append(Fetched(uid.group(1).decode(), item[1]))
            yield page

    def done(self, page: list[Fetched]) -> None:
        """Read: moved to BOUNCE_IMAP_PROCESSED_FOLDER when it is set, else flagged \\Seen where it is."""
        if not page:
            return
        uids = ",".join(fetched.key for fetched in page)
        self._uid("STORE", uids, "+FLAGS.SILENT", r"(\Seen)")
        folder = self.settings.bounce_imap_processed_folder
        if not folder:
            return
        assert self.imap is not None
        if "MOVE" in self.imap.capabilities:
            self._uid("MOVE", uids, _quoted(folder))
        else:  # copied first: the original goes only once its copy is there
            self._uid("COPY", uids, _quoted(folder))
            self._uid("STORE", uids, "+FLAGS.SILENT", r"(\Deleted)")
            self.imap.expunge()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def open_mailbox(settings: Settings) -> MaildirBox | ImapBox | None:
    """The configured bounce mailbox (BOUNCE_IMAP_HOST wins over BOUNCE_MAILDIR), or None when there is none."""
    if settings.bounce_imap_host:
        return ImapBox(settings)
    if settings.bounce_maildir:
        return MaildirBox(Path(settings.bounce_maildir))
    return None
