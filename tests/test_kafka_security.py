"""The secured broker's client side, without a broker: deploy/kafka-security/make-certs.sh
makes certificates that librdkafka accepts for mutual TLS (it loads and checks the CA, the
certificate and the key when a client is constructed), and a worker or command started with
Kafka secrets never writes them to its output."""

import os
import socket
import ssl
import subprocess
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from confluent_kafka import KafkaException, Producer

from kafka_bridge.client import producer_config
from testing.polling import wait_until
from tools.supervisor import REPO_ROOT, Supervisor, current_database_url, manage

MAKE_CERTS = REPO_ROOT / "deploy" / "kafka-security" / "make-certs.sh"
KEY_PASSWORD = "client-key-pa55word-never-shown"
SASL_PASSWORD = "scram-pa55word-never-shown"


def _make_certs(out: Path) -> Path:
    result = subprocess.run(
        [str(MAKE_CERTS), str(out)],
        env={**os.environ, "KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert KEY_PASSWORD not in result.stdout + result.stderr
    return out


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The script's output, the client key encrypted with KEY_PASSWORD."""
    return _make_certs(tmp_path_factory.mktemp("kafka-certs"))


@contextmanager
def _foreign_tls_listener(tmp_path: Path) -> Iterator[int]:
    """A TLS server on a free loopback port whose certificate another CA signed: every
    client handshake fails at once (certificate verification), as it would against a broker
    of another cluster."""
    foreign = _make_certs(tmp_path / "foreign-certs")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(foreign / "broker-keystore.pem")
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except TimeoutError:
                continue
            connection.settimeout(5)
            try:
                with context.wrap_socket(connection, server_side=True) as tls:
                    tls.recv(1)
            except OSError:  # the client's refusal (ssl.SSLError is an OSError)
                pass
            finally:
                connection.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def _mutual_tls(settings, certificates: Path, **overrides: str) -> None:  # type: ignore[no-untyped-def]
    settings.KAFKA = {
        **settings.KAFKA,
        "BOOTSTRAP_SERVERS": "kafka:9094",
        "SECURITY_PROTOCOL": "SSL",
        "SASL_MECHANISM": "",
        "SASL_USERNAME": "",
        "SASL_PASSWORD": "",
        "SSL_CA_LOCATION": str(certificates / "ca.pem"),
        "SSL_CERTIFICATE_LOCATION": str(certificates / "client.pem"),
        "SSL_KEY_LOCATION": str(certificates / "client.key"),
        "SSL_KEY_PASSWORD": KEY_PASSWORD,
        "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM": "",
        **overrides,
    }


def test_the_script_makes_a_client_certificate_librdkafka_accepts(settings, certificates: Path):
    # Given the app's mutual-TLS settings pointing at the script's files
    _mutual_tls(settings, certificates)

    # When the relay's producer is constructed (librdkafka loads the CA, the certificate and
    # the encrypted key, and checks that key and certificate belong together)
    producer = Producer(producer_config("mtls-test"))

    # Then it is: no broker was needed for that
    assert producer.flush(0) == 0


@pytest.mark.parametrize(
    ("overrides", "refused"),
    [
        ({"SSL_KEY_PASSWORD": "not-the-password"}, "ssl.key.location"),
        ({"SSL_CERTIFICATE_LOCATION": "ca.pem"}, "ssl.key.location"),  # key of another cert
        ({"SSL_CA_LOCATION": "client.key"}, "ssl.ca.location"),  # no certificate in it
    ],
    ids=["wrong key password", "certificate and key mismatch", "not a CA file"],
)
def test_librdkafka_refuses_files_that_do_not_fit(
    settings, certificates: Path, overrides: dict[str, str], refused: str
):
    # Given one of the files or the password wrong
    located = {
        key: str(certificates / value) if key.endswith("_LOCATION") else value
        for key, value in overrides.items()
    }
    _mutual_tls(settings, certificates, **located)

    # Then the producer cannot even be constructed, and the error names the setting
    with pytest.raises(KafkaException, match=refused) as error:
        Producer(producer_config("mtls-test"))
    assert KEY_PASSWORD not in str(error.value)


def test_the_broker_certificate_names_every_compose_broker_host(certificates: Path):
    names = subprocess.run(
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", "broker-keystore.pem"],
        cwd=certificates,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for host in ("kafka", "kafka-2", "kafka-3", "localhost"):
        assert f"DNS:{host}," in names or names.rstrip().endswith(f"DNS:{host}")
    # And the keystore holds the broker's key unencrypted (Kafka's PEM keystore, no key
    # password), its certificate and the CA's
    keystore = (certificates / "broker-keystore.pem").read_text()
    assert keystore.count("-----BEGIN PRIVATE KEY-----") == 1
    assert keystore.count("-----BEGIN CERTIFICATE-----") == 2
    assert (
        (certificates / "client.key")
        .read_text()
        .startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    )


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_worker_and_commands_never_write_the_kafka_secrets(certificates: Path, tmp_path: Path):
    # Given SASL_SSL with a client certificate too, so that both secrets are in use, against
    # a TLS listener that no client of ours trusts: every connection fails its handshake, and
    # the failures are logged
    with _foreign_tls_listener(tmp_path) as port:
        environment = {
            **{k: v for k, v in os.environ.items() if k != "METRICS_PORT"},
            "DATABASE_URL": current_database_url(),
            "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
            "KAFKA_NAMESPACE": f"{os.environ.get('KAFKA_NAMESPACE', '')}{uuid.uuid4().hex[:6]}-",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "KAFKA_SASL_USERNAME": "ecommerce",
            "KAFKA_SASL_PASSWORD": SASL_PASSWORD,
            "KAFKA_SSL_CA_LOCATION": str(certificates / "ca.pem"),
            "KAFKA_SSL_CERTIFICATE_LOCATION": str(certificates / "client.pem"),
            "KAFKA_SSL_KEY_LOCATION": str(certificates / "client.key"),
            "KAFKA_SSL_KEY_PASSWORD": KEY_PASSWORD,
            "LOG_LEVEL": "DEBUG",
            "LOG_FORMAT": "json",
            "PYTHONUNBUFFERED": "1",
        }
        outputs = []

        # When a consumer worker runs until its connections have failed, and stops
        processes = Supervisor(env=environment, log_dir=tmp_path)
        worker = processes.start("run_consumer", "dead_letters", label="consumer")
        try:
            wait_until(
                lambda: "SSL handshake failed" in worker.log() or not worker.running,
                timeout=60,
                interval=0.2,
                message="the worker's TLS handshake with the untrusted listener to fail",
            )
        finally:
            codes = processes.stop()
        outputs.append(worker.log())
        assert codes == {"consumer#0": 0}, worker.log()[-3000:]
        assert "certificate verify failed" in worker.log()

        # And when commands run: one that cannot reach the broker, and the config dump
        for command in (("kafka_topics", "--list-only", "--timeout", "2"), ("kafka_config",)):
            result = subprocess.run(
                manage(*command),
                cwd=REPO_ROOT,
                env=environment,
                capture_output=True,
                text=True,
                timeout=120,
            )
            outputs.append(result.stdout + result.stderr)
    assert "Kafka is not reachable" in outputs[1]
    assert "sasl.password = ********" in outputs[2]

    # Then no output holds either secret
    for output in outputs:
        assert SASL_PASSWORD not in output
        assert KEY_PASSWORD not in output
