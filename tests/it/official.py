"""Signs and verifies webhook requests with the providers' official Python libraries, for
tests/it/providers.rs. Installed by scripts/install-test-deps.sh.

    official.py sign PROVIDER SECRET URL CONTENT_TYPE     < body   -> {"url": ..., "headers": {...}}
    official.py verify PROVIDER SECRET URL HEADERS_JSON   < body   -> exit 0 if the library accepts

URL is the full URL the provider calls (Twilio signs it). Exit 3: a library is missing.
GitHub and Shopify publish no Python library: their documented Python snippets are used.
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


def sign(provider, secret, url, content_type, body):
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


def verify(provider, secret, url, headers, body):
    h = {k.lower(): v for k, v in headers.items()}
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
