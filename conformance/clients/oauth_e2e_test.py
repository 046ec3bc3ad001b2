#!/usr/bin/env python3
"""Musubi's authorization server driven by real OAuth 2.0 client libraries over HTTPS.

Usage:
  oauth_e2e_test.py prepare WORK_DIR          write WORK_DIR/musubi.toml (the demo configuration
                                              plus the clients this test registers) and the
                                              private_key_jwt key; certificates must already be
                                              in WORK_DIR/certs (certs/make-dev-certs.sh)
  oauth_e2e_test.py run ROOT_URL WORK_DIR     run the checks against a server started with that
                                              configuration and TLS (ROOT_URL like https://127.0.0.1:8443)

Libraries: Authlib (client_secret_basic, private_key_jwt, authorization code with PKCE, refresh,
revocation) and requests-oauthlib (client_credentials with the secret in the body), plus plain
requests with a client certificate for mutual TLS (RFC 8705 tls_client_auth). Exits 1 on the
first failed check.
"""

import base64
import hashlib
import html.parser
import json
import os
import pathlib
import sys
import time
import urllib.parse
import uuid

import requests
from authlib.integrations.requests_client import OAuth2Session
from authlib.oauth2.rfc7523 import PrivateKeyJWT, private_key_jwt_sign
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from oauthlib.oauth2 import BackendApplicationClient
from requests_oauthlib import OAuth2Session as RequestsOAuth2Session

ACCOUNT = "https://musubi.example.org/fhir/IdSystem/account"
PHR_CLIENT = "demo-phr-app"
REDIRECT = "http://127.0.0.1:8123/callback"
PARENT, PARENT_PASSWORD = "demo-parent", "demo-parent-password"
JWT_CLIENT, MTLS_CLIENT, JWT_KID = "e2e-backend-jwt", "e2e-backend-mtls", "e2e-es384"


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)
    print(f"  ok  {message}")


def b64url_int(value, length):
    return base64.urlsafe_b64encode(value.to_bytes(length, "big")).rstrip(b"=").decode()


def toml_inline(table):
    return "{ " + ", ".join(f"{key} = {json.dumps(value)}" for key, value in table.items()) + " }"


def prepare(work):
    work = pathlib.Path(work)
    key = ec.generate_private_key(ec.SECP384R1())
    (work / "jwt-key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-384", "kid": JWT_KID, "alg": "ES384",
           "x": b64url_int(numbers.x, 48), "y": b64url_int(numbers.y, 48)}
    cert = x509.load_pem_x509_certificate((work / "certs" / "client-clinic-emr.crt").read_bytes())
    fingerprint = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()
    demo = (pathlib.Path(__file__).resolve().parents[2] / "gateway" / "config" / "demo.toml").read_text()
    scopes = '["system/Patient.rs", "system/Immunization.cruds"]'
    extra = f"""
# ---- added by conformance/clients/oauth_e2e_test.py
[[clients]]
id = "{JWT_CLIENT}"
kind = "medical-association"
grant_types = ["client_credentials"]
scopes = {scopes}
[clients.credentials.jwks]
keys = [{toml_inline(jwk)}]

[[clients]]
id = "{MTLS_CLIENT}"
kind = "clinic-emr"
medical_institution_code = "1311234569"
grant_types = ["client_credentials"]
scopes = {scopes}
[clients.credentials.certificate]
sha256_fingerprint = "{fingerprint}"
"""
    (work / "musubi.toml").write_text(demo + extra)


class Form(html.parser.HTMLParser):
    """The hidden and named inputs of the sign-in page."""

    def __init__(self):
        super().__init__()
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("type") == "hidden":
            self.fields[attrs["name"]] = attrs.get("value", "")


def run(root, work):
    work = pathlib.Path(work)
    ca = str(work / "certs" / "ca.crt")
    # Every library below builds its own requests session; the development CA must be trusted
    # by all of them.
    os.environ["REQUESTS_CA_BUNDLE"] = ca
    fhir = f"{root}/fhir"
    print("discovery")
    smart = requests.get(f"{fhir}/.well-known/smart-configuration", verify=ca, timeout=10).json()
    token_endpoint = smart["token_endpoint"]
    check(token_endpoint == f"{root}/oauth/token", "SMART configuration names the token endpoint")
    check("S256" in smart["code_challenge_methods_supported"], "PKCE S256 advertised")
    metadata = requests.get(f"{root}/.well-known/openid-configuration", verify=ca, timeout=10).json()
    check(metadata["issuer"] == root, "authorization-server metadata names the issuer")

    print("client_credentials, client_secret_basic (Authlib)")
    clinic = OAuth2Session("demo-clinic", "demo-clinic-secret", token_endpoint_auth_method="client_secret_basic")
    clinic.verify = ca
    token = clinic.fetch_token(token_endpoint, grant_type="client_credentials", scope="system/Patient.rs system/Immunization.cruds")
    check(token["scope"] == "system/Patient.rs system/Immunization.cruds", "granted the requested scopes")
    check(clinic.get(f"{fhir}/Patient", timeout=10).status_code == 200, "a search with the token succeeds")
    denied = clinic.get(f"{fhir}/Organization", timeout=10)
    check(denied.status_code == 403 and "insufficient_scope" in denied.headers["WWW-Authenticate"], "a type outside the granted scopes is refused with 403")

    print("client_credentials, secret in the body (requests-oauthlib)")
    municipality = RequestsOAuth2Session(client=BackendApplicationClient(client_id="demo-municipality"))
    municipality.fetch_token(token_url=token_endpoint, client_id="demo-municipality",
                             client_secret="demo-municipality-secret", include_client_id=True, verify=ca)
    tag = uuid.uuid4().hex[:8]
    child, other = f"e2e-child-{tag}", f"e2e-other-{tag}"
    for patient in (child, other):
        r = municipality.put(f"{fhir}/Patient/{patient}", verify=ca, timeout=10,
                             headers={"Content-Type": "application/fhir+json"},
                             data=json.dumps({"resourceType": "Patient", "id": patient, "birthDate": "2024-01-10"}))
        check(r.status_code == 201, f"Patient/{patient} stored")
    link = {"resourceType": "RelatedPerson", "id": f"e2e-link-{tag}", "active": True,
            "identifier": [{"system": ACCOUNT, "value": PARENT}], "patient": {"reference": f"Patient/{child}"}}
    r = municipality.put(f"{fhir}/RelatedPerson/{link['id']}", verify=ca, timeout=10,
                         headers={"Content-Type": "application/fhir+json"}, data=json.dumps(link))
    check(r.status_code == 201, "the parent's account is linked to one child")

    print("client_credentials, private_key_jwt ES384 (Authlib)")
    key_pem = (work / "jwt-key.pem").read_text()

    def assertion_auth(claims):
        return PrivateKeyJWT(token_endpoint, claims=claims, headers={"kid": JWT_KID}, alg="ES384")

    backend = OAuth2Session(JWT_CLIENT, key_pem, token_endpoint_auth_method=assertion_auth({"exp": int(time.time()) + 240}))
    backend.verify = ca
    token = backend.fetch_token(token_endpoint, grant_type="client_credentials")
    check(token["token_type"] == "Bearer", "an access token for the signed assertion")
    check(backend.get(f"{fhir}/Immunization", timeout=10).status_code == 200, "the token works")
    replayed_claims = {"exp": int(time.time()) + 240, "jti": uuid.uuid4().hex}
    first = OAuth2Session(JWT_CLIENT, key_pem, token_endpoint_auth_method=assertion_auth(dict(replayed_claims)))
    first.verify = ca
    first.fetch_token(token_endpoint, grant_type="client_credentials")
    replay = requests.post(token_endpoint, verify=ca, timeout=10, data={
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": private_key_jwt_sign(key_pem, JWT_CLIENT, token_endpoint, alg="ES384",
                                                 claims=dict(replayed_claims), header={"kid": JWT_KID}),
    })
    check(replay.status_code == 401 and replay.json()["error"] == "invalid_client", "a replayed assertion (same jti) is refused")
    long_lived = OAuth2Session(JWT_CLIENT, key_pem, token_endpoint_auth_method=assertion_auth(None))
    long_lived.verify = ca
    try:
        long_lived.fetch_token(token_endpoint, grant_type="client_credentials")
        raise Failure("an assertion valid for an hour was accepted")
    except Failure:
        raise
    except Exception as error:  # noqa: BLE001 - Authlib raises OAuthError
        check("invalid_client" in str(error), "an assertion living longer than five minutes is refused")

    print("mutual TLS, tls_client_auth and a certificate-bound token")
    cert = (str(work / "certs" / "client-clinic-emr.crt"), str(work / "certs" / "client-clinic-emr.key"))
    r = requests.post(token_endpoint, cert=cert, verify=ca, timeout=10,
                      data={"grant_type": "client_credentials", "client_id": MTLS_CLIENT})
    check(r.status_code == 200, "the certificate authenticates the client")
    bound = r.json()["access_token"]
    claims = json.loads(base64.urlsafe_b64decode(bound.split(".")[1] + "=="))
    check("x5t#S256" in claims.get("cnf", {}), "the token is bound to the certificate (cnf.x5t#S256)")
    headers = {"Authorization": f"Bearer {bound}"}
    check(requests.get(f"{fhir}/Patient", headers=headers, cert=cert, verify=ca, timeout=10).status_code == 200,
          "the bound token works with its certificate")
    check(requests.get(f"{fhir}/Patient", headers=headers, verify=ca, timeout=10).status_code == 401,
          "and is refused without it")

    print("authorization code + PKCE for a parent (Authlib, public client)")
    app = OAuth2Session(PHR_CLIENT, redirect_uri=REDIRECT, token_endpoint_auth_method="none",
                        scope="launch/patient patient/*.rs fhirUser offline_access", code_challenge_method="S256")
    app.verify = ca
    verifier = base64.urlsafe_b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).rstrip(b"=").decode()
    url, state = app.create_authorization_url(smart["authorization_endpoint"], code_verifier=verifier, aud=fhir)
    browser = requests.Session()
    browser.verify = ca
    page = browser.get(url, timeout=10)
    check(page.status_code == 200 and "password" in page.text, "the sign-in page is shown")
    form = Form()
    form.feed(page.text)
    form.fields.update({"username": PARENT, "password": PARENT_PASSWORD})
    signed_in = browser.post(f"{root}/oauth/authorize", data=form.fields, allow_redirects=False, timeout=10)
    check(signed_in.status_code == 302, "signing in redirects back to the app")
    location = signed_in.headers["Location"]
    check(urllib.parse.parse_qs(urllib.parse.urlparse(location).query)["state"] == [state], "the state comes back")
    token = app.fetch_token(token_endpoint, authorization_response=location, code_verifier=verifier)
    check(token.get("patient") == child, "the launch context names the parent's child")
    check("refresh_token" in token, "offline_access gives a refresh token")
    check(app.get(f"{fhir}/Patient/{child}", timeout=10).status_code == 200, "the child's record is readable")
    check(app.get(f"{fhir}/Patient/{other}", timeout=10).status_code == 404, "another family's child is not")
    total = app.get(f"{fhir}/Patient?_summary=count", timeout=10).json()["total"]
    check(total == 1, "searches count only the parent's own children")

    print("refresh rotation and revocation")
    old_refresh = token["refresh_token"]
    refreshed = app.refresh_token(token_endpoint, refresh_token=old_refresh)
    check(refreshed["refresh_token"] != old_refresh, "refreshing rotates the refresh token")
    check(app.get(f"{fhir}/Patient/{child}", timeout=10).status_code == 200, "the new access token works")
    revoked = app.revoke_token(smart["revocation_endpoint"], token=refreshed["refresh_token"], token_type_hint="refresh_token")
    check(revoked.status_code == 200, "revocation answers 200")
    again = requests.post(token_endpoint, verify=ca, timeout=10, data={
        "grant_type": "refresh_token", "refresh_token": refreshed["refresh_token"], "client_id": PHR_CLIENT})
    check(again.status_code == 400 and again.json()["error"] == "invalid_grant", "a revoked refresh token is refused")
    print("all OAuth end-to-end checks passed")


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "prepare":
        prepare(sys.argv[2])
        return 0
    if len(sys.argv) == 4 and sys.argv[1] == "run":
        try:
            run(sys.argv[2].rstrip("/"), sys.argv[3])
        except Failure as failure:
            print(f"FAILED: {failure}", file=sys.stderr)
            return 1
        return 0
    print(__doc__.strip(), file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
