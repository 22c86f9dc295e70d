"""The reply table over real answers from Gmail, Microsoft 365, Yahoo, Postfix, Exim and the sink."""

from __future__ import annotations

import pytest

from tasks.smtp_replies import Stage, Verdict, classify, enhanced_status

B, D, BL, R, S, OK = Verdict.BOUNCED, Verdict.DEFERRED, Verdict.BLOCKED, Verdict.REJECTED, Verdict.SERVER, Verdict.SENT
RCPT, DATA, MAIL, CONNECT = Stage.RCPT, Stage.DATA, Stage.MAIL, Stage.CONNECT

# (code, text as smtplib joins a multi-line reply, step, verdict): texts as these servers send them
REAL_REPLIES = [
    # Gmail
    (550, "5.1.1 The email account that you tried to reach does not exist. Please try\n5.1.1 double-checking the "
          "recipient's email address for typos or\n5.1.1 unnecessary spaces. Learn more at\n5.1.1 "
          "https://support.google.com/mail/?p=NoSuchUser a1si123 - gsmtp", RCPT, B),
    (550, "5.2.1 The email account that you tried to reach is disabled. Learn more at\n5.2.1 "
          "https://support.google.com/mail/?p=DisabledUser - gsmtp", RCPT, B),
    (452, "4.2.2 The email account that you tried to reach is over quota. Please direct\n4.2.2 the recipient to "
          "https://support.google.com/mail/?p=OverQuotaTemp - gsmtp", RCPT, D),
    (552, "5.2.2 The email account that you tried to reach is over quota and inactive. - gsmtp", RCPT, D),
    (550, "5.7.26 This mail has been blocked because the sender is unauthenticated.\n5.7.26 Gmail requires all "
          "senders to authenticate with either SPF or DKIM. - gsmtp", DATA, BL),
    (550, "5.7.1 [192.0.2.10] Our system has detected that this message is\n5.7.1 likely unsolicited mail. - gsmtp",
     DATA, BL),
    (421, "4.7.0 [192.0.2.10] Our system has detected an unusual rate of\n4.7.0 unsolicited mail originating from "
          "your IP address. - gsmtp", DATA, S),
    (552, "5.3.4 Your message exceeded Google's message size limits. Learn more at\n5.3.4 "
          "https://support.google.com/mail/?p=MaxSizeError - gsmtp", DATA, R),
    (451, "4.3.0 Mail server temporarily rejected message. - gsmtp", DATA, D),
    (250, "2.0.0 OK  1700000000 a1si123 - gsmtp", DATA, OK),
    # Microsoft 365 / Exchange Online
    (550, "5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup", RCPT, B),
    (550, "5.4.1 Recipient address rejected: Access denied. For more information see https://aka.ms/EXOSmtpErrors "
          "[AM4PEPF00000001.eurprd04.prod.outlook.com]", RCPT, B),
    (550, "5.7.1 Service unavailable, Client host [192.0.2.10] blocked using Spamhaus. To request removal from "
          "this list see https://www.spamhaus.org/query/ip/192.0.2.10 (AS3130) [BN8NAM11FT066.eop-nam11.prod.protection"
          ".outlook.com]", RCPT, BL),
    (550, "5.7.606 Access denied, banned sending IP [192.0.2.10]. To request removal from this list please visit "
          "https://sender.office.com/ and follow the directions.", MAIL, S),
    (451, "4.7.500 Server busy. Please try again later from [192.0.2.10]. (S77719)", RCPT, D),
    (554, "5.6.211 Invalid MIME Content: Single text value size (32004) exceeded allowed maximum (32000) for the "
          "'X-Custom' property.", DATA, R),
    (554, "5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException.MapiExceptionShutoffQuotaExceeded",
     DATA, D),
    (550, "5.1.8 Access denied, bad outbound sender.", RCPT, S),
    # Yahoo
    (554, "delivery error: dd This user doesn't have a yahoo.com account (someone@yahoo.com) [0] - "
          "mta1234.mail.ne1.yahoo.com", DATA, B),
    (554, "delivery error: dd Sorry your message to someone@yahoo.com cannot be delivered. This mailbox is "
          "disabled (554.30). - mta1234.mail.ne1.yahoo.com", DATA, B),
    (552, "1 Requested mail action aborted, mailbox not found", RCPT, B),
    (421, "4.7.0 [TSS04] Messages from 192.0.2.10 temporarily deferred due to unexpected volume or user "
          "complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes", CONNECT, S),
    (553, "5.7.2 [TSS09] All messages from 192.0.2.10 will be permanently deferred; Retrying will NOT succeed. "
          "See https://postmaster.yahooinc.com/error-codes", RCPT, BL),
    (554, "5.7.9 Message not accepted for policy reasons.  See https://postmaster.yahooinc.com/error-codes", DATA, BL),
    (451, "Message temporarily deferred - [160]", DATA, D),
    # Postfix
    (550, "5.1.1 <bob@example.com>: Recipient address rejected: User unknown in local recipient table", RCPT, B),
    (450, "4.1.1 <bob@example.com>: Recipient address rejected: User unknown in local recipient table", RCPT, D),
    (554, "5.7.1 <bob@example.com>: Relay access denied", RCPT, BL),
    (552, "5.3.4 Message size exceeds fixed limit", DATA, R),
    (550, "5.1.0 <noreply@tutormax.example>: Sender address rejected: User unknown in local recipient table",
     RCPT, S),
    (554, "5.5.1 Error: no valid recipients", DATA, S),
    (452, "4.3.1 Insufficient system storage", MAIL, D),
    (421, "4.7.0 mx.example.com Error: too many errors", RCPT, S),
    (501, "5.5.2 <bob@>: Recipient address rejected: need fully-qualified address", RCPT, S),
    # Exim, which gives no enhanced codes by default
    (550, "Unrouteable address", RCPT, B),
    (550, "Verification failed for <noreply@tutormax.example>\nUnrouteable address\nSender verify failed", RCPT, S),
    (550, "Administrative prohibition", RCPT, BL),
    (550, "rejected because 192.0.2.10 is in a black list at zen.spamhaus.org", RCPT, BL),
    (552, "Message size exceeds maximum permitted", DATA, R),
    (451, "Temporary local problem - please try later", DATA, D),
    (550, "No such user here", RCPT, B),
    # this project's sink with a broken Maildir, and aiosmtpd's own answers
    (500, "Error: (FileNotFoundError) [Errno 2] No such file or directory: 'var/maildir/tmp/1.M1P2Q3.host'", DATA, S),
    (503, "Error: need RCPT command", DATA, S),
    (554, "Transaction failed", CONNECT, S),
    (554, "Transaction failed", DATA, R),
]


@pytest.mark.parametrize(("code", "text", "stage", "verdict"), REAL_REPLIES,
                         ids=[f"{c}-{t[:40]}" for c, t, _, _ in REAL_REPLIES])
def test_each_real_answer_gets_its_verdict(code, text, stage, verdict):
    reply = classify(code, " ".join(text.split()), stage)
    assert reply.verdict is verdict, reply.rule


def test_only_answers_about_the_address_suppress_it():
    suppressing = {(c, t[:30]) for c, t, s, v in REAL_REPLIES if classify(c, t, s).verdict is B}
    assert all(c >= 550 for c, _ in suppressing)
    # a storage error, a policy block and a refused sender are never the address's fault
    for code, text, stage, verdict in [(500, "Error: (OSError) disk full", DATA, S), (550, "5.7.1 blocked", RCPT, BL),
                                       (550, "5.1.1 <me@ours>: Sender address rejected", MAIL, S)]:
        assert classify(code, text, stage).verdict is verdict


@pytest.mark.parametrize(("code", "text", "status"), [
    (550, "5.1.1 No such user", "5.1.1"), (550, "5.1.10 RESOLVER.ADR.RecipientNotFound", "5.1.10"),
    (451, "4.7.500 Server busy", "4.7.500"), (550, "No such user", None), (250, "2.0.0 OK", "2.0.0"),
    (550, "4.1.1 a class that disagrees with the code", None), (552, "1 Requested mail action aborted", None),
    (550, "5.1.1:not a separate word", None), (550, "05.01.01 leading zeros", None), (550, "5.01.1 leading zero", None),
])
def test_the_enhanced_status_is_read_from_the_head_of_the_text(code, text, status):
    assert enhanced_status(code, text) == status


def test_slow_down_is_421_or_4_7_x():
    assert classify(421, "4.7.0 Try again later, closing connection.", DATA).slow_down
    assert classify(451, "4.7.500 Server busy. Please try again later", RCPT).slow_down
    assert not classify(451, "4.3.0 Mail server temporarily rejected message.", DATA).slow_down
    assert not classify(550, "5.7.1 blocked", RCPT).slow_down


def test_an_undefined_x_0_0_status_falls_back_on_the_code_and_the_words():
    assert classify(550, "5.0.0 <bob@example.com>: User unknown", RCPT).verdict is B
    assert classify(550, "5.0.0 Message rejected", DATA).verdict is R
    assert classify(550, "5.0.0 Blocked by policy", RCPT).verdict is BL
