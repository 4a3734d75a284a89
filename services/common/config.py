"""Environment configuration, validated at start.

Every problem is collected and reported at once (`ConfigError`), naming the variable, what it
holds and what it should hold, so a wrong setup fails before the server binds a port.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# name -> (gRPC service name, default port)
SERVICES: dict[str, tuple[str, int]] = {
    "gateway": ("trader.gateway.v1.Gateway", 50050),
    "data": ("trader.data.v1.MarketData", 50051),
    "portfolio": ("trader.portfolio.v1.Portfolio", 50052),
    "planner": ("trader.planner.v1.Planner", 50053),
    "trading": ("trader.trading.v1.Trading", 50054),
    "display": ("trader.display.v1.Display", 50055),
}

# Modes: replay and backtest (bundled or imported history, paper broker), research (plans
# only: trading refuses every order), paper (wall clock, live prices, paper broker) and live
# (Tradernet; the trading service also needs credentials and an explicit confirmation).
SUPPORTED_MODES = ("replay", "backtest", "research", "paper", "live")
KNOWN_MODES = ("replay", "backtest", "paper", "research", "live")
SIMULATED_MODES = ("replay", "backtest")  # "now" is the caller's simulated time, never the wall clock

_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(\d{1,5})$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(Exception):
    """One or more environment variables are missing or malformed."""

    def __init__(self, problems: list[str]):
        super().__init__("invalid configuration:\n  " + "\n  ".join(problems))
        self.problems = problems


class Env:
    """Reads variables from a mapping and collects every problem instead of stopping at the first."""

    def __init__(self, environ: Mapping[str, str] | None = None):
        self.environ = os.environ if environ is None else environ
        self.problems: list[str] = []

    def raw(self, name: str) -> str | None:
        value = self.environ.get(name)
        return value.strip() if value is not None and value.strip() != "" else None

    def text(self, name: str, default: str) -> str:
        return self.raw(name) or default

    def number(self, name: str, default: float, *, minimum: float, maximum: float) -> float:
        value = self.raw(name)
        if value is None:
            return default
        try:
            number = float(value)
        except ValueError:
            self.problems.append(f"{name}={value!r}: expected a number")
            return default
        if not minimum <= number <= maximum:
            self.problems.append(f"{name}={value!r}: must be between {minimum:g} and {maximum:g}")
            return default
        return number

    def flag(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        self.problems.append(f"{name}={value!r}: expected one of 1/0, true/false, yes/no, on/off")
        return default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = (self.raw(name) or default).lower()
        if value not in allowed:
            self.problems.append(f"{name}={value!r}: expected one of {', '.join(allowed)}")
            return default
        return value

    def currency(self, name: str, default: str) -> str:
        value = (self.raw(name) or default).upper()
        if not _CURRENCY.match(value):
            self.problems.append(f"{name}={value!r}: expected an ISO 4217 code such as EUR")
            return default
        return value

    def address(self, name: str, default: str) -> str:
        value = self.raw(name) or default
        match = _ADDRESS.match(value)
        if not match or not 0 < int(match.group(2)) < 65536:
            self.problems.append(f"{name}={value!r}: expected host:port, e.g. 127.0.0.1:50051")
            return default
        return value

    def host(self, name: str) -> str | None:
        """A host or IP alone (`0.0.0.0`, `[::]`, `trader-data`), or None when unset."""
        value = self.raw(name)
        if value is not None and not _ADDRESS.match(f"{value}:1"):
            self.problems.append(f"{name}={value!r}: expected a host or IP address, e.g. 0.0.0.0 or [::]")
            return None
        return value

    def check(self) -> None:
        if self.problems:
            raise ConfigError(self.problems)


def default_fx_rates(base: str) -> str:
    """TRADER_FX_RATES when unset: the fallback rate is a EUR account's; another base currency
    gets none unless it sets its own."""
    return "USD=1.10" if base == "EUR" else ""


def parse_fx_rates(text: str, base: str) -> dict[str, float]:
    """Parse `USD=1.08,GBP=0.85`: units of each currency per 1 unit of the base (decision 1)."""
    rates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        currency, sep, value = part.partition("=")
        currency = currency.strip().upper()
        if not sep or not _CURRENCY.match(currency):
            raise ValueError(f"{part!r} is not CUR=rate")
        try:
            rate = float(value)
        except ValueError as exc:
            raise ValueError(f"{part!r}: rate is not a number") from exc
        if not rate > 0 or rate != rate or rate == float("inf"):
            raise ValueError(f"{part!r}: rate must be a positive number")
        if currency == base:
            raise ValueError(f"{part!r}: the base currency has no rate")
        rates[currency] = rate
    return rates


def db_url_variable(service: str) -> str:
    """The variable holding a service's database URL, e.g. TRADER_TRADING_DB_URL."""
    return f"TRADER_{service.upper()}_DB_URL"


# --- TLS (README, "Deploy", "TLS") ------------------------------------------------------------
# Servers: TRADER_TLS_CERT + TRADER_TLS_KEY turn TLS on; TRADER_TLS_CLIENT_CA makes it mutual
# (clients must present a certificate signed by that CA). Clients: TRADER_TLS_CA (the CA bundle
# that signed the servers' certificates) turns TLS on; TRADER_TLS_CLIENT_CERT + _KEY is the
# certificate they present, by default TRADER_TLS_CERT + _KEY (a service calls its peers with its
# own certificate). PEM files, read once at start; a renewed certificate needs a restart.
TLS_CERT, TLS_KEY, TLS_CLIENT_CA = "TRADER_TLS_CERT", "TRADER_TLS_KEY", "TRADER_TLS_CLIENT_CA"
TLS_CA, TLS_CLIENT_CERT, TLS_CLIENT_KEY = "TRADER_TLS_CA", "TRADER_TLS_CLIENT_CERT", "TRADER_TLS_CLIENT_KEY"


@dataclass(frozen=True)
class ServerTls:
    """A server's certificate chain and private key (PEM); with `client_ca`, mutual TLS."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    client_ca: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class ClientTls:
    """The CA bundle a client trusts (PEM) and the certificate and key it presents, if any."""

    root_certificates: bytes = field(repr=False)
    certificate_chain: bytes | None = field(default=None, repr=False)
    private_key: bytes | None = field(default=None, repr=False)


class _EncryptedKey(Exception):
    pass


def _refuse_password() -> bytes:
    raise _EncryptedKey  # instead of OpenSSL asking on the terminal


def _pem_file(env: Env, name: str) -> tuple[str, bytes] | None:
    path = env.raw(name)
    if path is None:
        return None
    try:
        return path, Path(path).read_bytes()
    except OSError as exc:
        env.problems.append(f"{name}={path!r}: cannot read it: {exc.strerror}")
        return None


def _has_certificates(env: Env, name: str, path: str, what: str) -> bool:
    try:
        ssl.create_default_context(cafile=path)
    except (ssl.SSLError, ValueError) as exc:
        env.problems.append(f"{name}={path!r}: not {what} in PEM format ({exc})")
        return False
    return True


def tls_certificates(env: Env, name: str) -> bytes | None:
    """A PEM CA bundle named by variable `name`, checked; None when unset or wrong (a problem)."""
    found = _pem_file(env, name)
    if found is None or not _has_certificates(env, name, found[0], "a CA certificate bundle"):
        return None
    return found[1]


def tls_key_pair(env: Env, cert_name: str, key_name: str) -> tuple[bytes, bytes] | None:
    """A certificate chain and its private key (PEM), both given or neither, and matching."""
    if (env.raw(cert_name) is None) != (env.raw(key_name) is None):
        given, missing = (cert_name, key_name) if env.raw(key_name) is None else (key_name, cert_name)
        env.problems.append(f"{given} is set but {missing} is not: a certificate needs its private key and the "
                            "key its certificate")
        return None
    certificate, key = _pem_file(env, cert_name), _pem_file(env, key_name)
    if certificate is None or key is None:
        return None
    if not _has_certificates(env, cert_name, certificate[0], "a certificate"):
        return None
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_cert_chain(certificate[0], key[0], password=_refuse_password)
    except _EncryptedKey:
        env.problems.append(f"{key_name}={key[0]!r}: the key is encrypted; gRPC needs it unencrypted "
                            "(`openssl pkey -in KEY -out PLAIN_KEY`, then keep PLAIN_KEY readable by the service only)")
        return None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            env.problems.append(f"{key_name}={key[0]!r}: not the private key of the certificate in "
                                f"{cert_name}={certificate[0]!r}")
        else:
            env.problems.append(f"{key_name}={key[0]!r}: not a private key in PEM format ({exc})")
        return None
    return certificate[1], key[1]


def server_tls(env: Env) -> ServerTls | None:
    """TRADER_TLS_CERT, TRADER_TLS_KEY and TRADER_TLS_CLIENT_CA; None when TLS is off."""
    pair = tls_key_pair(env, TLS_CERT, TLS_KEY)
    client_ca = tls_certificates(env, TLS_CLIENT_CA)
    if env.raw(TLS_CLIENT_CA) is not None and env.raw(TLS_CERT) is None and env.raw(TLS_KEY) is None:
        env.problems.append(f"{TLS_CLIENT_CA} is set but {TLS_CERT} and {TLS_KEY} are not: client certificates "
                            "are checked only over TLS")
    return None if pair is None else ServerTls(pair[0], pair[1], client_ca)


def client_tls(env: Env, own: tuple[bytes, bytes] | None) -> ClientTls | None:
    """TRADER_TLS_CA, and TRADER_TLS_CLIENT_CERT + _KEY or else `own` (the process's certificate
    and key); None when the client speaks plain text."""
    roots = tls_certificates(env, TLS_CA)
    pair = tls_key_pair(env, TLS_CLIENT_CERT, TLS_CLIENT_KEY)
    if env.raw(TLS_CA) is None:
        if env.raw(TLS_CLIENT_CERT) is not None or env.raw(TLS_CLIENT_KEY) is not None:
            env.problems.append(f"{TLS_CLIENT_CERT} and {TLS_CLIENT_KEY} need {TLS_CA} (the CA bundle that signed "
                                "the servers' certificates): client certificates are sent only over TLS")
        return None
    if roots is None:
        return None
    if pair is None and env.raw(TLS_CLIENT_CERT) is None:
        pair = own
    return ClientTls(roots, *(pair or (None, None)))


def load_client_tls(environ: Mapping[str, str] | None = None) -> ClientTls | None:
    """A client tool's TLS settings (grpcurl-like callers, the health probe); raises ConfigError."""
    env = Env(environ)
    tls = client_tls(env, tls_key_pair(env, TLS_CERT, TLS_KEY))
    env.check()
    return tls


# --- OpenTelemetry's exporter protocol (the standard OTEL_* variables; tracing.py) -------------
OTLP_PROTOCOLS = ("grpc", "http/protobuf")


def otlp_traces_protocol(env: Env) -> str:
    """OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, else OTEL_EXPORTER_OTLP_PROTOCOL, else grpc (what
    opentelemetry-python's auto-configuration defaults to, and what this project always used)."""
    for name in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        value = env.raw(name)
        if value is None:
            continue
        protocol = value.lower()
        if protocol not in OTLP_PROTOCOLS:
            why = " (OpenTelemetry for Python has no http/json exporter)" if protocol == "http/json" else ""
            env.problems.append(f"{name}={value!r}: expected grpc or http/protobuf{why}")
            return OTLP_PROTOCOLS[0]
        return protocol
    return OTLP_PROTOCOLS[0]


@dataclass(frozen=True)
class CommonConfig:
    """What every process needs, read from TRADER_* variables."""

    service: str
    addresses: dict[str, str]
    listen_address: str
    api_token: str | None  # None only when auth is explicitly disabled
    mode: str
    base_currency: str
    fx_rates: dict[str, float]
    var_dir: Path
    db_url: str
    call_timeout_s: float
    shutdown_grace_s: float
    log_level: str
    server_tls: ServerTls | None = None   # how this service serves: None is plain text
    client_tls: ClientTls | None = None   # how it calls its peers: None is plain text

    def address_of(self, service: str) -> str:
        return self.addresses[service]


def load_common(service: str, environ: Mapping[str, str] | None = None, env: Env | None = None) -> CommonConfig:
    """Read the shared settings.

    Pass `env` to collect a service's own problems into the same report (the caller then calls
    `env.check()`); without it, problems raise `ConfigError` here.
    """
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    own_env = env is None
    env = env or Env(environ)
    addresses = {
        name: env.address(f"TRADER_{name.upper()}_ADDR", f"127.0.0.1:{port}")
        for name, (_, port) in SERVICES.items()
    }
    token = env.raw("TRADER_API_TOKEN")
    auth_disabled = env.flag("TRADER_AUTH_DISABLED", False)
    if token is None and not auth_disabled:
        env.problems.append(
            "TRADER_API_TOKEN is not set: set a token (clients send 'authorization: Bearer <token>'),"
            " or set TRADER_AUTH_DISABLED=1 to run without authentication (tests only)"
        )
    elif token is not None and len(token) < 16:
        env.problems.append("TRADER_API_TOKEN: must be at least 16 characters")
    mode = env.choice("TRADER_MODE", "replay", KNOWN_MODES)
    if mode not in SUPPORTED_MODES:
        env.problems.append(
            f"TRADER_MODE={mode!r}: not available in this build (supported: {', '.join(SUPPORTED_MODES)})"
        )
    base = env.currency("TRADER_BASE_CURRENCY", "EUR")
    fx_text = env.text("TRADER_FX_RATES", default_fx_rates(base))
    try:
        fx_rates = parse_fx_rates(fx_text, base)
    except ValueError as exc:
        env.problems.append(f"TRADER_FX_RATES={fx_text!r}: {exc}")
        fx_rates = {}
    var_dir = Path(env.text("TRADER_VAR_DIR", str(REPO_ROOT / "var")))
    db_url = env.text(db_url_variable(service), f"sqlite:///{var_dir / (service + '.db')}")
    # Containers listen on every interface (TRADER_LISTEN_HOST=0.0.0.0) while peers connect to
    # TRADER_<SERVICE>_ADDR (a service name); the port is always the service's own.
    listen_host = env.host("TRADER_LISTEN_HOST")
    listen_address = addresses[service]
    if listen_host is not None:
        listen_address = f"{listen_host}:{listen_address.rsplit(':', 1)[1]}"
    otlp_traces_protocol(env)  # checked here with the rest; tracing.py reads it when it starts
    serving_tls = server_tls(env)
    calling_tls = client_tls(env, serving_tls and (serving_tls.certificate_chain, serving_tls.private_key))
    # Every service serves and calls alike, or the peers could not talk to each other.
    if env.raw(TLS_CERT) is not None and env.raw(TLS_CA) is None:
        env.problems.append(f"{TLS_CERT} is set but {TLS_CA} is not: the services call each other over TLS, so "
                            "each needs the CA bundle that signed its peers' certificates")
    elif env.raw(TLS_CA) is not None and env.raw(TLS_CERT) is None and env.raw(TLS_KEY) is None:
        env.problems.append(f"{TLS_CA} is set but {TLS_CERT} and {TLS_KEY} are not: the services call each other "
                            "over TLS, so each must also serve over TLS")
    config = CommonConfig(
        service=service,
        addresses=addresses,
        listen_address=listen_address,
        api_token=None if auth_disabled else token,
        mode=mode,
        base_currency=base,
        fx_rates=fx_rates,
        var_dir=var_dir,
        db_url=db_url,
        call_timeout_s=env.number("TRADER_CALL_TIMEOUT_S", 10.0, minimum=0.1, maximum=600),
        shutdown_grace_s=env.number("TRADER_SHUTDOWN_GRACE_S", 3.0, minimum=0, maximum=60),
        log_level=env.choice("TRADER_LOG_LEVEL", "info", ("debug", "info", "warning", "error")),
        server_tls=serving_tls,
        client_tls=calling_tls,
    )
    if own_env:
        env.check()
    return config
