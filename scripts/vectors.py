#!/usr/bin/env python3
"""Writes tests/vectors/schemes.json: every verify scheme's test vectors, request in, verdict out.

The signatures are made here, independently of hookgate's code, from each provider's documented
algorithm (Python's hmac/hashlib; `cryptography` for Ed25519 and ECDSA), beside the examples the
providers publish (marked "published"). tests/it/vectors.rs runs every vector through hookgate's
real verifier. Run again after adding a scheme: python3 scripts/vectors.py
"""

import base64
import hashlib
import hmac
import json
import os
from datetime import datetime, timezone

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

T = 1700000000  # the time each request is signed at
SECRET = "vector-secret"
OTHER = "other-secret"
SW_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SW_OTHER = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
COMPUTED = "computed from the documented algorithm"
BODY = '{"id":"evt_1","event_id":"ev_1","type":"test"}'
PUBLIC = "https://hooks.example.com"

vectors = []


def mac(alg, key, msg):
    key = key if isinstance(key, bytes) else key.encode()
    msg = msg if isinstance(msg, bytes) else msg.encode()
    return hmac.new(key, msg, getattr(hashlib, alg)).digest()


def hx(b):
    return b.hex()


def b64(b):
    return base64.b64encode(b).decode()


def add(name, scheme, secrets, headers, body, now, verdict, verify=None, path=None, method="POST", origin=COMPUTED,
        handshake=None):
    v = {
        "name": name,
        "scheme": scheme,
        "verify": verify or {},
        "secrets": secrets,
        "now": now,
        "request": {"method": method, "path": path or f"/hook/{scheme}", "headers": headers, "body": body},
        "verdict": verdict,
        "origin": origin,
    }
    if handshake:
        v["handshake"] = handshake
    vectors.append(v)


def tamper(body):
    return body.replace("evt_1", "evt_2") if "evt_1" in body else body + " "


def standard(scheme, signer, secret=SECRET, other=OTHER, timestamped=False, verify=None, tolerance=300,
             body=BODY, path=None, keyless=False):
    """valid, tampered, wrong key and (timestamped) stale and future vectors for a scheme whose
    signer(secret, body, ts, path) gives the request's headers."""
    secrets = [] if keyless else [other, secret]
    h = signer(secret, body, T, path or f"/hook/{scheme}")
    add(f"{scheme}: valid (second of two secrets)", scheme, secrets, h, body, T + 10, "accept", verify, path)
    add(f"{scheme}: body tampered", scheme, secrets, h, tamper(body), T + 10, "reject", verify, path)
    if keyless:
        add(f"{scheme}: wrong key", scheme, [], signer(other, body, T, path or f"/hook/{scheme}"), body, T + 10,
            "reject", verify, path)
    else:
        add(f"{scheme}: wrong secret", scheme, [other], h, body, T + 10, "reject", verify, path)
    if timestamped:
        add(f"{scheme}: outside the tolerance (past)", scheme, secrets, h, body, T + tolerance + 1, "reject", verify,
            path)
        add(f"{scheme}: outside the tolerance (future)", scheme, secrets, h, body, T - tolerance - 1, "reject",
            verify, path)
    add(f"{scheme}: signature missing", scheme, secrets, [], body, T, "reject", verify, path)


def body_hmac(header, alg="sha256", enc=hx, prefix=""):
    return lambda s, body, ts, path: [[header, prefix + enc(mac(alg, s, body))]]


# --- today's schemes -------------------------------------------------------------------------
add("github: published example", "github", ["It's a Secret to Everybody"],
    [["X-Hub-Signature-256", "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"]],
    "Hello, World!", T, "accept",
    origin="published: https://docs.github.com/en/webhooks/using-webhooks/validating-webhook-deliveries")
standard("github", body_hmac("X-Hub-Signature-256", prefix="sha256="))
add("slack: published example", "slack", ["8f742231b10e8888abcd99yyyzzz85a5"],
    [["X-Slack-Signature", "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"],
     ["X-Slack-Request-Timestamp", "1531420618"]],
    "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c",
    1531420618 + 60, "accept", origin="published: https://api.slack.com/authentication/verifying-requests-from-slack")


def slack(s, body, ts, path):
    return [["X-Slack-Signature", "v0=" + hx(mac("sha256", s, f"v0:{ts}:{body}"))], ["X-Slack-Request-Timestamp", str(ts)]]


standard("slack", slack, timestamped=True)
challenge = '{"token":"t","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}'
add("slack: url_verification handshake", "slack", [SECRET], slack(SECRET, challenge, T, ""), challenge, T, "handshake",
    handshake={"status": 200, "content_type": "application/json",
               "body": '{"challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}'},
    origin="published: https://api.slack.com/events/url_verification")
add("slack: url_verification badly signed", "slack", [SECRET], slack(OTHER, challenge, T, ""), challenge, T, "reject")


def stripe(s, body, ts, path):
    return [["Stripe-Signature", f"t={ts},v1={hx(mac('sha256', s, f'{ts}.{body}'))}"]]


standard("stripe", stripe, timestamped=True)
standard("shopify", body_hmac("X-Shopify-Hmac-Sha256", enc=b64))


def sw_key(secret):
    return base64.b64decode(secret.removeprefix("whsec_"))


def sw(names):
    def sign(s, body, ts, path):
        sig = b64(mac("sha256", sw_key(s), f"msg_1.{ts}.{body}"))
        return [[names[0], "msg_1"], [names[1], str(ts)], [names[2], f"v1,{sig}"]]
    return sign


for scheme in ["standard-webhooks", "svix", "clerk", "resend"]:
    names = ("webhook-id", "webhook-timestamp", "webhook-signature") if scheme == "standard-webhooks" else (
        "svix-id", "svix-timestamp", "svix-signature")
    add(f"{scheme}: published Standard Webhooks example", scheme, [SW_SECRET],
        [[names[0], "msg_p5jXN8AQM9LWM0D4loKWxJek"], [names[1], "1614265330"],
         [names[2], "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="]],
        '{"test": 2432232314}', 1614265330, "accept",
        origin="published: https://github.com/standard-webhooks/standard-webhooks (libraries/python/tests/test_webhooks.py)")
    standard(scheme, sw(names), secret=SW_SECRET, other=SW_OTHER, timestamped=True)

add("gitlab: token", "gitlab", [OTHER, SECRET], [["X-Gitlab-Token", SECRET]], BODY, T, "accept")
add("gitlab: wrong token", "gitlab", [SECRET], [["X-Gitlab-Token", OTHER]], BODY, T, "reject")
add("twilio: published example", "twilio", ["12345"], [["X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8="],
    ["Content-Type", "application/x-www-form-urlencoded"]],
    "CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212", T, "accept",
    verify={"public_url": "https://mycompany.com/myapp.php"}, path="/myapp.php?foo=1&bar=2",
    origin="published: https://www.twilio.com/docs/usage/webhooks/webhooks-security")

# --- the declarative scheme --------------------------------------------------------------------
custom = {"header": "X-Custom", "algorithm": "sha512", "encoding": "base64", "prefix": "sig=",
          "format": "t={timestamp};v1={signature};v1={signature}",
          "signed": "{method}\n{url}\n{path}\n{header:X-Request-Id}\n{timestamp}\n{body}",
          "public_url": f"{PUBLIC}/hook/hmac"}


def custom_sign(s, body, ts, path):
    q = path.split("?", 1)[1] if "?" in path else ""
    url = custom["public_url"] + (f"?{q}" if q else "")
    msg = f"POST\n{url}\n{path.split('?')[0]}\nreq-1\n{ts}\n{body}"
    return [["X-Custom", f"sig=t={ts};v1={b64(mac('sha512', OTHER + 'x', msg))};v1={b64(mac('sha512', s, msg))}"],
            ["X-Request-Id", "req-1"]]


standard("hmac", custom_sign, timestamped=True, verify=custom, path="/hook/hmac?a=1&b=2")
add("hmac: query changed", "hmac", [SECRET], custom_sign(SECRET, BODY, T, "/hook/hmac?a=1&b=2"), BODY, T, "reject",
    verify=custom, path="/hook/hmac?a=1&b=3")
plain = {"header": "X-Sig", "algorithm": "sha1"}
standard("hmac", body_hmac("X-Sig", alg="sha1"), verify=plain)


# --- presets ---------------------------------------------------------------------------------
def tv1(header, sep=","):
    return lambda s, body, ts, path: [[header, f"t={ts}{sep}v1={hx(mac('sha256', s, f'{ts}.{body}'))}"]]


standard("paddle", lambda s, body, ts, path: [
    ["Paddle-Signature", f"ts={ts};h1={hx(mac('sha256', s, f'{ts}:{body}'))}"]], timestamped=True)
standard("linear", body_hmac("Linear-Signature"))
standard("square", lambda s, body, ts, path: [
    ["X-Square-HmacSha256-Signature", b64(mac("sha256", s, f"{PUBLIC}/hook/square{body}"))]],
    verify={"public_url": f"{PUBLIC}/hook/square"})


def hubspot(s, body, ts, path):
    ms = f"{ts}000"
    q = path.split("?", 1)[1] if "?" in path else ""
    url = f"{PUBLIC}/hook/hubspot" + (f"?{q}" if q else "")
    return [["X-HubSpot-Signature-v3", b64(mac("sha256", s, f"POST{url}{body}{ms}"))], ["X-HubSpot-Request-Timestamp", ms]]


standard("hubspot", hubspot, timestamped=True, verify={"public_url": f"{PUBLIC}/hook/hubspot"}, path="/hook/hubspot?x=1")
standard("intercom", body_hmac("X-Hub-Signature", alg="sha1", prefix="sha1="))
standard("bitbucket", body_hmac("X-Hub-Signature", prefix="sha256="))
standard("jira", body_hmac("X-Hub-Signature", prefix="sha256="))
standard("typeform", body_hmac("Typeform-Signature", enc=b64, prefix="sha256="))
standard("calendly", tv1("Calendly-Webhook-Signature"), timestamped=True, tolerance=180)
standard("pagerduty", lambda s, body, ts, path: [
    ["X-PagerDuty-Signature", f"v1={hx(mac('sha256', 'rotated-out', body))}, v1={hx(mac('sha256', s, body))}"]])
standard("sentry", body_hmac("Sentry-Hook-Signature"))
standard("vercel", body_hmac("X-Vercel-Signature", alg="sha1"))
standard("coinbase", body_hmac("X-CC-Webhook-Signature"))


def zendesk(s, body, ts, path):
    iso = datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return [["X-Zendesk-Webhook-Signature", b64(mac("sha256", s, iso + body))],
            ["X-Zendesk-Webhook-Signature-Timestamp", iso]]


standard("zendesk", zendesk, timestamped=True)
standard("mux", tv1("Mux-Signature"), timestamped=True)
standard("docusign", body_hmac("X-DocuSign-Signature-1", enc=b64))


def zoom(s, body, ts, path):
    return [["x-zm-signature", "v0=" + hx(mac("sha256", s, f"v0:{ts}:{body}"))], ["x-zm-request-timestamp", str(ts)]]


standard("zoom", zoom, timestamped=True)
val = '{"payload":{"plainToken":"qgg8vlvZRS6UYooatFL8Aw"},"event_ts":1654503849680,"event":"endpoint.url_validation"}'
add("zoom: endpoint.url_validation handshake", "zoom", [SECRET], zoom(SECRET, val, T, ""), val, T, "handshake",
    handshake={"status": 200, "content_type": "application/json",
               "body": json.dumps({"encryptedToken": hx(mac("sha256", SECRET, "qgg8vlvZRS6UYooatFL8Aw")),
                                   "plainToken": "qgg8vlvZRS6UYooatFL8Aw"}, separators=(",", ":"))},
    origin=COMPUTED + " (the request of Zoom's documentation)")
add("zoom: url_validation badly signed", "zoom", [SECRET], zoom(OTHER, val, T, ""), val, T, "reject")
standard("twitter", body_hmac("x-twitter-webhooks-signature", enc=b64, prefix="sha256="))
add("twitter: CRC", "twitter", [SECRET], [], "", T, "handshake", method="GET", path="/hook/twitter?crc_token=crc-1",
    handshake={"status": 200, "content_type": "application/json",
               "body": json.dumps({"response_token": "sha256=" + b64(mac("sha256", SECRET, "crc-1"))}, separators=(",", ":"))})
add("twitter: CRC without crc_token", "twitter", [SECRET], [], "", T, "reject", method="GET", path="/hook/twitter")
meta = {"verify_token": "vt-1"}
standard("meta", body_hmac("X-Hub-Signature-256", prefix="sha256="), verify=meta)
add("meta: hub.challenge", "meta", [SECRET], [], "", T, "handshake", method="GET", verify=meta,
    path="/hook/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=vt-1",
    handshake={"status": 200, "content_type": "text/plain", "body": "1158201444"},
    origin="published request: https://developers.facebook.com/docs/graph-api/webhooks/getting-started")
add("meta: wrong verify token", "meta", [SECRET], [], "", T, "reject", method="GET", verify=meta,
    path="/hook/meta?hub.mode=subscribe&hub.challenge=1158201444&hub.verify_token=vt-2")
standard("dropbox", body_hmac("X-Dropbox-Signature"))
add("dropbox: challenge", "dropbox", [SECRET], [], "", T, "handshake", method="GET", path="/hook/dropbox?challenge=abc",
    handshake={"status": 200, "content_type": "text/plain", "body": "abc"})


# --- code schemes ------------------------------------------------------------------------------
def mailgun_body(s, ts, token="tok-1"):
    sig = hx(mac("sha256", s, f"{ts}{token}"))
    return json.dumps({"signature": {"timestamp": str(ts), "token": token, "signature": sig},
                       "event-data": {"id": "evt_1", "event": "delivered"}}, separators=(",", ":"))


mb = mailgun_body(SECRET, T)
add("mailgun: valid (second of two secrets)", "mailgun", [OTHER, SECRET], [], mb, T + 10, "accept")
add("mailgun: token tampered", "mailgun", [SECRET], [], mb.replace("tok-1", "tok-2"), T + 10, "reject")
add("mailgun: wrong secret", "mailgun", [OTHER], [], mb, T + 10, "reject")
add("mailgun: outside the tolerance (past)", "mailgun", [SECRET], [], mb, T + 301, "reject")
add("mailgun: form body", "mailgun", [SECRET], [["Content-Type", "application/x-www-form-urlencoded"]],
    f"timestamp={T}&token=tok-1&signature={hx(mac('sha256', SECRET, f'{T}tok-1'))}&recipient=a%40example.com", T,
    "accept")

ed = ed25519.Ed25519PrivateKey.from_private_bytes(bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"))
ed_other = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(32))
ed_pub = ed.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw).hex()


def discord(key, body, ts, path):
    k = ed if key == SECRET else ed_other
    return [["X-Signature-Ed25519", k.sign(f"{ts}{body}".encode()).hex()], ["X-Signature-Timestamp", str(ts)]]


standard("discord", discord, timestamped=True, verify={"public_key": ed_pub}, keyless=True,
         body='{"type":2,"id":"1"}')
ping = '{"type":1,"id":"1","application_id":"2"}'
add("discord: PING", "discord", [], discord(SECRET, ping, T, ""), ping, T, "handshake", verify={"public_key": ed_pub},
    handshake={"status": 200, "content_type": "application/json", "body": '{"type":1}'})
add("discord: PING badly signed", "discord", [], discord(OTHER, ping, T, ""), ping, T, "reject",
    verify={"public_key": ed_pub})

ec_key = ec.derive_private_key(7, ec.SECP256R1())
ec_other = ec.derive_private_key(8, ec.SECP256R1())
ec_pub = b64(ec_key.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo))


def sendgrid(key, body, ts, path):
    k = ec_key if key == SECRET else ec_other
    sig = k.sign(f"{ts}{body}".encode(), ec.ECDSA(hashes.SHA256()))
    return [["X-Twilio-Email-Event-Webhook-Signature", b64(sig)], ["X-Twilio-Email-Event-Webhook-Timestamp", str(ts)]]


standard("sendgrid", sendgrid, timestamped=True, verify={"public_key": ec_pub}, keyless=True,
         body='[{"email":"a@example.com","event":"delivered","sg_event_id":"evt_1"}]')

graph = lambda state: json.dumps({"value": [{"subscriptionId": "s1", "clientState": state, "changeType": "created"}]})
add("microsoft-graph: clientState matches", "microsoft-graph", [OTHER, SECRET], [], graph(SECRET), T, "accept")
add("microsoft-graph: clientState wrong", "microsoft-graph", [SECRET], [], graph(OTHER), T, "reject")
add("microsoft-graph: validationToken", "microsoft-graph", [SECRET], [["Content-Type", "text/plain"]], "", T,
    "handshake", path="/hook/microsoft-graph?validationToken=Validation%3A%20Testing%20client%20application",
    handshake={"status": 200, "content_type": "text/plain", "body": "Validation: Testing client application"},
    origin="published request: https://learn.microsoft.com/en-us/graph/change-notifications-delivery-webhooks")
add("okta: Authorization equals the secret", "okta", [OTHER, SECRET], [["Authorization", SECRET]], BODY, T, "accept")
add("okta: Authorization differs", "okta", [SECRET], [["Authorization", "Bearer " + SECRET]], BODY, T, "reject")
add("okta: verification challenge", "okta", [SECRET],
    [["Authorization", SECRET], ["X-Okta-Verification-Challenge", "ch-1"]], "", T, "handshake", method="GET",
    handshake={"status": 200, "content_type": "application/json", "body": '{"verification":"ch-1"}'})

out = {
    "description": "hookgate's signature-scheme conformance vectors: for each request (method, path with query, "
                   "headers, body) to a source whose verify table is {scheme, ...verify} with the listed secrets "
                   "(newest last; `verify_token` stands for the value of Meta's verify_token_env), checked at unix time `now`, the verdict: accept (the event is stored), reject "
                   "(401/400/403, nothing stored) or handshake (the exact answer; nothing stored). Signatures were "
                   "made by scripts/vectors.py from each provider's documented algorithm, or are the provider's "
                   "published example (origin).",
    "vectors": vectors,
}
path = os.path.join(os.path.dirname(__file__), "..", "tests", "vectors", "schemes.json")
os.makedirs(os.path.dirname(path), exist_ok=True)
with open(path, "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
print(f"{len(vectors)} vectors, {len({v['scheme'] for v in vectors})} schemes -> {os.path.normpath(path)}")
