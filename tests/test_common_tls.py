"""Optional TLS and mutual TLS from TRADER_TLS_*: validated at start, on every server and client,
with certificates made by deploy/make-certs.sh."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from gateway.launch import grpcurl_tls_flags
from services.common import healthprobe
from services.common.client import Clients, open_channel, raw_channel
from services.common.config import REPO_ROOT, ClientTls, ConfigError, load_client_tls, load_common
from tests.helpers import TOKEN, call_raw, make_config, raw_methods, serving
from tests.test_common_reflection import grpcurl_path
from tests.tls import Pki, make_pki

METHOD = "/trader.display.v1.Display/GetThing"
AUTH = [("authorization", f"Bearer {TOKEN}")]


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> Pki:
    """Another CA, with certificates for the same names."""
    return make_pki(tmp_path_factory.mktemp("other-pki"))


@pytest.fixture(scope="module")
def bad_files(pki, tmp_path_factory) -> dict[str, str]:
    directory = tmp_path_factory.mktemp("bad")
    (directory / "garbage.pem").write_text("not a certificate\n")
    encrypted = directory / "encrypted.key"
    subprocess.run(["openssl", "pkey", "-in", pki.path("tls.key"), "-aes256", "-passout", "pass:secret",
                    "-out", str(encrypted)], check=True, capture_output=True)
    return {"garbage": str(directory / "garbage.pem"), "encrypted": str(encrypted), "directory": str(directory),
            "missing": str(directory / "missing.pem")}


class Counter:
    def __init__(self):
        self.calls = 0
        self._lock = threading.Lock()

    def handler(self, request, context):
        with self._lock:
            self.calls += 1
        return b"pong"


def tls_server(env: dict[str, str]):
    counter = Counter()
    config = make_config("display", **env)
    return config, counter, serving(config, raw_methods("trader.display.v1.Display", {"GetThing": counter.handler}))


def refused(channel: grpc.Channel) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call_raw(channel, METHOD, metadata=AUTH, timeout=5)
    return caught.value.code()


# --- configuration ----------------------------------------------------------------------------

def test_tls_is_off_by_default():
    config = load_common("display", {"TRADER_API_TOKEN": TOKEN})
    assert config.server_tls is None and config.client_tls is None
    assert load_client_tls({}) is None


def test_a_service_serves_and_calls_with_its_certificate(pki):
    config = load_common("display", {"TRADER_API_TOKEN": TOKEN, **pki.server_env(mutual=True)})
    certificate, key = Path(pki.path("tls.crt")).read_bytes(), Path(pki.path("tls.key")).read_bytes()
    assert (config.server_tls.certificate_chain, config.server_tls.private_key) == (certificate, key)
    assert config.server_tls.client_ca == Path(pki.path("ca.crt")).read_bytes()
    # its calls to peers present its own certificate unless TRADER_TLS_CLIENT_CERT names another
    assert config.client_tls == ClientTls(Path(pki.path("ca.crt")).read_bytes(), certificate, key)
    other = load_common("display", {"TRADER_API_TOKEN": TOKEN, **pki.server_env(), **pki.tool_env()})
    assert other.client_tls.certificate_chain == Path(pki.path("client.crt")).read_bytes()
    assert "PRIVATE KEY" not in repr(config)  # keys stay out of logs and tracebacks


def test_a_tool_needs_only_the_ca(pki):
    tls = load_client_tls({"TRADER_TLS_CA": pki.path("ca.crt")})
    assert tls.root_certificates.startswith(b"-----BEGIN CERTIFICATE") and tls.certificate_chain is None
    assert load_client_tls(pki.tool_env()).private_key == Path(pki.path("client.key")).read_bytes()


def problems_of(env: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_common("display", {"TRADER_API_TOKEN": TOKEN, **env})
    return caught.value.problems


@pytest.mark.parametrize(("change", "expected"), [
    ({"TRADER_TLS_CERT": "{missing}"}, "TRADER_TLS_CERT='{missing}': cannot read it: No such file or directory"),
    ({"TRADER_TLS_KEY": "{directory}"}, "TRADER_TLS_KEY='{directory}': cannot read it: Is a directory"),
    ({"TRADER_TLS_CERT": "{garbage}"}, "TRADER_TLS_CERT='{garbage}': not a certificate in PEM format"),
    ({"TRADER_TLS_CERT": "{tls_key}"}, "TRADER_TLS_CERT='{tls_key}': not a certificate in PEM format"),
    ({"TRADER_TLS_KEY": "{garbage}"}, "TRADER_TLS_KEY='{garbage}': not a private key in PEM format"),
    ({"TRADER_TLS_KEY": "{client_key}"},
     "TRADER_TLS_KEY='{client_key}': not the private key of the certificate in TRADER_TLS_CERT='{tls_crt}'"),
    ({"TRADER_TLS_KEY": "{encrypted}"}, "TRADER_TLS_KEY='{encrypted}': the key is encrypted"),
    ({"TRADER_TLS_CA": "{garbage}"}, "TRADER_TLS_CA='{garbage}': not a CA certificate bundle in PEM format"),
    ({"TRADER_TLS_CLIENT_CA": "{tls_key}"},
     "TRADER_TLS_CLIENT_CA='{tls_key}': not a CA certificate bundle in PEM format"),
    ({"TRADER_TLS_KEY": None}, "TRADER_TLS_CERT is set but TRADER_TLS_KEY is not"),
    ({"TRADER_TLS_CERT": None}, "TRADER_TLS_KEY is set but TRADER_TLS_CERT is not"),
    ({"TRADER_TLS_CA": None}, "TRADER_TLS_CERT is set but TRADER_TLS_CA is not"),
    ({"TRADER_TLS_CERT": None, "TRADER_TLS_KEY": None}, "TRADER_TLS_CA is set but TRADER_TLS_CERT and"),
    ({"TRADER_TLS_CLIENT_KEY": "{client_key}"}, "TRADER_TLS_CLIENT_KEY is set but TRADER_TLS_CLIENT_CERT is not"),
    ({"TRADER_TLS_CLIENT_CERT": "{client_crt}", "TRADER_TLS_CLIENT_KEY": "{tls_key}"},
     "TRADER_TLS_CLIENT_KEY='{tls_key}': not the private key of the certificate in TRADER_TLS_CLIENT_CERT"),
])
def test_wrong_tls_settings_are_named(pki, bad_files, change, expected):
    files = {**bad_files, **{name.replace(".", "_"): pki.path(name)
                             for name in ("tls.crt", "tls.key", "client.key", "client.crt")}}
    env = pki.server_env()
    for name, value in change.items():
        if value is None:
            env.pop(name)
        else:
            env[name] = value.format(**files)
    found = problems_of(env)
    assert len(found) == 1, found
    assert found[0].startswith(expected.format(**files)), found


def test_tls_problems_without_tls(pki):
    found = problems_of({"TRADER_TLS_CLIENT_CA": pki.path("ca.crt")})
    assert found == ["TRADER_TLS_CLIENT_CA is set but TRADER_TLS_CERT and TRADER_TLS_KEY are not: client "
                     "certificates are checked only over TLS"]
    with pytest.raises(ConfigError) as caught:
        load_client_tls({name: value for name, value in pki.tool_env().items() if name != "TRADER_TLS_CA"})
    [problem] = caught.value.problems
    assert problem.startswith("TRADER_TLS_CLIENT_CERT and TRADER_TLS_CLIENT_KEY need TRADER_TLS_CA")


def test_a_service_with_wrong_tls_files_exits_with_code_2(pki, bad_files, tmp_path):
    env = {"TRADER_API_TOKEN": TOKEN, "TRADER_DISPLAY_ADDR": "127.0.0.1:1", "TRADER_VAR_DIR": str(tmp_path),
           **pki.server_env(), "TRADER_TLS_KEY": pki.path("client.key"), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "services.display"], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "TRADER_TLS_KEY=" in done.stderr and "not the private key of the certificate" in done.stderr


# --- servers and clients ----------------------------------------------------------------------

def test_tls_end_to_end_and_plain_text_refused(pki):
    config, counter, running = tls_server(pki.server_env())
    with running:
        with raw_channel(config.listen_address, load_client_tls({"TRADER_TLS_CA": pki.path("ca.crt")})) as channel:
            assert call_raw(channel, METHOD, metadata=AUTH, timeout=5) == b"pong"
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
        with grpc.insecure_channel(config.listen_address) as channel:
            assert refused(channel) == grpc.StatusCode.UNAVAILABLE
    assert counter.calls == 1


def test_a_client_trusting_another_ca_refuses_the_server(pki, other_pki):
    config, counter, running = tls_server(pki.server_env())
    with running, raw_channel(config.listen_address, load_client_tls(other_pki.tool_env(False))) as channel:
        assert refused(channel) == grpc.StatusCode.UNAVAILABLE
    assert counter.calls == 0


def test_mutual_tls_refuses_clients_without_a_certificate_of_its_ca(pki, other_pki):
    config, counter, running = tls_server(pki.server_env(mutual=True))
    with running:
        with raw_channel(config.listen_address, load_client_tls(pki.tool_env(client_certificate=False))) as channel:
            assert refused(channel) == grpc.StatusCode.UNAVAILABLE
        other_ca_client = load_client_tls({**pki.tool_env(), "TRADER_TLS_CLIENT_CERT": other_pki.path("client.crt"),
                                           "TRADER_TLS_CLIENT_KEY": other_pki.path("client.key")})
        with raw_channel(config.listen_address, other_ca_client) as channel:
            assert refused(channel) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(config.listen_address) as channel:
            assert refused(channel) == grpc.StatusCode.UNAVAILABLE
        assert counter.calls == 0
        with raw_channel(config.listen_address, load_client_tls(pki.tool_env())) as channel:
            assert call_raw(channel, METHOD, metadata=AUTH, timeout=5) == b"pong"
    assert counter.calls == 1


def test_tls_keeps_the_token_rule(pki):
    config, counter, running = tls_server(pki.server_env(mutual=True))
    with running, raw_channel(config.listen_address, load_client_tls(pki.tool_env())) as channel:
        with pytest.raises(grpc.RpcError) as caught:
            call_raw(channel, METHOD, timeout=5)
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)  # open


def test_service_clients_and_tools_call_over_mutual_tls(pki, monkeypatch):
    config, counter, running = tls_server(pki.server_env(mutual=True))
    peer = load_common("gateway", {"TRADER_API_TOKEN": TOKEN, "TRADER_DISPLAY_ADDR": config.listen_address,
                                   **pki.server_env(mutual=True)})
    with running:
        clients = Clients(peer)
        try:
            assert call_raw(clients.channel("display"), METHOD) == b"pong"
            assert clients.health("display") == "SERVING"
        finally:
            clients.close()
        for name, value in pki.tool_env().items():
            monkeypatch.setenv(name, value)
        with open_channel(config.listen_address, TOKEN, 5) as channel:  # TLS from the environment
            assert call_raw(channel, METHOD) == b"pong"
        with open_channel(config.listen_address, TOKEN, 1, tls=None) as channel, \
                pytest.raises(grpc.RpcError) as caught:
            call_raw(channel, METHOD)  # waits for a connection (wait_for_ready) that TLS never grants
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert counter.calls == 2


def test_health_probe_over_mutual_tls(pki, capsys):
    config, _, running = tls_server(pki.server_env(mutual=True))
    address = ["--address", config.listen_address, "--timeout", "5"]
    with running:
        # inside a service's container: the service's own settings
        assert healthprobe.main(["display", *address], pki.server_env(mutual=True)) == 0
        assert capsys.readouterr().out.endswith(": SERVING\n")
        assert healthprobe.main(["display", *address], {}) == 1  # plain text: refused
        assert capsys.readouterr().out.endswith(": UNAVAILABLE\n")
    broken = {**pki.server_env(), "TRADER_TLS_CA": pki.path("tls.key")}
    assert healthprobe.main(["display", *address], broken) == 1
    assert "TRADER_TLS_CA=" in capsys.readouterr().out


def test_trader_call_over_mutual_tls(pki, monkeypatch):
    from typer.testing import CliRunner

    from gateway.cli import app

    for name in ("TRADER_TLS_CA", "TRADER_TLS_CERT", "TRADER_TLS_KEY", "TRADER_TLS_CLIENT_CERT",
                 "TRADER_TLS_CLIENT_KEY", "TRADER_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    config, _, running = tls_server(pki.server_env(mutual=True))
    flags = ["--cacert", pki.path("ca.crt"), "--cert", pki.path("client.crt"), "--key", pki.path("client.key")]
    at = ["--address", config.listen_address]

    def trader(*args: str, token: str | None = None):
        return CliRunner().invoke(app, ["call", *args], env={"TRADER_API_TOKEN": token} if token else {})

    with running:
        listed = trader("grpc.health.v1.Health", *at, *flags)
        assert listed.exit_code == 0 and "grpc.health.v1.Health/List" in listed.stdout, listed.output
        health = trader("grpc.health.v1.Health/List", *at, *flags, token=TOKEN)
        assert health.exit_code == 0 and '"trader.display.v1.Display"' in health.stdout
        without_certificate = trader("grpc.health.v1.Health/List", *at, "--cacert", pki.path("ca.crt"))
        assert without_certificate.exit_code == 1 and "UNAVAILABLE" in without_certificate.stderr
    not_a_ca = trader("display", *at, "--cacert", pki.path("tls.key"))
    assert not_a_ca.exit_code == 2 and "TRADER_TLS_CA=" in not_a_ca.stderr


def test_grpcurl_over_mutual_tls(pki):
    config, _, running = tls_server(pki.server_env(mutual=True))
    grpcurl = grpcurl_path()
    with running:
        done = subprocess.run([grpcurl, "-cacert", pki.path("ca.crt"), "-cert", pki.path("client.crt"), "-key",
                               pki.path("client.key"), config.listen_address, "describe", "grpc.health.v1.Health"],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "rpc List" in done.stdout, done.stderr
        for flags in (["-cacert", pki.path("ca.crt")], ["-plaintext"]):
            done = subprocess.run([grpcurl, *flags, config.listen_address, "list"],
                                  capture_output=True, text=True, timeout=60)
            assert done.returncode != 0


def test_the_launcher_prints_the_grpcurl_tls_flags(pki):
    env = {"TRADER_API_TOKEN": TOKEN, **pki.server_env(mutual=True)}
    assert grpcurl_tls_flags(env, load_common("gateway", env)) == \
        f"-cacert {pki.path('ca.crt')} -cert {pki.path('tls.crt')} -key {pki.path('tls.key')}"
    env |= pki.tool_env()
    assert grpcurl_tls_flags(env, load_common("gateway", env)).endswith(
        f"-cert {pki.path('client.crt')} -key {pki.path('client.key')}")
    plain = {"TRADER_API_TOKEN": TOKEN}
    assert grpcurl_tls_flags(plain, load_common("gateway", plain)) == "-plaintext"


def test_make_certs_reuses_the_ca(pki, tmp_path):
    copy = tmp_path / "pki"
    shutil.copytree(pki.directory, copy)
    again = make_pki(copy)
    assert Path(again.path("ca.crt")).read_bytes() == Path(pki.path("ca.crt")).read_bytes()
    assert Path(again.path("tls.crt")).read_bytes() != Path(pki.path("tls.crt")).read_bytes()
    assert load_common("display", {"TRADER_API_TOKEN": TOKEN, **again.server_env()}).server_tls is not None
