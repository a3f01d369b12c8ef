"""Our Standard Webhooks signatures, checked by the independent `standardwebhooks` package."""

from __future__ import annotations

import base64
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from server.triggers.signing import headers, is_secret, new_secret, signature

BODY = b'{"type":"lead.created","data":{"id":"lead_1"}}'
MSG_ID = "msg_2x5b8Qk0"


def now() -> int:
    # The verifier refuses timestamps more than five minutes from its clock.
    return int(time.time())


def secret_of(size: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(size))).decode()


def test_a_new_secret_is_well_formed_and_random() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and is_secret(first)
    assert len(base64.b64decode(first.removeprefix("whsec_"))) == 32
    assert first != second


def test_the_independent_verifier_accepts_our_headers() -> None:
    secret = new_secret()
    sent = headers([secret], MSG_ID, now(), BODY)
    assert Webhook(secret).verify(BODY, sent) == {"type": "lead.created", "data": {"id": "lead_1"}}
    assert sent["content-type"] == "application/json"
    assert sent["webhook-id"] == MSG_ID
    assert sent["webhook-signature"].startswith("v1,")


def test_the_spec_example_signs_as_published() -> None:
    # The example of the Standard Webhooks specification.
    signed = signature(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signed == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


@pytest.mark.parametrize("part", ["body", "timestamp", "id"])
def test_a_tampered_message_is_refused(part: str) -> None:
    secret = new_secret()
    sent = headers([secret], MSG_ID, now(), BODY)
    body = BODY
    if part == "body":
        body = BODY.replace(b"lead_1", b"lead_2")
    elif part == "timestamp":
        sent["webhook-timestamp"] = str(int(sent["webhook-timestamp"]) - 1)
    else:
        sent["webhook-id"] = "msg_other"
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body, sent)


def test_another_secret_is_refused() -> None:
    sent = headers([new_secret()], MSG_ID, now(), BODY)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(BODY, sent)


def test_each_of_two_secrets_verifies_alone_during_rotation() -> None:
    old, new = new_secret(), new_secret()
    sent = headers([old, new], MSG_ID, now(), BODY)
    signatures = sent["webhook-signature"].split(" ")
    assert signatures == [
        signature(old, MSG_ID, int(sent["webhook-timestamp"]), BODY),
        signature(new, MSG_ID, int(sent["webhook-timestamp"]), BODY),
    ]
    Webhook(old).verify(BODY, sent)
    Webhook(new).verify(BODY, sent)


def test_signing_without_a_secret_is_refused() -> None:
    with pytest.raises(ValueError):
        headers([], MSG_ID, now(), BODY)


def test_signatures_are_deterministic() -> None:
    secret, at = new_secret(), now()
    assert signature(secret, MSG_ID, at, BODY) == signature(secret, MSG_ID, at, BODY)
    assert headers([secret], MSG_ID, at, BODY) == headers([secret], MSG_ID, at, BODY)
    assert signature(secret, MSG_ID, at, BODY) != signature(secret, MSG_ID, at + 1, BODY)


@pytest.mark.parametrize("size", [24, 32, 64])
def test_keys_of_24_to_64_bytes_are_secrets(size: int) -> None:
    secret = secret_of(size)
    assert is_secret(secret)
    sent = headers([secret], MSG_ID, now(), BODY)
    Webhook(secret).verify(BODY, sent)


def test_a_secret_without_its_base64_padding_signs_the_same() -> None:
    secret = new_secret()
    assert secret.endswith("=")
    unpadded = secret.rstrip("=")
    assert is_secret(unpadded)
    at = now()
    assert signature(unpadded, MSG_ID, at, BODY) == signature(secret, MSG_ID, at, BODY)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "whsec_",
        "whsec",
        new_secret().removeprefix("whsec_"),  # no prefix
        "WHSEC_" + new_secret().removeprefix("whsec_"),
        "whsk_" + new_secret().removeprefix("whsec_"),
        secret_of(23),  # too short a key
        secret_of(65),  # too long a key
        new_secret() + "=",  # wrong padding
        new_secret()[:-2] + "!=",  # not base64
        new_secret()[:-2] + "-_",  # URL-safe alphabet
        new_secret() + " ",
        " " + new_secret(),
        "whsec_" + "A" * 41,  # a length base64 cannot have
    ],
)
def test_a_secret_of_the_wrong_form_is_refused(text: str) -> None:
    assert not is_secret(text)
    with pytest.raises(ValueError):
        signature(text, MSG_ID, now(), BODY)


@settings(max_examples=50, deadline=None)
@given(
    body=st.binary(max_size=512),
    msg_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
)
def test_any_body_and_id_verify(body: bytes, msg_id: str) -> None:
    secret = new_secret()
    Webhook(secret).verify(body, headers([secret], msg_id, now(), body), json_parse=False)
