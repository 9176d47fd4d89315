// kafkajs against a Laminar cluster: produce with acks=all through every
// broker's bootstrap, then consume the whole topic with a group.
// Usage: node cluster_roundtrip.js <bootstrap,bootstrap,...> <topic>. Prints a JSON summary.
const { Kafka, logLevel } = require('kafkajs');

const brokers = process.argv[2].split(',');
const topic = process.argv[3];
const kafka = new Kafka({ clientId: 'e2e-cluster', brokers, logLevel: logLevel.ERROR });

(async () => {
  const producer = kafka.producer();
  await producer.connect();
  const messages = Array.from({ length: 30 }, (_, i) => ({ key: `js${i}`, value: `js${i}` }));
  await producer.send({ topic, acks: -1, messages });
  await producer.disconnect();

  const consumer = kafka.consumer({ groupId: `kjs-cluster-${Date.now()}`, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let count = 0;
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 60000);
    consumer.run({
      eachMessage: async () => {
        count += 1;
        if (count >= 93) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ count }));
})().catch((e) => { console.error(e); process.exit(1); });
