"""A client that is not this crate, signing in against `linkedin-token-exchange sandbox`.

It does what a Python app's own tests would: the OpenID Connect code flow with
`requests` and `pyjwt` (discovery, the consent form, the code, the token, the id_token's
signature and claims, userinfo), and the JSAPI side with `requests-oauthlib` (the signed
cookie payload, its HMAC-SHA1 signature, the OAuth 1.0a exchange, a signed REST call).

Configuration comes from the environment, exactly as the sandbox printed it. Exits 0 when
every check passed; otherwise an assertion names what differed.
"""

import base64
import hashlib
import hmac
import html.parser
import os
import secrets
import sys
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import requests
from requests_oauthlib import OAuth1

ENV = os.environ
CA = ENV["UPSTREAM_CA_CERT"]
REDIRECT_URI = "http://127.0.0.1:9/auth/linkedin/callback"  # never fetched


class Form(html.parser.HTMLParser):
    """The consent page's form: its action and its fields."""

    def __init__(self):
        super().__init__()
        self.action = None
        self.fields = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form":
            self.action = attrs.get("action", "")
        elif tag == "input" and "name" in attrs:
            self.fields[attrs["name"]] = attrs.get("value", "")


def openid_connect(http):
    issuer = ENV["LINKEDIN_OIDC_ISSUER"]
    client_id = ENV["LINKEDIN_CLIENT_ID"]
    client_secret = ENV["LINKEDIN_CLIENT_SECRET"]

    discovery = http.get(issuer + "/.well-known/openid-configuration").json()
    assert discovery["issuer"] == issuer, discovery
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    authorization = discovery["authorization_endpoint"] + "?" + urlencode({
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile email",
        "state": state,
        "nonce": nonce,
    })
    page = http.get(authorization)
    assert page.status_code == 200, (page.status_code, page.text)
    form = Form()
    form.feed(page.text)
    assert form.fields.get("client_id") == client_id, form.fields
    fields = dict(form.fields, decision="allow", sandbox_member="PythonPat")
    consent = http.post(urljoin(page.url, form.action or page.url), data=fields,
                        allow_redirects=False)
    assert consent.status_code in (302, 303), (consent.status_code, consent.text)
    location = consent.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state], query
    code = query["code"][0]

    # LinkedIn as observed: the secret in the form (client_secret_post), no PKCE.
    token = http.post(discovery["token_endpoint"], data={
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "client_id": client_id,
        "client_secret": client_secret,
    })
    assert token.status_code == 200, (token.status_code, token.text)
    token = token.json()

    jwks = http.get(discovery["jwks_uri"]).json()
    header = jwt.get_unverified_header(token["id_token"])
    key = next(k for k in jwks["keys"] if k["kid"] == header["kid"])
    claims = jwt.decode(token["id_token"], jwt.PyJWK(key).key, algorithms=["RS256"],
                        audience=client_id, issuer=issuer)
    # LinkedIn's id_tokens carry no nonce, and email_verified is a string.
    assert "nonce" not in claims, claims
    assert claims["email_verified"] == "true", claims

    # A code is single use.
    again = http.post(discovery["token_endpoint"], data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
        "client_id": client_id, "client_secret": client_secret,
    })
    assert again.status_code == 400, (again.status_code, again.text)

    userinfo = http.get(discovery["userinfo_endpoint"],
                        headers={"Authorization": "Bearer " + token["access_token"]}).json()
    assert userinfo["sub"] == claims["sub"], (userinfo, claims)
    print(f"oidc ok: sub={claims['sub']} name={userinfo.get('name')!r}")


def jsapi(http):
    api_key = ENV["LINKEDIN_API_KEY"]
    secret_key = ENV["LINKEDIN_SECRET_KEY"]
    base = ENV["LINKEDIN_API_URL"]

    # What the JSAPI script writes into the linkedin_oauth_<API_KEY> cookie.
    cookie = http.post(base + "/oauth2/authorize",
                       data={"api_key": api_key, "member_id": "PythonPat"}).json()
    signed = "".join(cookie[name] for name in cookie["signature_order"])
    expected = base64.b64encode(
        hmac.new(secret_key.encode(), signed.encode(), hashlib.sha1).digest()).decode()
    assert hmac.compare_digest(expected, cookie["signature"]), cookie

    exchange = http.post(
        ENV["LINKEDIN_ACCESS_TOKEN_URL"],
        data={"xoauth_oauth2_access_token": cookie["access_token"]},
        auth=OAuth1(api_key, client_secret=secret_key, signature_type="AUTH_HEADER"),
    )
    assert exchange.status_code == 200, (exchange.status_code, exchange.text)
    credentials = parse_qs(exchange.text)
    token, token_secret = credentials["oauth_token"][0], credentials["oauth_token_secret"][0]

    profile = http.get(base + "/v1/people/~", params={"format": "json"},
                       auth=OAuth1(api_key, client_secret=secret_key, resource_owner_key=token,
                                   resource_owner_secret=token_secret))
    assert profile.status_code == 200, (profile.status_code, profile.text)
    assert profile.json()["id"] == "PythonPat", profile.json()

    # A wrong secret is refused, as LinkedIn refuses it.
    forged = http.post(
        ENV["LINKEDIN_ACCESS_TOKEN_URL"],
        data={"xoauth_oauth2_access_token": cookie["access_token"]},
        auth=OAuth1(api_key, client_secret="not-the-secret", signature_type="AUTH_HEADER"),
    )
    assert forged.status_code == 401, (forged.status_code, forged.text)
    print(f"jsapi ok: member={cookie['member_id']}")


def main():
    http = requests.Session()
    # REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE in the environment would win over `verify`
    # (psf/requests#3829): trust the sandbox's certificate and nothing from the environment.
    http.trust_env = False
    http.verify = CA
    openid_connect(http)
    jsapi(http)
    return 0


if __name__ == "__main__":
    sys.exit(main())
