#!/usr/bin/env python3
"""A parent's access token for the load benchmark: the authorization code flow with PKCE (S256)
that a PHR app runs, with the demo parent's public demo password (gateway/config/demo.toml).

    parent_token.py BASE_URL [USERNAME] [PASSWORD] [CLIENT_ID] [SCOPE]

Prints the access token.
"""
import base64
import hashlib
import json
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request

base = sys.argv[1].rstrip("/")
username = sys.argv[2] if len(sys.argv) > 2 else "demo-parent"
password = sys.argv[3] if len(sys.argv) > 3 else "demo-parent-password"
client_id = sys.argv[4] if len(sys.argv) > 4 else "demo-phr-app"
scope = sys.argv[5] if len(sys.argv) > 5 else "patient/*.cruds launch/patient fhirUser"
redirect_uri = "http://127.0.0.1:8123/callback"

verifier = secrets.token_urlsafe(48)
challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
form = {
    "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri, "scope": scope,
    "state": "bench", "code_challenge": challenge, "code_challenge_method": "S256",
    "aud": f"{base}/fhir", "username": username, "password": password,
}


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


opener = urllib.request.build_opener(NoRedirect)
try:
    opener.open(f"{base}/oauth/authorize", urllib.parse.urlencode(form).encode())
    sys.exit("sign-in did not redirect")
except urllib.error.HTTPError as answer:
    if answer.code != 302:
        sys.exit(f"sign-in answered {answer.code}: {answer.read()[:300]!r}")
    location = answer.headers["Location"]
code = urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["code"][0]
token = urllib.request.urlopen(f"{base}/oauth/token", urllib.parse.urlencode({
    "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
    "code_verifier": verifier, "client_id": client_id,
}).encode())
print(json.load(token)["access_token"])
