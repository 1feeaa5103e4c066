"""Provider webhooks shaped as Amazon SES/SNS, SendGrid and Mailgun document them: signed ones recorded
once, forged ones refused."""

import base64
import datetime
import hashlib
import hmac
import json
import logging
import types

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from sqlalchemy import select

from kesher.accounts.models import Workspace
from kesher.channels import hooks, outbox, providers
from kesher.channels.bounces import bounce_address
from kesher.contacts import service as contacts
from kesher.contacts.models import Suppression
from kesher.events.models import Event
from tests.channels.conftest import CAMPAIGN, SECRET
from tests.problems import problem

CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:kesher-ses"


@pytest.fixture
def client(app):
    with TestClient(app) as c:
        yield c


def events_of(database, contact_id: int, kind: str) -> list[Event]:
    with database.session() as s:
        return list(s.scalars(select(Event).where(Event.contact_id == contact_id, Event.type == kind)))


def suppression(database, workspace, address: str) -> str | None:
    with database.session() as s:
        return s.scalar(select(Suppression.reason).where(Suppression.workspace_id == workspace.id,
                                                         Suppression.address == address))


def set_keys(database, workspace, **keys) -> None:
    with database.session() as s:
        providers.set_webhook_keys(s, s.get_one(Workspace, workspace.id), **keys)


# Amazon SES through SNS ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sns_key():
    """A certificate of our own, standing in for SNS's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture
def fetched(app, sns_key):
    """The URLs the SES route fetched; it gets our certificate instead of SNS's."""
    urls: list[str] = []

    def fetch(url: str) -> bytes:
        urls.append(url)
        return sns_key[1] if url == CERT_URL else b"<ConfirmSubscriptionResponse/>"

    app.dependency_overrides[hooks.sns_fetch] = lambda: fetch
    yield urls
    app.dependency_overrides.clear()


def sns_sign(key, document: dict, version: str = "1") -> dict:
    """Sign as SNS documents it: "name\\nvalue\\n" for each field, in this order, Subject only if present."""
    if document["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    text = "".join(f"{n}\n{document[n]}\n" for n in names if n in document).encode()
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = key.sign(text, padding.PKCS1v15(), digest)
    return {**document, "SignatureVersion": version, "Signature": base64.b64encode(signature).decode(),
            "SigningCertURL": CERT_URL}


def sns_notification(message: dict, message_id: str = "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324") -> dict:
    return {"Type": "Notification", "MessageId": message_id, "TopicArn": TOPIC, "Message": json.dumps(message),
            "Timestamp": "2026-01-27T14:59:38.237Z",
            "UnsubscribeURL": f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC}:1"}


def ses_mail(row) -> dict:
    """SES's `mail` object: `source` is the envelope sender Kesher gave the message (its bounce address)."""
    return {"timestamp": "2026-01-27T14:59:38.237Z", "source": bounce_address(row.id, "teva.co.il", SECRET),
            "sourceArn": "arn:aws:ses:us-east-1:123456789012:identity/teva.co.il", "sourceIp": "127.0.3.0",
            "sendingAccountId": "123456789012", "messageId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa0680-000000",
            "destination": [row.address], "headersTruncated": False,
            "headers": [{"name": "From", "value": "\"Teva\" <shop@teva.co.il>"}, {"name": "To", "value": row.address},
                        {"name": "Subject", "value": "Hello"}],
            "commonHeaders": {"from": ["Teva <shop@teva.co.il>"], "date": "Wed, 27 Jan 2026 14:05:45 +0000",
                              "to": [row.address], "messageId": "<0100018d4c3c@email.amazonses.com>", "subject": "Hello"}}


def ses_bounce(row, bounce_type: str = "Permanent", timestamp: str = "2026-01-27T14:59:38.237Z") -> dict:
    return {"notificationType": "Bounce", "mail": ses_mail(row), "bounce": {
        "bounceType": bounce_type, "bounceSubType": "General", "reportingMTA": "dns; email.example.com",
        "bouncedRecipients": [{"emailAddress": row.address, "status": "5.1.1", "action": "failed",
                               "diagnosticCode": "smtp; 550 5.1.1 <dana@example.com>... User"}],
        "timestamp": timestamp, "remoteMtaIp": "127.0.2.0",
        "feedbackId": "00000138111222aa-33322211-cccc-cccc-cccc-ddddaaaa068a-000000"}}


def ses_complaint(row) -> dict:
    return {"notificationType": "Complaint", "mail": ses_mail(row), "complaint": {
        "userAgent": "AnyCompany Feedback Loop (V0.01)", "complainedRecipients": [{"emailAddress": row.address}],
        "complaintFeedbackType": "abuse", "arrivalDate": "2026-01-27T14:59:38.237Z",
        "timestamp": "2026-01-27T14:59:38.237Z",
        "feedbackId": "000001378603177f-18c07c78-fa81-4a58-9dd1-fedc3cb8f49a-000000"}}


def post_sns(client, workspace, document: dict):
    # SNS posts its JSON as text/plain.
    return client.post(f"/hooks/ses/{workspace.slug}", content=json.dumps(document),
                       headers={"Content-Type": "text/plain; charset=UTF-8", "x-amz-sns-message-type": document["Type"]})


def test_an_ses_bounce_is_recorded_once(client, fetched, sns_key, sent_message, database, workspace):
    row = sent_message()
    document = sns_sign(sns_key[0], sns_notification(ses_bounce(row)))
    first = post_sns(client, workspace, document)
    assert first.status_code == 200, first.text
    assert first.json() == {"outcome": "received", "reports": 1, "recorded": 1, "duplicates": 0, "unmatched": 0}
    assert post_sns(client, workspace, document).json()["duplicates"] == 1  # SNS retries: counted once
    [event] = events_of(database, row.contact_id, "email_bounced")
    assert (event.properties["bounce_type"], event.campaign_id, event.source) == ("hard", str(CAMPAIGN), "ses")
    assert event.ts == datetime.datetime(2026, 1, 27, 14, 59, 38, 237000, tzinfo=datetime.UTC)
    assert suppression(database, workspace, row.address) == "hard_bounce"
    assert fetched == [CERT_URL, CERT_URL]


def test_ses_transient_bounces_and_complaints_signature_version_2(client, fetched, sns_key, sent_message, database,
                                                                  workspace):
    row = sent_message()
    assert post_sns(client, workspace, sns_sign(sns_key[0], sns_notification(ses_bounce(row, "Transient")),
                                                "2")).json()["recorded"] == 1
    assert events_of(database, row.contact_id, "email_bounced")[0].properties["bounce_type"] == "soft"
    assert suppression(database, workspace, row.address) is None
    assert post_sns(client, workspace, sns_sign(sns_key[0], sns_notification(ses_complaint(row), "c-1"),
                                                "2")).json()["recorded"] == 1
    assert suppression(database, workspace, row.address) == "complaint"
    with database.session() as s:
        assert contacts.contact_detail(s, workspace.id, row.contact_id).consent["email"].status == "unsubscribed"


def test_forged_sns_messages_are_refused(client, fetched, sns_key, sent_message, database, workspace):
    row = sent_message()
    signed = sns_sign(sns_key[0], sns_notification(ses_bounce(row)))
    altered = {**signed, "Message": signed["Message"].replace("Permanent", "Transient")}
    problem(post_sns(client, workspace, altered), 401, "Signature")
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    problem(post_sns(client, workspace, sns_sign(other_key, sns_notification(ses_bounce(row)))), 401, "Signature")
    for url in ("http://sns.us-east-1.amazonaws.com/x.pem", "https://evil.s3.amazonaws.com/x.pem",
                "https://sns.us-east-1.amazonaws.com.evil.example/x.pem"):
        problem(post_sns(client, workspace, {**signed, "SigningCertURL": url}), 401, "SigningCertURL")
    problem(post_sns(client, workspace, {**signed, "SignatureVersion": "3"}), 401, "SignatureVersion")
    assert fetched == [CERT_URL, CERT_URL]  # no other address was ever fetched
    assert events_of(database, row.contact_id, "email_bounced") == []
    assert suppression(database, workspace, row.address) is None


def test_a_subscription_is_logged_not_confirmed_unless_the_workspace_says_so(client, fetched, sns_key, database,
                                                                           workspace, caplog):
    subscribe_url = f"https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token=2336"
    document = sns_sign(sns_key[0], {"Type": "SubscriptionConfirmation", "MessageId": "165545c9-2a5c-472c-8df2",
                                     "Token": "2336", "TopicArn": TOPIC, "SubscribeURL": subscribe_url,
                                     "Message": f"You have chosen to subscribe to the topic {TOPIC}.",
                                     "Timestamp": "2026-01-27T14:59:38.237Z"})
    with caplog.at_level(logging.WARNING, logger="kesher.webhooks"):
        assert post_sns(client, workspace, document).json()["outcome"] == "subscription"
    assert subscribe_url in caplog.text
    assert fetched == [CERT_URL]
    set_keys(database, workspace, ses_confirm_subscriptions=True)
    assert post_sns(client, workspace, document).json()["outcome"] == "subscription"
    assert fetched == [CERT_URL, CERT_URL, subscribe_url]


def test_an_unknown_workspace_is_a_404(client, fetched):
    problem(client.post("/hooks/ses/no-such-workspace", content="{}"), 404, "workspace_slug")


# SendGrid --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sendgrid_key():
    return ec.generate_private_key(ec.SECP256R1())


def sendgrid_public(key) -> str:
    """The verification key as SendGrid's settings page shows it: base64 of the DER public key."""
    return base64.b64encode(key.public_key().public_bytes(serialization.Encoding.DER,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo)).decode()


def post_sendgrid(client, workspace, events: list, key, *, body: bytes | None = None, timestamp: str = "1769525978"):
    payload = json.dumps(events).encode() if body is None else body
    signature = key.sign(timestamp.encode() + json.dumps(events).encode(), ec.ECDSA(hashes.SHA256()))
    return client.post(f"/hooks/sendgrid/{workspace.slug}", content=payload, headers={
        "Content-Type": "application/json", providers.SENDGRID_TIMESTAMP: timestamp,
        providers.SENDGRID_SIGNATURE: base64.b64encode(signature).decode()})


def sendgrid_events(row, other_email: str) -> list[dict]:
    common = {"timestamp": 1769525978, "smtp-id": row.message_id, "category": "cat facts",
              "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}
    return [
        {**common, "email": row.address, "event": "processed", "sg_event_id": "rbtnWrG1DVDGGGFHFyun0A=="},
        {**common, "email": row.address, "event": "deferred", "sg_event_id": "t7LEShmowp86DTdUW8M-GQ==",
         "response": "400 try again later", "attempt": "5"},
        {**common, "email": row.address, "event": "bounce", "sg_event_id": "6g4ZI7SA-xmRDv57GoPIPw==",
         "reason": "500 unknown recipient", "status": "5.0.0", "type": "bounce"},
        {**common, "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>", "email": other_email, "event": "spamreport",
         "sg_event_id": "37nvH5QBz858KGVYCM4uOA=="},
    ]


def test_sendgrid_events_are_recorded_once(client, sendgrid_key, sent_message, database, workspace):
    set_keys(database, workspace, sendgrid_public_key=sendgrid_public(sendgrid_key))
    row = sent_message()
    other = sent_message("avi@example.com")  # named only by address: SendGrid's own smtp-id
    events = sendgrid_events(row, other.address)
    first = post_sendgrid(client, workspace, events, sendgrid_key)
    assert first.json() == {"outcome": "received", "reports": 3, "recorded": 3, "duplicates": 0, "unmatched": 0}
    assert post_sendgrid(client, workspace, events, sendgrid_key).json()["duplicates"] == 3
    bounces = events_of(database, row.contact_id, "email_bounced")
    assert sorted(e.properties["bounce_type"] for e in bounces) == ["hard", "soft"]
    assert suppression(database, workspace, row.address) == "hard_bounce"
    assert len(events_of(database, other.contact_id, "email_complained")) == 1
    assert suppression(database, workspace, other.address) == "complaint"


def test_forged_sendgrid_deliveries_are_refused(client, sendgrid_key, sent_message, database, workspace):
    row = sent_message()
    events = sendgrid_events(row, "avi@example.com")
    problem(post_sendgrid(client, workspace, events, sendgrid_key), 401, providers.SENDGRID_SIGNATURE)  # no key set
    set_keys(database, workspace, sendgrid_public_key=sendgrid_public(sendgrid_key))
    tampered = json.dumps(events).replace('"bounce"', '"spamreport"').encode()
    problem(post_sendgrid(client, workspace, events, sendgrid_key, body=tampered), 401, providers.SENDGRID_SIGNATURE)
    problem(post_sendgrid(client, workspace, events, ec.generate_private_key(ec.SECP256R1())), 401,
            providers.SENDGRID_SIGNATURE)
    unsigned = client.post(f"/hooks/sendgrid/{workspace.slug}", json=events)
    problem(unsigned, 401, providers.SENDGRID_SIGNATURE)
    assert events_of(database, row.contact_id, "email_bounced") == []


def test_a_sendgrid_key_that_is_not_one_is_refused(database, workspace):
    from kesher.errors import ValidationError

    with pytest.raises(ValidationError) as error:
        set_keys(database, workspace, sendgrid_public_key="not a key")
    assert error.value.field == "sendgrid_public_key"


# Mailgun ---------------------------------------------------------------------------------------------

MAILGUN_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"


def mailgun_body(event_data: dict, key: str = MAILGUN_KEY, token: str = "a8ce0edb2dd8301dee6c2405235584e45aa91d1e9f979f3de0") -> dict:
    timestamp = "1529006854"
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"signature": {"timestamp": timestamp, "token": token, "signature": signature}, "event-data": event_data}


def mailgun_failed(row, severity: str = "permanent", event_id: str = "G9Bn5sl1TC6nu79C8C0bwg",
                   timestamp: float = 1521233195.375624) -> dict:
    return {"event": "failed", "id": event_id, "timestamp": timestamp, "log-level": "error",
            "severity": severity, "reason": "bounce", "recipient": row.address, "recipient-domain": "example.com",
            "envelope": {"sender": "postmaster@mg.teva.co.il", "transport": "smtp", "targets": row.address},
            "message": {"headers": {"to": f"Dana <{row.address}>", "message-id": row.message_id.strip("<>"),
                                    "from": "Teva <shop@teva.co.il>", "subject": "Test permanent_fail webhook"},
                        "attachments": [], "size": 111},
            "delivery-status": {"attempt-no": 1, "message": "", "code": 550,
                                "description": "550 5.1.1 The email account that you tried to reach does not exist",
                                "session-seconds": 0.2},
            "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
            "tags": ["my_tag_1"], "campaigns": [], "user-variables": {}}


def test_mailgun_failures_and_complaints_are_recorded_once(client, sent_message, database, workspace):
    set_keys(database, workspace, mailgun_signing_key=MAILGUN_KEY)
    row = sent_message()
    temporary = client.post(f"/hooks/mailgun/{workspace.slug}", json=mailgun_body(mailgun_failed(row, "temporary", "t-1")))
    assert temporary.json()["recorded"] == 1
    permanent = mailgun_body(mailgun_failed(row))
    assert client.post(f"/hooks/mailgun/{workspace.slug}", json=permanent).json()["recorded"] == 1
    assert client.post(f"/hooks/mailgun/{workspace.slug}", json=permanent).json()["duplicates"] == 1
    assert sorted(e.properties["bounce_type"] for e in events_of(database, row.contact_id, "email_bounced")) == [
        "hard", "soft"]
    assert suppression(database, workspace, row.address) == "hard_bounce"
    complained = {**mailgun_failed(row, event_id="c-1"), "event": "complained"}
    assert client.post(f"/hooks/mailgun/{workspace.slug}", json=mailgun_body(complained)).json()["recorded"] == 1
    assert len(events_of(database, row.contact_id, "email_complained")) == 1


def test_forged_mailgun_deliveries_are_refused(client, sent_message, database, workspace):
    row = sent_message()
    body = mailgun_body(mailgun_failed(row))
    problem(client.post(f"/hooks/mailgun/{workspace.slug}", json=body), 401, "signature")  # no key set
    set_keys(database, workspace, mailgun_signing_key=MAILGUN_KEY)
    problem(client.post(f"/hooks/mailgun/{workspace.slug}", json=mailgun_body(mailgun_failed(row), key="key-wrong")),
            401, "signature")
    replayed = {**body, "signature": {**body["signature"], "token": "another-token"}}
    problem(client.post(f"/hooks/mailgun/{workspace.slug}", json=replayed), 401, "signature")
    assert events_of(database, row.contact_id, "email_bounced") == []


def test_a_message_of_another_workspace_is_not_touched(client, sent_message, database, workspace, other_workspace):
    set_keys(database, other_workspace, mailgun_signing_key=MAILGUN_KEY)
    row = sent_message()  # in `workspace`; the delivery comes to the other one
    result = client.post(f"/hooks/mailgun/{other_workspace.slug}", json=mailgun_body(mailgun_failed(row))).json()
    assert result["unmatched"] == 1
    assert events_of(database, row.contact_id, "email_bounced") == []
    assert suppression(database, workspace, row.address) is None


# Deliveries ------------------------------------------------------------------------------------------

DELIVERED_AT = datetime.datetime(2026, 2, 1, 9, 30, 12, 546000, tzinfo=datetime.UTC)


def ses_time(at: datetime.datetime) -> str:
    return at.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def ses_delivery(row, at: datetime.datetime, *, event_publishing: bool = False) -> dict:
    """A Delivery notification, or (`event_publishing`) the Delivery record of a configuration set."""
    kind = {"eventType": "Delivery"} if event_publishing else {"notificationType": "Delivery"}
    return {**kind, "mail": ses_mail(row), "delivery": {
        "timestamp": ses_time(at), "processingTimeMillis": 546, "recipients": [row.address],
        "smtpResponse": "250 ok:  Message 64111812 accepted", "reportingMTA": "a8-70.smtp-out.amazonses.com",
        "remoteMtaIp": "127.0.2.0"}}


def sendgrid_delivered(row, event_id: str, at: datetime.datetime) -> dict:
    return {"email": row.address, "timestamp": int(at.timestamp()), "smtp-id": row.message_id, "event": "delivered",
            "category": "cat facts", "sg_event_id": event_id, "response": "250 OK",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0"}


def mailgun_delivered(row, event_id: str, at: datetime.datetime) -> dict:
    return {"event": "delivered", "id": event_id, "timestamp": at.timestamp(), "log-level": "info",
            "recipient": row.address, "recipient-domain": "example.com",
            "envelope": {"sender": "postmaster@mg.teva.co.il", "transport": "smtp", "targets": row.address,
                         "sending-ip": "209.61.154.250"},
            "message": {"headers": {"to": f"Dana <{row.address}>", "message-id": row.message_id.strip("<>"),
                                    "from": "Teva <shop@teva.co.il>", "subject": "Hello"},
                        "attachments": [], "size": 111},
            "delivery-status": {"tls": True, "mx-host": "smtp-in.example.com", "code": 250, "description": "",
                                "session-seconds": 0.43, "utf8": True, "attempt-no": 1, "message": "OK",
                                "certificate-verified": True},
            "flags": {"is-routed": False, "is-authenticated": True, "is-system-test": False, "is-test-mode": False},
            "tags": [], "campaigns": [], "user-variables": {}}


@pytest.fixture(params=providers.PROVIDERS)
def provider(request) -> str:
    return request.param


@pytest.fixture
def post_report(provider, client, fetched, sns_key, sendgrid_key, database, workspace):
    """post(kind, row, at): a soft bounce or a delivery of the message `row` at `at`, signed and posted as
    `provider` does it; answers the route's JSON."""
    set_keys(database, workspace, sendgrid_public_key=sendgrid_public(sendgrid_key), mailgun_signing_key=MAILGUN_KEY)

    def post(kind: str, row, at: datetime.datetime) -> dict:
        event_id = f"{kind}-{row.id}"
        if provider == "ses":
            message = ses_bounce(row, "Transient", ses_time(at)) if kind == "soft" else ses_delivery(row, at)
            response = post_sns(client, workspace, sns_sign(sns_key[0], sns_notification(message, event_id)))
        elif provider == "sendgrid":
            event = sendgrid_delivered(row, event_id, at)
            if kind == "soft":
                event = {**event, "event": "deferred", "response": "400 try again later", "attempt": "5"}
            response = post_sendgrid(client, workspace, [event], sendgrid_key)
        else:
            event = (mailgun_failed(row, "temporary", event_id, at.timestamp()) if kind == "soft"
                     else mailgun_delivered(row, event_id, at))
            response = client.post(f"/hooks/mailgun/{workspace.slug}", json=mailgun_body(event))
        assert response.status_code == 200, response.text
        return response.json()

    return post


def email_consent(database, workspace, contact_id: int) -> str:
    with database.session() as s:
        return contacts.contact_detail(s, workspace.id, contact_id).consent["email"].status


def test_a_delivery_is_recorded_once(provider, post_report, sent_message, database, workspace):
    row = sent_message()
    with database.session() as s:
        contacts.set_consent(s, workspace.id, row.contact_id, "email", "granted", source="signup_form")
    assert post_report("delivered", row, DELIVERED_AT) == {"outcome": "received", "reports": 1, "recorded": 1,
                                                           "duplicates": 0, "unmatched": 0}
    assert post_report("delivered", row, DELIVERED_AT)["duplicates"] == 1  # the provider retries: counted once
    [event] = events_of(database, row.contact_id, "email_delivered")
    assert (event.campaign_id, event.source, event.ts) == (str(CAMPAIGN), provider, DELIVERED_AT.replace(
        microsecond=546000 if provider in ("ses", "mailgun") else 0))
    assert event.properties == {"campaign_id": str(CAMPAIGN), "message_id": row.message_id}
    # A delivery says nothing against the address: no bounce, no suppression, consent as it was.
    assert events_of(database, row.contact_id, "email_bounced") == []
    assert suppression(database, workspace, row.address) is None
    assert email_consent(database, workspace, row.contact_id) == "granted"


def test_a_delivery_breaks_a_run_of_soft_bounces(post_report, sent_message, database, workspace):
    day = datetime.timedelta(days=1)
    first, second, delivered, third, fourth, fifth = (sent_message() for _ in range(6))  # all to one contact
    assert len({first.contact_id, fifth.contact_id}) == 1
    assert post_report("soft", first, DELIVERED_AT)["recorded"] == 1
    assert post_report("soft", second, DELIVERED_AT + day)["recorded"] == 1
    assert post_report("delivered", delivered, DELIVERED_AT + 2 * day)["recorded"] == 1
    assert post_report("soft", third, DELIVERED_AT + 3 * day)["recorded"] == 1
    assert suppression(database, workspace, first.address) is None  # three soft bounces, but not in a row
    post_report("soft", fourth, DELIVERED_AT + 4 * day)
    assert suppression(database, workspace, first.address) is None
    post_report("soft", fifth, DELIVERED_AT + 5 * day)  # the third since the delivery
    assert suppression(database, workspace, first.address) == "soft_bounces"


def test_a_delivery_of_a_message_kesher_did_not_send_records_nothing(post_report, sent_message, database, workspace):
    row = sent_message()
    unknown = types.SimpleNamespace(id=row.id + 1000, address=row.address,
                                    message_id=outbox.message_id(row.id + 1000, "teva.co.il"))
    assert post_report("delivered", unknown, DELIVERED_AT) == {"outcome": "received", "reports": 1, "recorded": 0,
                                                               "duplicates": 0, "unmatched": 1}
    assert events_of(database, row.contact_id, "email_delivered") == []


def test_an_ses_delivery_notified_and_published_as_an_event_counts_once(client, fetched, sns_key, sent_message,
                                                                         database, workspace):
    row = sent_message()
    notified = sns_sign(sns_key[0], sns_notification(ses_delivery(row, DELIVERED_AT), "d-1"))
    published = sns_sign(sns_key[0], sns_notification(ses_delivery(row, DELIVERED_AT, event_publishing=True), "d-2"))
    assert post_sns(client, workspace, notified).json()["recorded"] == 1
    assert post_sns(client, workspace, published).json()["duplicates"] == 1
    assert len(events_of(database, row.contact_id, "email_delivered")) == 1


def test_a_delivery_to_another_workspace_is_not_recorded(client, sent_message, database, workspace, other_workspace):
    set_keys(database, other_workspace, mailgun_signing_key=MAILGUN_KEY)
    row = sent_message()  # in `workspace`; the delivery comes to the other one
    body = mailgun_body(mailgun_delivered(row, "d-1", DELIVERED_AT))
    assert client.post(f"/hooks/mailgun/{other_workspace.slug}", json=body).json()["unmatched"] == 1
    assert events_of(database, row.contact_id, "email_delivered") == []


# Setting the keys ----------------------------------------------------------------------------------------


def test_the_api_sets_the_keys_and_never_answers_them(api, client, sent_message, database, workspace):
    start = api.get("/email-webhooks").json()
    assert (start["mailgun_signing_key_set"], start["sendgrid_public_key_set"]) == (False, False)
    assert start["urls"]["mailgun"] == f"http://testserver/hooks/mailgun/{workspace.slug}"
    assert set(start["urls"]) == {"ses", "sendgrid", "mailgun"}
    row = sent_message()
    body = mailgun_body(mailgun_failed(row))
    problem(client.post(f"/hooks/mailgun/{workspace.slug}", json=body), 401, "signature")

    answer = api.patch("/email-webhooks", json={"mailgun_signing_key": MAILGUN_KEY, "ses_confirm_subscriptions": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["mailgun_signing_key_set"] and answer.json()["ses_confirm_subscriptions"]
    assert MAILGUN_KEY not in answer.text and MAILGUN_KEY not in api.get("/email-webhooks").text
    assert client.post(f"/hooks/mailgun/{workspace.slug}", json=body).json()["recorded"] == 1

    problem(api.patch("/email-webhooks", json={"sendgrid_public_key": "not a key"}), 422, "sendgrid_public_key")
    problem(api.patch("/email-webhooks", json={"ses_confirm_subscriptions": "maybe"}), 422, "ses_confirm_subscriptions")
    kept = api.get("/email-webhooks").json()
    assert kept["mailgun_signing_key_set"] and kept["ses_confirm_subscriptions"]  # a refused change changes nothing

    removed = api.patch("/email-webhooks", json={"mailgun_signing_key": None}).json()
    assert not removed["mailgun_signing_key_set"] and removed["ses_confirm_subscriptions"]
    again = mailgun_body(mailgun_failed(row, event_id="another"))
    problem(client.post(f"/hooks/mailgun/{workspace.slug}", json=again), 401, "signature")
