"""The validating admission webhook: spec immutable, specs checked at create.

The decisions are `engine.admission`'s; this module serves them with kopf's
built-in webhook server, configured from the environment (the Helm chart
sets it; `PGSR_WEBHOOK_PORT` unset or 0: no webhook, and no handler is
registered, since kopf refuses to start with handlers and no server):

- PGSR_WEBHOOK_PORT          port to serve HTTPS on (the chart: 9443)
- PGSR_WEBHOOK_ADDR          address to listen on (default 0.0.0.0)
- PGSR_WEBHOOK_CERTFILE,     the server's certificate and key (the chart mounts
  PGSR_WEBHOOK_PKEYFILE      Helm's or cert-manager's); unset: a self-signed
                             pair is made at start (development)
- PGSR_WEBHOOK_MANAGED       development: the name of a ValidatingWebhookConfiguration
                             the operator writes itself, pointing at
- PGSR_WEBHOOK_HOST          the host the API server calls (default 127.0.0.1)
- PGSR_WEBHOOK_FAILURE_POLICY  of the managed configuration: Ignore (default) or Fail

Only CREATE and UPDATE of `schemarestores` reach it: status is a subresource
the webhook is not registered for, and a deletion is never refused.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kopf

from ..crd import GROUP, PLURAL, VERSION
from ..engine.admission import refuse_create, refuse_update

HANDLER_ID = "validate-spec"     # the URL path (/validate-spec) and the webhook's first label


@dataclass(frozen=True)
class WebhookSettings:
    port: int = 0
    addr: str = "0.0.0.0"
    host: str = "127.0.0.1"
    certfile: str = ""
    pkeyfile: str = ""
    managed: str = ""
    failure_policy: str = "Ignore"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "WebhookSettings":
        env = dict(os.environ if env is None else env)
        get = lambda name, default: env.get(f"PGSR_WEBHOOK_{name}") or default  # noqa: E731
        policy = get("FAILURE_POLICY", "Ignore")
        if policy not in ("Ignore", "Fail"):
            raise ValueError(f"PGSR_WEBHOOK_FAILURE_POLICY must be Ignore or Fail, not {policy!r}")
        return cls(port=int(get("PORT", "0")), addr=get("ADDR", cls.addr),
                   host=get("HOST", cls.host), certfile=get("CERTFILE", ""),
                   pkeyfile=get("PKEYFILE", ""), managed=get("MANAGED", ""),
                   failure_policy=policy)

    @property
    def enabled(self) -> bool:
        return self.port > 0


SETTINGS = WebhookSettings.from_env()


def validate(operation: str | None, namespace: str | None, old: Any, new: Any,
             **_: Any) -> None:
    """Refuse what the operator could not honour; say why (kubectl prints it)."""
    from .handlers import CONFIG   # the operator's defaults (handlers imports this module)
    if operation == "CREATE":
        spec = dict((new or {}).get("spec") or {})
        refused = refuse_create(CONFIG.effective_spec(spec))
    elif operation == "UPDATE":
        refused = refuse_update((old or {}).get("spec"), (new or {}).get("spec"))
    else:
        refused = None
    if refused:
        raise kopf.AdmissionError(refused, code=422)


if SETTINGS.enabled:
    kopf.on.validate(GROUP, VERSION, PLURAL, id=HANDLER_ID, operations=["CREATE", "UPDATE"],
                     side_effects=False,
                     ignore_failures=SETTINGS.failure_policy == "Ignore")(validate)


def configure(settings: kopf.OperatorSettings, webhook: WebhookSettings = SETTINGS) -> None:
    """Serve the webhook (from the startup handler) when it is enabled."""
    if not webhook.enabled:
        return
    certfile, pkeyfile = webhook.certfile, webhook.pkeyfile
    if not (certfile and pkeyfile):
        certfile, pkeyfile = self_signed([webhook.host, webhook.addr])
    settings.admission.server = kopf.WebhookServer(
        addr=webhook.addr, port=webhook.port, host=webhook.host,
        certfile=certfile, pkeyfile=pkeyfile)
    if webhook.managed:
        settings.admission.managed = webhook.managed


def self_signed(hosts: list[str]) -> tuple[str, str]:
    """A development certificate for `hosts` (also its own CA), in a private
    temporary directory. kopf's own generator needs oscrypto, which cannot
    read OpenSSL 3.0.1x's version; `cryptography` can."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    sans: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            sans.append(x509.DNSName(host))
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    folder = Path(tempfile.mkdtemp(prefix="pgsr-webhook-"))
    certfile, pkeyfile = folder / "tls.crt", folder / "tls.key"
    certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pkeyfile.touch(mode=0o600)
    pkeyfile.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(certfile), str(pkeyfile)
