"""Plaintext vs TLS produce/consume throughput and connection setup, one short run each through confluent_kafka.
Run with LAMINAR_BIN set; figures from a debug binary are indicative only."""
import sys, time, uuid
sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent / "tests"))
import pathlib, tempfile
from test_security import SecureBroker, make_ca, issue, write_pem, add_scram_user, PASSWORD
from confluent_kafka import Producer, Consumer

N, SIZE = 40000, 1024
d = pathlib.Path(tempfile.mkdtemp())
ca = make_ca("ca"); srv = issue(ca, [("CN", "b")], server=True)
capem = write_pem(d / "ca.pem", cert=ca[0])
b = SecureBroker(d / "data", ["PLAINTEXT://127.0.0.1:0", "SSL://127.0.0.1:0", "SASL_SSL://127.0.0.1:0"],
                 ["--ssl-certfile", write_pem(d / "s.pem", cert=srv[0]), "--ssl-keyfile", write_pem(d / "s.key", key=srv[1])])
(d / "data").mkdir()
b.start()
add_scram_user(b.addr("PLAINTEXT"), "alice", PASSWORD)
try:
    for name, conf in [("PLAINTEXT", {}), ("SSL", {"security.protocol": "SSL", "ssl.ca.location": capem}),
                       ("PLAINTEXT", {}), ("SSL", {"security.protocol": "SSL", "ssl.ca.location": capem})]:
        conf = {"bootstrap.servers": b.addr(name), **conf}
        topic = f"b-{uuid.uuid4().hex[:6]}"
        p = Producer({**conf, "linger.ms": 5, "batch.size": 1 << 20, "acks": 1})
        v = b"x" * SIZE
        p.produce(topic, v); p.flush(30)
        t = time.time()
        for _ in range(N):
            while True:
                try:
                    p.produce(topic, v); break
                except BufferError:
                    p.poll(0.01)
        p.flush(60)
        tp = time.time() - t
        c = Consumer({**conf, "group.id": topic, "auto.offset.reset": "earliest", "fetch.wait.max.ms": 10})
        c.subscribe([topic])
        got = 0; t = None
        while got < N + 1:
            m = c.poll(1.0)
            if m is None or m.error():
                continue
            if t is None:
                t = time.time()
            got += 1
        tc = time.time() - t
        c.close()
        print(f"{name:10s} produce {N*SIZE/tp/1e6:6.1f} MB/s  consume {N*SIZE/tc/1e6:6.1f} MB/s")
    # Connection setup: TCP+ApiVersions vs TLS handshake vs SASL_SSL SCRAM-SHA-512 (AdminClient list_topics).
    from confluent_kafka.admin import AdminClient
    for name, conf in [("PLAINTEXT", {}), ("SSL", {"security.protocol": "SSL", "ssl.ca.location": capem}),
                       ("SASL_SSL", {"security.protocol": "SASL_SSL", "ssl.ca.location": capem, "sasl.mechanism": "SCRAM-SHA-512",
                                     "sasl.username": "alice", "sasl.password": PASSWORD})]:
        ts = []
        for _ in range(10):
            t = time.time()
            AdminClient({"bootstrap.servers": b.addr(name), **conf}).list_topics(timeout=10)
            ts.append(time.time() - t)
        ts.sort()
        print(f"{name:10s} connect+metadata median {ts[5]*1000:.1f} ms")
finally:
    b.stop()
