// kafkajs against Laminar: admin, produce, group consume with commits, and a
// restart of the consumer that must resume from the committed offsets.
// Usage: node group_consume.js <bootstrap>. Prints a JSON summary.
const { Kafka, logLevel } = require('kafkajs');

const broker = process.argv[2];
const kafka = new Kafka({ clientId: 'e2e', brokers: [broker], logLevel: logLevel.ERROR });
const topic = 'kjs-group';
const groupId = 'kjs-g';

async function consumeUntil(count, timeoutMs) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const seen = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, timeoutMs);
    consumer.run({
      autoCommit: true,
      autoCommitInterval: 100,
      eachMessage: async ({ partition, message }) => {
        seen.push({ partition, offset: Number(message.offset), value: message.value.toString() });
        if (seen.length >= count) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect(); // commits what was processed, then leaves the group
  return seen;
}

(async () => {
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ topics: [{ topic, numPartitions: 2 }] });
  await admin.disconnect();

  const producer = kafka.producer();
  await producer.connect();
  const messages = (start, n) => Array.from({ length: n }, (_, i) => ({ key: `k${start + i}`, value: `v${start + i}` }));
  await producer.send({ topic, acks: -1, messages: messages(0, 100) });

  const first = await consumeUntil(100, 20000);
  await producer.send({ topic, acks: -1, messages: messages(100, 10) });
  const second = await consumeUntil(10, 20000);
  await producer.disconnect();

  const admin2 = kafka.admin();
  await admin2.connect();
  const offsets = await admin2.fetchOffsets({ groupId, topics: [topic] });
  await admin2.disconnect();
  const committed = offsets[0].partitions.reduce((s, p) => s + Number(p.offset), 0);
  console.log(JSON.stringify({ first: first.map((m) => m.value), second: second.map((m) => m.value), committed }));
})().catch((e) => { console.error(e); process.exit(1); });
