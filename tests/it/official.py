"""Signs and verifies webhook requests with the providers' official Python libraries, for
tests/it/providers.rs. Installed by scripts/install-test-deps.sh.

    official.py sign PROVIDER SECRET URL CONTENT_TYPE     < body   -> {"url": ..., "headers": {...}}
    official.py verify PROVIDER SECRET URL HEADERS_JSON   < body   -> exit 0 if the library accepts

URL is the full URL the provider calls (Twilio signs it). Exit 3: a library is missing.
GitHub and Shopify publish no Python library: their documented Python snippets are used.
Square, SendGrid and Discord's libraries only verify: the request is signed as their documentation
says (Ed25519 and ECDSA with `cryptography`/PyNaCl, keys fixed below) and their library must accept it
before it is returned.
"""

import base64
import hashlib
import hmac
import json
import sys
import time
import uuid
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlsplit

MISSING = 3


def need(module):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as e:
        print(f"missing Python package for {module} ({e}): run scripts/install-test-deps.sh", file=sys.stderr)
        sys.exit(MISSING)


class FormParams(dict):
    """Form parameters as Flask's MultiDict: a repeated name keeps every value (the Twilio
    validator reads them with getall)."""

    def __init__(self, pairs):
        super().__init__(pairs)
        self.values_of = {}
        for name, value in pairs:
            self.values_of.setdefault(name, []).append(value)

    def getall(self, name):
        return self.values_of[name]


def form_params(content_type, body):
    if content_type.split(";")[0].strip().lower() == "application/x-www-form-urlencoded":
        return FormParams(parse_qsl(body, keep_blank_values=True))
    return None


# Discord: RFC 8032 TEST 1's key pair. SendGrid: the P-256 key with private scalar 7.
DISCORD_SECRET_KEY = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
DISCORD_PUBLIC_KEY = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
SENDGRID_PUBLIC_KEY = ("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjlM7b6C/e0YluzBmfAH7YH75+LioD+9bMAYocDGHsqNz6x294DMYNm0G"
                       "n4Om9ZAAU8c2M8sEGyHFXhqGwfQAtA==")
SVIX = ("svix", "clerk", "resend")


def must(ok, what):
    if not ok:
        raise SystemExit(f"the official library refused the request signed for {what}")


def sign(provider, secret, url, content_type, body):
    if provider in SVIX:
        Webhook = need("svix.webhooks").Webhook
        msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(tz=timezone.utc)
        sig = Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body)
        return url, {"svix-id": msg_id, "svix-timestamp": str(int(now.timestamp())), "svix-signature": sig}
    if provider == "hubspot":
        Signature = need("hubspot.utils.signature").Signature
        ts = str(int(time.time() * 1000))
        sig = Signature.get_signature(secret, body, "v3", http_uri=url, http_method="POST", timestamp=ts)
        return url, {"X-HubSpot-Signature-v3": sig, "X-HubSpot-Request-Timestamp": ts}
    if provider == "paddle":
        PaddleSignature = need("paddle_billing.Notifications").PaddleSignature
        ts = str(int(time.time()))
        h1 = PaddleSignature.calculate_hmac(secret, f"{ts}:{body}".encode()).hexdigest()
        headers = {"Paddle-Signature": f"ts={ts};h1={h1}"}
        must(verify("paddle", secret, url, headers, body), "paddle")
        return url, headers
    if provider == "square":
        # https://developer.squareup.com/docs/webhooks/step3validate: base64 HMAC-SHA256 of URL + body.
        sig = base64.b64encode(hmac.new(secret.encode(), (url + body).encode(), hashlib.sha256).digest()).decode()
        headers = {"X-Square-HmacSha256-Signature": sig}
        must(verify("square", secret, url, headers, body), "square")
        return url, headers
    if provider == "discord":
        SigningKey = need("nacl.signing").SigningKey
        verify_key = need("discord_interactions").verify_key
        ts = str(int(time.time()))
        sig = SigningKey(bytes.fromhex(DISCORD_SECRET_KEY)).sign((ts + body).encode()).signature.hex()
        must(verify_key(body.encode(), sig, ts, DISCORD_PUBLIC_KEY), "discord")
        return url, {"X-Signature-Ed25519": sig, "X-Signature-Timestamp": ts}
    if provider == "sendgrid":
        ec = need("cryptography.hazmat.primitives.asymmetric.ec")
        hashes = need("cryptography.hazmat.primitives.hashes")
        EventWebhook = need("sendgrid.helpers.eventwebhook").EventWebhook
        ts = str(int(time.time()))
        der = ec.derive_private_key(7, ec.SECP256R1()).sign((ts + body).encode(), ec.ECDSA(hashes.SHA256()))
        sig = base64.b64encode(der).decode()
        hook = EventWebhook()
        must(hook.verify_signature(body, sig, ts, hook.convert_public_key_to_ecdsa(SENDGRID_PUBLIC_KEY)), "sendgrid")
        return url, {"X-Twilio-Email-Event-Webhook-Signature": sig, "X-Twilio-Email-Event-Webhook-Timestamp": ts}
    if provider == "stripe":
        stripe = need("stripe")
        return url, {"Stripe-Signature": stripe.WebhookSignature.generate_signature_header(body, secret)}
    if provider == "slack":
        SignatureVerifier = need("slack_sdk.signature").SignatureVerifier
        ts = str(int(time.time()))
        sig = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body)
        return url, {"X-Slack-Signature": sig, "X-Slack-Request-Timestamp": ts}
    if provider == "standard-webhooks":
        Webhook = need("standardwebhooks.webhooks").Webhook
        msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(tz=timezone.utc)
        sig = Webhook(secret).sign(msg_id=msg_id, timestamp=now, data=body)
        return url, {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())), "webhook-signature": sig}
    if provider == "twilio":
        RequestValidator = need("twilio.request_validator").RequestValidator
        validator = RequestValidator(secret)
        params = form_params(content_type, body)
        if params is None:  # JSON: the body's hash goes in the URL and only the URL is signed
            url += ("&" if "?" in url else "?") + "bodySHA256=" + validator.compute_hash(body)
            params = {}
        headers = {
            "X-Twilio-Signature": validator.compute_signature(url, params),
            "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
        }
        return url, headers
    if provider == "github":
        # https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries (Python example)
        digest = hmac.new(secret.encode("utf-8"), msg=body.encode("utf-8"), digestmod=hashlib.sha256).hexdigest()
        return url, {"X-Hub-Signature-256": "sha256=" + digest, "X-GitHub-Delivery": str(uuid.uuid4())}
    if provider == "shopify":
        # https://shopify.dev/docs/apps/build/webhooks/subscribe/https (verify_webhook, Python)
        digest = hmac.new(secret.encode("utf-8"), body.encode("utf-8"), hashlib.sha256).digest()
        return url, {"X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(), "X-Shopify-Webhook-Id": str(uuid.uuid4())}
    raise SystemExit(f"unknown provider {provider}")


class PaddleRequest:
    """What paddle_billing's Verifier reads of a request: headers and the raw body."""

    def __init__(self, headers, body):
        self.headers = headers
        self.body = body.encode()


def verify(provider, secret, url, headers, body):
    h = {k.lower(): v for k, v in headers.items()}
    if provider in SVIX:
        Webhook = need("svix.webhooks").Webhook
        Webhook(secret).verify(body, h)
        return True
    if provider == "hubspot":
        Signature = need("hubspot.utils.signature").Signature
        return Signature.is_valid(signature=h["x-hubspot-signature-v3"], client_secret=secret, request_body=body,
                                  http_uri=url, http_method="POST", signature_version="v3",
                                  timestamp=h["x-hubspot-request-timestamp"])
    if provider == "paddle":
        n = need("paddle_billing.Notifications")
        # 300 s, as for Stripe: the SDK's default of 5 s fails when a loaded machine starts Python slowly.
        return n.Verifier(maximum_variance=300).verify(PaddleRequest({"Paddle-Signature": h["paddle-signature"]}, body), n.Secret(secret))
    if provider == "square":
        verify_signature = need("square.utils.webhooks_helper").verify_signature
        return verify_signature(request_body=body, signature_header=h["x-square-hmacsha256-signature"],
                                signature_key=secret, notification_url=url)
    if provider == "stripe":
        stripe = need("stripe")
        stripe.Webhook.construct_event(body, h["stripe-signature"], secret, tolerance=300)
        return True
    if provider == "slack":
        SignatureVerifier = need("slack_sdk.signature").SignatureVerifier
        return SignatureVerifier(secret).is_valid(body, h.get("x-slack-request-timestamp"), h.get("x-slack-signature"))
    if provider == "standard-webhooks":
        Webhook = need("standardwebhooks.webhooks").Webhook
        Webhook(secret).verify(body, h, json_parse=False)
        return True
    if provider == "twilio":
        RequestValidator = need("twilio.request_validator").RequestValidator
        params = form_params(h.get("content-type", ""), body)
        return RequestValidator(secret).validate(url, body if params is None else params, h["x-twilio-signature"])
    if provider in ("github", "shopify"):
        _, want = sign(provider, secret, url, "", body)
        name = "X-Hub-Signature-256" if provider == "github" else "X-Shopify-Hmac-Sha256"
        return hmac.compare_digest(want[name], h[name.lower()])
    raise SystemExit(f"unknown provider {provider}")


def main():
    cmd, provider, secret, url, extra = sys.argv[1:6]
    body = sys.stdin.buffer.read().decode("utf-8")
    if cmd == "sign":
        url, headers = sign(provider, secret, url, extra, body)
        print(json.dumps({"url": url, "headers": headers}))
    elif cmd == "verify":
        ok = verify(provider, secret, url, json.loads(extra), body)
        sys.exit(0 if ok else 1)
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
