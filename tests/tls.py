"""Certificates for the TLS tests, made by deploy/make-certs.sh (the script the README gives users)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.common.config import REPO_ROOT

MAKE_CERTS = REPO_ROOT / "deploy" / "make-certs.sh"


@dataclass(frozen=True)
class Pki:
    """A CA with the services' certificate (tls.*) and a tool's client certificate (client.*)."""

    directory: Path

    def path(self, name: str) -> str:
        return str(self.directory / name)

    def server_env(self, mutual: bool = False) -> dict[str, str]:
        """What a service needs: its certificate, the CA of its peers, and for mTLS the client CA."""
        env = {"TRADER_TLS_CERT": self.path("tls.crt"), "TRADER_TLS_KEY": self.path("tls.key"),
               "TRADER_TLS_CA": self.path("ca.crt")}
        if mutual:
            env["TRADER_TLS_CLIENT_CA"] = self.path("ca.crt")
        return env

    def tool_env(self, client_certificate: bool = True) -> dict[str, str]:
        """What a tool needs: the CA, and for mTLS its own client certificate."""
        env = {"TRADER_TLS_CA": self.path("ca.crt")}
        if client_certificate:
            env |= {"TRADER_TLS_CLIENT_CERT": self.path("client.crt"), "TRADER_TLS_CLIENT_KEY": self.path("client.key")}
        return env


def make_pki(directory: Path) -> Pki:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: no certificates for the TLS tests")
    done = subprocess.run([MAKE_CERTS, str(directory)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return Pki(directory)
