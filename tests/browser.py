"""Debian's Chromium, driven by Playwright, started the one way every browser test starts
it (the flags are those FACTS.md found necessary on these machines: no sandbox
as root, no background networking on a closed network)."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Playwright, Route

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def spki_sha256(cert_file: Path) -> str:
    cert = x509.load_pem_x509_certificate(cert_file.read_bytes())
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def launch(pw: Playwright, *trusted: Path) -> Browser:
    """Chromium that trusts the chains carrying one of the `trusted` certificates' keys and
    no other: it takes trust anchors from an NSS database, not from a CA file."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install chromium")
    pins = [f"--ignore-certificate-errors-spki-list={','.join(map(spki_sha256, trusted))}"]
    return pw.chromium.launch(executable_path=CHROMIUM, args=[*FLAGS, *(pins if trusted else [])])


def local_only(context: BrowserContext) -> list[str]:
    """Block every request of `context` beyond this machine (a closed network: no CDN);
    returns the list the blocked addresses are added to."""
    from urllib.parse import urlsplit

    blocked: list[str] = []

    def route(r: Route) -> None:
        if urlsplit(r.request.url).hostname in ("127.0.0.1", "localhost"):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    context.route("**/*", route)
    return blocked
