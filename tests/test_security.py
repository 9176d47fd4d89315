"""Security end to end: named listeners, SASL (PLAIN, SCRAM), TLS and ACLs,
with the clients' usual `security.protocol` / `sasl.mechanism` settings.
Certificates are made by the test (the `cryptography` package), never
checked in."""

import socket
import struct
import time
import uuid

import pytest

from conftest import Broker

ck = pytest.importorskip("confluent_kafka")
from confluent_kafka import Consumer, Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


class SecureBroker(Broker):
    """A broker started with `--listeners`: learns every listener's port from
    the `listener NAME://addr` lines printed after `listening on`."""

    def __init__(self, data_dir, listeners, extra_args=()):
        super().__init__(data_dir, ["--listeners", ",".join(listeners)] + list(extra_args))
        self.names = [l.split("://")[0].upper() for l in listeners]
        self.addrs = {}

    def start(self, timeout=30):
        super().start(timeout)
        for _ in self.names:
            line = self.proc.stdout.readline().strip()
            assert line.startswith("listener "), line
            name, addr = line[len("listener "):].split("://")
            self.addrs[name] = addr
        return self

    def addr(self, name):
        return self.addrs[name]


@pytest.fixture
def secure_factory(tmp_path):
    started = []

    def make(listeners, extra_args=()):
        d = tmp_path / f"broker-{len(started)}"
        d.mkdir()
        b = SecureBroker(d, listeners, extra_args).start()
        started.append(b)
        return b

    yield make
    for b in started:
        if b.proc is not None:
            b.proc.kill()
            b.proc.wait()


def wait_log(b, text, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in b.log_text():
            return True
        time.sleep(0.1)
    return False


def metadata_brokers(bootstrap=None, **conf):
    if bootstrap is not None:
        conf["bootstrap.servers"] = bootstrap
    a = AdminClient(conf)
    md = a.list_topics(timeout=20)
    return {b.id: f"{b.host}:{b.port}" for b in md.brokers.values()}


# ---------------------------------------------------------------- listeners


def test_metadata_advertises_the_listener_the_client_came_in_on(secure_factory):
    b = secure_factory(["PLAINTEXT://127.0.0.1:0", "INTERNAL://127.0.0.1:0"],
                       ["--listener-security-protocol-map", "INTERNAL:PLAINTEXT"])
    plain, internal = b.addr("PLAINTEXT"), b.addr("INTERNAL")
    assert plain != internal
    assert metadata_brokers(plain) == {1: plain}
    assert metadata_brokers(internal) == {1: internal}
    # The first line still names the first listener (scripts read it).
    assert b.bootstrap == plain
    # Both serve data: produce on one, read on the other.
    topic = f"l-{uuid.uuid4().hex[:8]}"
    p = Producer({"bootstrap.servers": internal})
    p.produce(topic, b"via-internal")
    assert p.flush(20) == 0
    c = Consumer({"bootstrap.servers": plain, "group.id": "g", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = None
    for _ in range(40):
        m = c.poll(0.5)
        if m is not None and not m.error():
            got = m.value()
            break
    c.close()
    assert got == b"via-internal"


def test_advertised_listeners_are_what_metadata_says(secure_factory):
    b = secure_factory(["PLAINTEXT://127.0.0.1:0", "EXTERNAL://127.0.0.1:0"],
                       ["--listener-security-protocol-map", "EXTERNAL:PLAINTEXT",
                        "--advertised-listeners", "EXTERNAL://kafka.invalid:19092"])
    # The bootstrap connection answers Metadata with the advertised address.
    assert metadata_brokers(b.addr("EXTERNAL")) == {1: "kafka.invalid:19092"}
    assert metadata_brokers(b.addr("PLAINTEXT")) == {1: b.addr("PLAINTEXT")}


def test_bad_listener_flags_are_refused(tmp_path):
    for args in (["--listeners", "FOO://127.0.0.1:0"],
                 ["--listeners", "PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0"],
                 ["--listeners", "PLAINTEXT://127.0.0.1:0", "--advertised-listeners", "SSL://h:1"]):
        b = Broker(tmp_path / "x", args)
        with pytest.raises(RuntimeError, match="did not start"):
            b.start(timeout=20)


# ---------------------------------------------------------------- SASL

PASSWORD = "alice-secret"


def add_scram_user(bootstrap, user, password, mechanisms=("SCRAM-SHA-256", "SCRAM-SHA-512")):
    """Creates a user through AlterUserScramCredentials (the client salts)."""
    from confluent_kafka.admin import ScramCredentialInfo, ScramMechanism, UserScramCredentialUpsertion
    a = AdminClient({"bootstrap.servers": bootstrap})
    ups = [UserScramCredentialUpsertion(user, ScramCredentialInfo(getattr(ScramMechanism, m.replace("-", "_")), 4096),
                                        password.encode()) for m in mechanisms]
    for f in a.alter_user_scram_credentials(ups).values():
        f.result(20)


def sasl_conf(addr, mechanism, user="alice", password=PASSWORD, protocol="SASL_PLAINTEXT", **extra):
    return {"bootstrap.servers": addr, "security.protocol": protocol, "sasl.mechanism": mechanism,
            "sasl.username": user, "sasl.password": password, **extra}


def roundtrip_confluent(conf, topic, value=b"v"):
    p = Producer(conf)
    p.produce(topic, value)
    assert p.flush(30) == 0
    c = Consumer({**conf, "group.id": f"g-{uuid.uuid4().hex[:6]}", "auto.offset.reset": "earliest"})
    c.subscribe([topic])
    got = None
    for _ in range(60):
        m = c.poll(0.5)
        if m is not None and not m.error():
            got = m.value()
            break
    c.commit(asynchronous=False)
    c.close()
    return got


@pytest.fixture
def sasl_broker(secure_factory):
    b = secure_factory(["PLAINTEXT://127.0.0.1:0", "SASL_PLAINTEXT://127.0.0.1:0"])
    add_scram_user(b.addr("PLAINTEXT"), "alice", PASSWORD)
    return b


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_confluent_sasl_plaintext(sasl_broker, mechanism):
    conf = sasl_conf(sasl_broker.addr("SASL_PLAINTEXT"), mechanism)
    topic = f"s-{uuid.uuid4().hex[:8]}"
    assert roundtrip_confluent(conf, topic, b"hello") == b"hello"
    # Metadata on the SASL listener names the SASL listener.
    assert metadata_brokers(**conf) == {1: sasl_broker.addr("SASL_PLAINTEXT")}


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_kafka_python_sasl_plaintext(sasl_broker, mechanism):
    kp = pytest.importorskip("kafka")
    addr = sasl_broker.addr("SASL_PLAINTEXT")
    conf = dict(bootstrap_servers=addr, security_protocol="SASL_PLAINTEXT", sasl_mechanism=mechanism,
                sasl_plain_username="alice", sasl_plain_password=PASSWORD)
    topic = f"k-{uuid.uuid4().hex[:8]}"
    p = kp.KafkaProducer(**conf)
    p.send(topic, b"from-kafka-python").get(timeout=30)
    p.close()
    c = kp.KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000, **conf)
    values = [m.value for m in c]
    c.close()
    assert values == [b"from-kafka-python"]


def expect_auth_failure(conf):
    """An AdminClient with bad credentials gets an authentication error."""
    a = AdminClient({**conf, "socket.timeout.ms": 10000})
    with pytest.raises(ck.KafkaException) as e:
        a.list_topics(timeout=10)
    return e.value


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-512"])
def test_bad_credentials_are_refused_and_the_broker_serves_others(sasl_broker, mechanism):
    addr = sasl_broker.addr("SASL_PLAINTEXT")
    expect_auth_failure(sasl_conf(addr, mechanism, password="wrong"))
    expect_auth_failure(sasl_conf(addr, mechanism, user="mallory"))
    assert wait_log(sasl_broker, "SASL authentication failed")
    log = sasl_broker.log_text()
    assert "wrong" not in log.replace("wrong password", "")
    # Still serving the right credentials.
    assert roundtrip_confluent(sasl_conf(addr, mechanism), f"ok-{uuid.uuid4().hex[:6]}") == b"v"


# Raw protocol helpers: the refusals clients never provoke on their own.

def frame(api_key, version, corr, body, client_id=b"t"):
    header = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    payload = header + body
    return struct.pack(">i", len(payload)) + payload


def kstr(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def read_frame(sock):
    size = struct.unpack(">i", recv_exact(sock, 4))[0]
    return recv_exact(sock, size)


def recv_exact(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def closed_by_peer(sock, timeout=10):
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def connect(addr):
    host, port = addr.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=10)


def handshake(sock, version, mechanism="PLAIN", corr=1):
    sock.sendall(frame(17, version, corr, kstr(mechanism)))
    resp = read_frame(sock)
    assert struct.unpack(">i", resp[:4])[0] == corr
    return struct.unpack(">h", resp[4:6])[0]


def test_a_request_before_the_handshake_closes_the_connection(sasl_broker):
    s = connect(sasl_broker.addr("SASL_PLAINTEXT"))
    s.sendall(frame(3, 0, 7, struct.pack(">i", 0)))  # Metadata v0
    assert closed_by_peer(s)
    s.close()
    assert wait_log(sasl_broker, "before SASL authentication")


def test_an_oversized_sasl_token_closes_the_connection(sasl_broker):
    s = connect(sasl_broker.addr("SASL_PLAINTEXT"))
    assert handshake(s, 1) == 0
    big = b"\0alice\0" + b"x" * (1 << 20)
    body = struct.pack(">i", len(big)) + big
    try:
        s.sendall(frame(36, 1, 2, body))
    except (ConnectionResetError, BrokenPipeError):
        pass
    assert closed_by_peer(s)
    s.close()
    assert wait_log(sasl_broker, "sasl.server.max.receive.size")


def test_v0_handshake_then_bare_tokens(sasl_broker):
    s = connect(sasl_broker.addr("SASL_PLAINTEXT"))
    assert handshake(s, 0) == 0
    token = b"\0alice\0" + PASSWORD.encode()
    s.sendall(struct.pack(">i", len(token)) + token)
    assert read_frame(s) == b""  # PLAIN answers an empty token
    s.sendall(frame(3, 0, 9, struct.pack(">i", 0)))  # now Metadata works
    assert struct.unpack(">i", read_frame(s)[:4])[0] == 9
    s.close()
    # A wrong password over v0 framing: the connection is closed, no answer.
    s = connect(sasl_broker.addr("SASL_PLAINTEXT"))
    assert handshake(s, 0) == 0
    token = b"\0alice\0nope"
    s.sendall(struct.pack(">i", len(token)) + token)
    assert closed_by_peer(s)
    s.close()


def test_authenticate_errors_and_session_lifetime(sasl_broker):
    addr = sasl_broker.addr("SASL_PLAINTEXT")
    # v1 SaslAuthenticate: a bad password gets SASL_AUTHENTICATION_FAILED (58) and a message.
    s = connect(addr)
    assert handshake(s, 1) == 0
    token = b"\0alice\0nope"
    s.sendall(frame(36, 1, 2, struct.pack(">i", len(token)) + token))
    resp = read_frame(s)
    corr, code, msg_len = struct.unpack(">ihh", resp[:8])
    assert (corr, code) == (2, 58)
    assert b"Invalid username or password" in resp[8:8 + msg_len]
    assert closed_by_peer(s)
    s.close()
    # Success: session lifetime 0 (no re-authentication), then a second
    # handshake (KIP-368 re-authentication) is refused with ILLEGAL_SASL_STATE.
    s = connect(addr)
    assert handshake(s, 1) == 0
    token = b"\0alice\0" + PASSWORD.encode()
    s.sendall(frame(36, 1, 3, struct.pack(">i", len(token)) + token))
    resp = read_frame(s)
    corr, code, msg_len = struct.unpack(">ihh", resp[:8])
    assert (corr, code, msg_len) == (3, 0, -1)
    token_len = struct.unpack(">i", resp[8:12])[0]
    assert struct.unpack(">q", resp[12 + token_len:20 + token_len])[0] == 0
    assert handshake(s, 1, corr=4) == 34
    assert closed_by_peer(s)
    s.close()
    # An unknown mechanism: UNSUPPORTED_SASL_MECHANISM (33).
    s = connect(addr)
    assert handshake(s, 1, mechanism="GSSAPI") == 33
    s.close()


def test_scram_users_are_described_and_deleted(sasl_broker):
    from confluent_kafka.admin import ScramMechanism, UserScramCredentialDeletion
    a = AdminClient({"bootstrap.servers": sasl_broker.addr("PLAINTEXT")})
    desc = a.describe_user_scram_credentials(["alice"])["alice"].result(20)
    assert sorted((i.mechanism, i.iterations) for i in desc.scram_credential_infos) == [
        (ScramMechanism.SCRAM_SHA_256, 4096), (ScramMechanism.SCRAM_SHA_512, 4096)]
    with pytest.raises(ck.KafkaException):
        a.describe_user_scram_credentials(["nobody"])["nobody"].result(20)
    f = a.alter_user_scram_credentials([UserScramCredentialDeletion("alice", ScramMechanism.SCRAM_SHA_512)])
    f["alice"].result(20)
    expect_auth_failure(sasl_conf(sasl_broker.addr("SASL_PLAINTEXT"), "SCRAM-SHA-512"))
    assert roundtrip_confluent(sasl_conf(sasl_broker.addr("SASL_PLAINTEXT"), "SCRAM-SHA-256"),
                               f"d-{uuid.uuid4().hex[:6]}") == b"v"


# ---------------------------------------------------------------- TLS

def make_ca(name):
    import datetime
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca, subject_attrs, server, expired=False):
    import datetime
    import ipaddress
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME, "C": NameOID.COUNTRY_NAME}
    subject = x509.Name([x509.NameAttribute(oids[k], v) for k, v in subject_attrs])
    now = datetime.datetime.now(datetime.timezone.utc)
    # An expired one ended an hour ago.
    start, end = ((now - datetime.timedelta(days=2), now - datetime.timedelta(hours=1)) if expired
                  else (now - datetime.timedelta(hours=1), now + datetime.timedelta(days=1)))
    b = (x509.CertificateBuilder().subject_name(subject).issuer_name(ca_cert.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end))
    if server:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                         x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                            critical=False)
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    else:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def write_pem(path, cert=None, key=None):
    from cryptography.hazmat.primitives import serialization
    if cert is not None:
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    else:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(path)


@pytest.fixture
def pki(tmp_path):
    pytest.importorskip("cryptography")
    d = tmp_path / "pki"
    d.mkdir()
    ca = make_ca("laminar test CA")
    other_ca = make_ca("someone else's CA")
    server = issue(ca, [("CN", "broker1")], server=True)
    client = issue(ca, [("C", "US"), ("O", "Example"), ("CN", "client1")], server=False)
    stranger = issue(other_ca, [("CN", "stranger")], server=False)
    expired = issue(ca, [("CN", "expired")], server=False, expired=True)
    out = {"dir": d, "ca_obj": ca,
           "ca": write_pem(d / "ca.pem", cert=ca[0]), "other_ca": write_pem(d / "other-ca.pem", cert=other_ca[0]),
           "server_cert": write_pem(d / "server.pem", cert=server[0]),
           "server_key": write_pem(d / "server.key", key=server[1]),
           "client_cert": write_pem(d / "client.pem", cert=client[0]),
           "client_key": write_pem(d / "client.key", key=client[1]),
           "stranger_cert": write_pem(d / "stranger.pem", cert=stranger[0]),
           "stranger_key": write_pem(d / "stranger.key", key=stranger[1]),
           "expired_cert": write_pem(d / "expired.pem", cert=expired[0]),
           "expired_key": write_pem(d / "expired.key", key=expired[1])}
    return out


def tls_args(pki, client_auth=None):
    args = ["--ssl-certfile", pki["server_cert"], "--ssl-keyfile", pki["server_key"]]
    if client_auth:
        args += ["--ssl-cafile", pki["ca"], "--ssl-client-auth", client_auth]
    return args


def ssl_conf(addr, pki, protocol="SSL", client=None, ca=None, **extra):
    conf = {"bootstrap.servers": addr, "security.protocol": protocol, "ssl.ca.location": ca or pki["ca"], **extra}
    if client:
        conf["ssl.certificate.location"] = pki[f"{client}_cert"]
        conf["ssl.key.location"] = pki[f"{client}_key"]
    return conf


def test_ssl_and_sasl_ssl_with_confluent_and_kafka_python(secure_factory, pki):
    b = secure_factory(["PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0", "SASL_SSL://127.0.0.1:0"], tls_args(pki))
    add_scram_user(b.addr("PLAINTEXT"), "alice", PASSWORD)
    # SSL
    conf = ssl_conf(b.addr("SSL"), pki)
    assert roundtrip_confluent(conf, f"t-{uuid.uuid4().hex[:6]}", b"over-tls") == b"over-tls"
    assert metadata_brokers(**conf) == {1: b.addr("SSL")}
    # SASL_SSL, SCRAM-SHA-512
    conf = sasl_conf(b.addr("SASL_SSL"), "SCRAM-SHA-512", protocol="SASL_SSL", **{"ssl.ca.location": pki["ca"]})
    assert roundtrip_confluent(conf, f"t-{uuid.uuid4().hex[:6]}", b"sasl-ssl") == b"sasl-ssl"
    # kafka-python over SSL and SASL_SSL (PLAIN), a fetch large enough to span several TLS records.
    kp = pytest.importorskip("kafka")
    big = bytes(range(256)) * 1024
    for extra in (dict(security_protocol="SSL", bootstrap_servers=b.addr("SSL")),
                  dict(security_protocol="SASL_SSL", bootstrap_servers=b.addr("SASL_SSL"), sasl_mechanism="PLAIN",
                       sasl_plain_username="alice", sasl_plain_password=PASSWORD)):
        topic = f"kt-{uuid.uuid4().hex[:6]}"
        p = kp.KafkaProducer(ssl_cafile=pki["ca"], max_request_size=1 << 20, **extra)
        for _ in range(3):
            p.send(topic, big)
        p.flush(30)
        p.close()
        c = kp.KafkaConsumer(topic, auto_offset_reset="earliest", consumer_timeout_ms=15000, ssl_cafile=pki["ca"],
                             **extra)
        values = [m.value for m in c]
        c.close()
        assert values == [big] * 3


def test_tls_refusals_leave_the_broker_serving(secure_factory, pki):
    b = secure_factory(["PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0"], tls_args(pki, "required"))
    ssl_addr = b.addr("SSL")
    # No client certificate, one from an untrusted CA, an expired one: refused.
    for client in (None, "stranger", "expired"):
        a = AdminClient({**ssl_conf(ssl_addr, pki, client=client), "socket.timeout.ms": 8000})
        with pytest.raises(ck.KafkaException):
            a.list_topics(timeout=8)
    # The client does not trust the broker's certificate: the client refuses.
    a = AdminClient({**ssl_conf(ssl_addr, pki, client="client", ca=pki["other_ca"]), "socket.timeout.ms": 8000})
    with pytest.raises(ck.KafkaException):
        a.list_topics(timeout=8)
    # Plain Kafka sent to the TLS port: closed after a log line.
    s = connect(ssl_addr)
    s.sendall(frame(18, 0, 1, b""))
    assert closed_by_peer(s)
    s.close()
    assert wait_log(b, "TLS handshake failed")
    # TLS sent to the plaintext port: the ClientHello reads as an absurd frame size.
    import ssl
    raw = connect(b.addr("PLAINTEXT"))
    ctx = ssl.create_default_context(cafile=pki["ca"])
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        ctx.wrap_socket(raw, server_hostname="127.0.0.1")
    raw.close()
    # A trusted client certificate works, and everyone else is still served.
    assert roundtrip_confluent(ssl_conf(ssl_addr, pki, client="client"), f"t-{uuid.uuid4().hex[:6]}") == b"v"
    assert metadata_brokers(b.addr("PLAINTEXT")) == {1: b.addr("PLAINTEXT")}


def test_the_certificate_is_reloaded_without_restart(secure_factory, pki):
    import ssl
    b = secure_factory(["SSL://127.0.0.1:0"], tls_args(pki))
    host, port = b.addr("SSL").rsplit(":", 1)

    def served_cert():
        ctx = ssl.create_default_context(cafile=pki["ca"])
        with socket.create_connection((host, int(port)), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
                return s.getpeercert(binary_form=True)

    from cryptography import x509
    before = x509.load_der_x509_certificate(served_cert())
    assert before.subject.rfc4514_string() == "CN=broker1"
    cert, key = issue(pki["ca_obj"], [("CN", "broker1-renewed")], server=True)
    # Key first, then the certificate: a check between the two keeps the old pair.
    write_pem(pki["dir"] / "server.key", key=key)
    write_pem(pki["dir"] / "server.pem", cert=cert)
    deadline = time.time() + 15
    subject = None
    while time.time() < deadline:
        time.sleep(0.5)
        subject = x509.load_der_x509_certificate(served_cert()).subject.rfc4514_string()
        if subject == "CN=broker1-renewed":
            break
    assert subject == "CN=broker1-renewed"
    assert wait_log(b, "TLS certificate reloaded")


# ---------------------------------------------------------------- ACLs

def scram_conf(b, user):
    return sasl_conf(b.addr("SASL_PLAINTEXT"), "SCRAM-SHA-512", user=user, password=f"{user}-pw")


@pytest.fixture
def acl_broker(secure_factory):
    """Users are made before the authorizer is on (the first admin has to
    come from somewhere), then the broker restarts with it."""
    b = secure_factory(["PLAINTEXT://127.0.0.1:0", "SASL_PLAINTEXT://127.0.0.1:0"])
    for user in ("admin", "alice"):
        add_scram_user(b.addr("PLAINTEXT"), user, f"{user}-pw", mechanisms=("SCRAM-SHA-512",))
    b.stop()
    b.extra_args += ["--authorizer", "--super-users", "User:admin"]
    b.port = 0
    b.start()
    return b


def produce_error(conf, topic):
    """The delivery error of one record (None: delivered)."""
    p = Producer({**conf, "message.timeout.ms": 8000})
    box = []
    p.produce(topic, b"x", callback=lambda err, msg: box.append(err))
    p.flush(20)
    return box[0] if box else "no report"


def test_a_principal_without_acls_is_refused_and_acls_grant(acl_broker):
    from confluent_kafka import KafkaError, TopicPartition
    from confluent_kafka.admin import AclBinding, AclBindingFilter, AclOperation, AclPermissionType, \
        ResourcePatternType, ResourceType
    b = acl_broker
    admin = AdminClient(scram_conf(b, "admin"))
    topic, group = f"secret-{uuid.uuid4().hex[:6]}", "g-alice"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(20)
    assert roundtrip_confluent(scram_conf(b, "admin"), topic, b"admin-wrote") == b"admin-wrote"
    alice = scram_conf(b, "alice")
    alice_admin = AdminClient(alice)  # must outlive its futures

    # Without ACLs: not listed, cannot produce, consume, commit or delete.
    assert topic not in AdminClient(alice).list_topics(timeout=20).topics
    assert produce_error(alice, topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    c = Consumer({**alice, "group.id": group, "auto.offset.reset": "earliest"})
    c.assign([TopicPartition(topic, 0, 0)])
    errors = set()
    for _ in range(20):
        m = c.poll(0.5)
        if m is not None and m.error():
            errors.add(m.error().code())
            break
    # Its committed offsets (the group) are asked first, then the topic is read.
    assert errors & {KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError.TOPIC_AUTHORIZATION_FAILED}, errors
    with pytest.raises(ck.KafkaException) as e:
        c.commit(offsets=[TopicPartition(topic, 0, 1)], asynchronous=False)
    # FindCoordinator already refuses the group (librdkafka then says it waits for one).
    assert e.value.args[0].code() in (KafkaError.GROUP_AUTHORIZATION_FAILED, KafkaError._WAIT_COORD)
    c.close()
    with pytest.raises(ck.KafkaException) as e:
        alice_admin.delete_topics([topic])[topic].result(20)
    assert e.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Nor grant herself anything.
    mine = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*",
                      AclOperation.ALL, AclPermissionType.ALLOW)
    with pytest.raises(ck.KafkaException) as e:
        alice_admin.create_acls([mine])[mine].result(20)
    assert e.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED

    # The admin (a super user) grants: the topic (literal) and her groups (prefixed).
    grants = [AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:alice", "*", op,
                         AclPermissionType.ALLOW) for op in (AclOperation.WRITE, AclOperation.READ, AclOperation.DELETE)]
    grants.append(AclBinding(ResourceType.GROUP, "g-", ResourcePatternType.PREFIXED, "User:alice", "*",
                             AclOperation.READ, AclPermissionType.ALLOW))
    for f in admin.create_acls(grants).values():
        f.result(20)
    listed = admin.describe_acls(AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                                  AclOperation.ANY, AclPermissionType.ANY)).result(20)
    assert sorted(map(str, listed)) == sorted(map(str, grants))
    time.sleep(0.5)  # the ACL watch reaches the shards

    assert topic in AdminClient(alice).list_topics(timeout=20).topics
    assert produce_error(alice, topic) is None
    c = Consumer({**alice, "group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    values = []
    for _ in range(60):
        m = c.poll(0.5)
        if m is not None and not m.error():
            values.append(m.value())
            if len(values) == 2:
                break
    assert values == [b"admin-wrote", b"x"]
    c.commit(asynchronous=False)
    committed = c.committed([TopicPartition(topic, 0)], timeout=20)
    assert committed[0].offset == 2
    c.close()
    alice_admin.delete_topics([topic])[topic].result(20)

    # DeleteAcls takes the grants back.
    topic2 = f"secret-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic2, 1, 1)])[topic2].result(20)
    deleted = admin.delete_acls([AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice",
                                                  None, AclOperation.ANY, AclPermissionType.ANY)])
    assert len(list(deleted.values())[0].result(20)) == 4
    time.sleep(0.5)
    assert produce_error(alice, topic2).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED


def test_acl_apis_without_the_authorizer_say_security_disabled(sasl_broker):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    a = AdminClient({"bootstrap.servers": sasl_broker.addr("PLAINTEXT")})
    acl = AclBinding(ResourceType.TOPIC, "t", ResourcePatternType.LITERAL, "User:alice", "*",
                     AclOperation.READ, AclPermissionType.ALLOW)
    with pytest.raises(ck.KafkaException) as e:
        a.create_acls([acl])[acl].result(20)
    assert e.value.args[0].code() == KafkaError.SECURITY_DISABLED


def test_a_client_certificate_names_the_principal(secure_factory, pki):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import AclBinding, AclOperation, AclPermissionType, ResourcePatternType, ResourceType
    d = pki["dir"]
    cert, key = issue(pki["ca_obj"], [("CN", "admin")], server=False)
    pki["admin_cert"], pki["admin_key"] = write_pem(d / "admin.pem", cert=cert), write_pem(d / "admin.key", key=key)
    b = secure_factory(["SSL://127.0.0.1:0"], tls_args(pki, "required") + ["--authorizer", "--super-users",
                                                                            "User:CN=admin"])
    admin_conf, client_conf = ssl_conf(b.addr("SSL"), pki, client="admin"), ssl_conf(b.addr("SSL"), pki, client="client")
    admin = AdminClient(admin_conf)
    topic = f"cert-{uuid.uuid4().hex[:6]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(20)
    assert produce_error(client_conf, topic).code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # The subject as Kafka writes it (RFC 2253: last component first).
    acl = AclBinding(ResourceType.TOPIC, topic, ResourcePatternType.LITERAL, "User:CN=client1,O=Example,C=US", "*",
                     AclOperation.WRITE, AclPermissionType.ALLOW)
    admin.create_acls([acl])[acl].result(20)
    time.sleep(0.5)
    assert produce_error(client_conf, topic) is None


# ---------------------------------------------------------------- inter-broker

def test_followers_authenticate_to_a_sasl_inter_broker_listener(tmp_path):
    """Two brokers whose inter-broker listener is SASL_PLAINTEXT: acks=all
    with min.insync.replicas=2 is answered only once the follower has
    fetched, which it can only do after authenticating (a SASL listener
    closes a connection whose first request is a Fetch)."""
    import cluster as cl
    pw = tmp_path / "broker.pw"
    pw.write_text("broker-pw\n")
    c = cl.Cluster(2, extra_args=[
        "--listeners", "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
        "--listener-security-protocol-map", "INTERNAL:SASL_PLAINTEXT", "--inter-broker-listener-name", "INTERNAL",
        "--inter-broker-sasl-username", "broker", "--inter-broker-sasl-password-file", str(pw)])
    try:
        c.start()
        c.wait_all_registered()
        b1 = c.brokers[1]
        add_scram_user(b1.bootstrap, "broker", "broker-pw", mechanisms=("SCRAM-SHA-512",))
        a = AdminClient({"bootstrap.servers": c.bootstrap})
        topic = f"ib-{uuid.uuid4().hex[:6]}"
        a.create_topics([NewTopic(topic, 1, 2, config={"min.insync.replicas": "2"})])[topic].result(30)
        # Clients on PLAINTEXT are told the PLAINTEXT addresses of both brokers.
        brokers = metadata_brokers(c.bootstrap)
        assert sorted(brokers.values()) == sorted(b.bootstrap for b in c.brokers.values())
        p = Producer({"bootstrap.servers": c.bootstrap, "acks": "all", "message.timeout.ms": 60000})
        box = []
        for i in range(5):
            p.produce(topic, f"r{i}".encode(), callback=lambda err, msg: box.append(err))
        p.flush(70)
        assert box == [None] * 5
        # The followers' connections were authenticated, never refused.
        logs = "".join(b.log_text() for b in c.brokers.values())
        assert "SASL authentication failed" not in logs and "before SASL authentication" not in logs
    finally:
        c.stop()


# ---------------------------------------------------------------- kafkajs

def test_kafkajs_over_sasl_and_tls(secure_factory, pki):
    import json
    import pathlib
    import shutil
    import subprocess
    js = pathlib.Path(__file__).parent / "js"
    if shutil.which("node") is None or not (js / "node_modules" / "kafkajs").exists():
        pytest.skip("node or kafkajs not installed (scripts/install-test-deps.sh installs them)")
    b = secure_factory(["PLAINTEXT://127.0.0.1:0", "SASL_PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0",
                        "SASL_SSL://127.0.0.1:0"], tls_args(pki) + ["--group-initial-rebalance-delay-ms", "0"])
    add_scram_user(b.addr("PLAINTEXT"), "alice", PASSWORD)
    cases = [
        ("SASL_PLAINTEXT", {"sasl": {"mechanism": "scram-sha-512", "username": "alice", "password": PASSWORD}}),
        ("SSL", {"ssl": {"ca": pki["ca"]}}),
        ("SASL_SSL", {"ssl": {"ca": pki["ca"]},
                      "sasl": {"mechanism": "plain", "username": "alice", "password": PASSWORD}}),
    ]
    for listener, opts in cases:
        topic = f"js-{listener.lower()}-{uuid.uuid4().hex[:6]}"
        r = subprocess.run(["node", str(js / "secure_roundtrip.js"), b.addr(listener), topic, json.dumps(opts)],
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, (listener, r.stderr)
        out = json.loads(r.stdout.strip().splitlines()[-1])
        assert sorted(out["values"]) == sorted(f"s{i}" for i in range(10)), listener


def test_kcat_over_sasl_plain_and_ssl(secure_factory, pki):
    """Debian's kcat (librdkafka 2.0.2). Its SCRAM is broken against any
    broker (it repeats the client nonce in its final message, which Kafka
    refuses too), so PLAIN here."""
    import shutil
    import subprocess
    if shutil.which("kcat") is None:
        pytest.skip("kcat not installed")
    b = secure_factory(["PLAINTEXT://127.0.0.1:0", "SASL_PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0"], tls_args(pki))
    add_scram_user(b.addr("PLAINTEXT"), "alice", PASSWORD)
    for listener, extra in [
        ("SASL_PLAINTEXT", ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanism=PLAIN",
                            "-X", "sasl.username=alice", "-X", f"sasl.password={PASSWORD}"]),
        ("SSL", ["-X", "security.protocol=SSL", "-X", f"ssl.ca.location={pki['ca']}"]),
    ]:
        topic = f"kc-{listener.lower()}"
        p = subprocess.run(["kcat", "-b", b.addr(listener), "-t", topic, "-P"] + extra, input="hello\n",
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        c = subprocess.run(["kcat", "-b", b.addr(listener), "-t", topic, "-C", "-e", "-o", "beginning"] + extra,
                           capture_output=True, text=True, timeout=60)
        assert (c.returncode, c.stdout) == (0, "hello\n"), c.stderr
