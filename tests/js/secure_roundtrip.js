// kafkajs over a secured listener: produce 10 records, consume them with a group.
// Usage: node secure_roundtrip.js <bootstrap> <topic> '<json: {ssl?: {ca: path}, sasl?: {mechanism, username, password}}>'
// Prints a JSON summary.
const fs = require('fs');
const { Kafka, logLevel } = require('kafkajs');

const [bootstrap, topic, raw] = process.argv.slice(2);
const opts = JSON.parse(raw);
const config = { clientId: 'e2e-secure', brokers: [bootstrap], logLevel: logLevel.ERROR };
if (opts.ssl) config.ssl = { ca: [fs.readFileSync(opts.ssl.ca, 'utf8')] };
if (opts.sasl) config.sasl = opts.sasl;
const kafka = new Kafka(config);

(async () => {
  const producer = kafka.producer();
  await producer.connect();
  await producer.send({ topic, messages: Array.from({ length: 10 }, (_, i) => ({ value: `s${i}` })) });
  await producer.disconnect();
  const consumer = kafka.consumer({ groupId: `kjs-secure-${Date.now()}`, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const values = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, 60000);
    consumer.run({
      eachMessage: async ({ message }) => {
        values.push(message.value.toString());
        if (values.length >= 10) { clearTimeout(timer); resolve(); }
      },
    }).catch(reject);
  });
  await consumer.disconnect();
  console.log(JSON.stringify({ values }));
})().catch((e) => { console.error(e); process.exit(1); });
