// The one-to-one chat workload of benches/ws-vs-k6.sh, in k6 (k6/ws), speaking chatload's
// own protocol to `chatload serve`: each of USERS virtual users logs in, sends a 64-byte
// text to a random other user every USERS/RATE seconds, acknowledges every delivery (so the
// sender gets a delivered receipt), and records the delivery latency from the send's time.
// Run by benches/ws-vs-k6.sh; by hand:
//   k6 run -e URL=ws://127.0.0.1:7079/v1/ws -e USERS=1000 -e RATE=3000 -e SECS=20 benches/k6-chat.js
import ws from 'k6/ws';
import { Counter, Trend } from 'k6/metrics';

const USERS = Number(__ENV.USERS || 1000);
const RATE = Number(__ENV.RATE || 3000);
const SECS = Number(__ENV.SECS || 20);
const BODY = 'x'.repeat(64);

const delivery = new Trend('chat_delivery', true);
const sent = new Counter('chat_sent');
const acked = new Counter('chat_acked');
const delivered = new Counter('chat_delivered');
const receipts = new Counter('chat_receipts');

export const options = {
  scenarios: {
    chat: {
      executor: 'per-vu-iterations',
      vus: USERS,
      iterations: 1,
      maxDuration: `${SECS + 30}s`,
    },
  },
  summaryTrendStats: ['med', 'p(99)', 'max'],
};

export default function () {
  const user = __VU - 1;
  const every = (USERS / RATE) * 1000;
  ws.connect(__ENV.URL, {}, function (socket) {
    let id = 0;
    const send = () => {
      id += 1;
      const to = (user + 1 + Math.floor(Math.random() * (USERS - 1))) % USERS;
      const now = Date.now();
      socket.send(JSON.stringify({ op: 'send', id: id, to: to, t: now, s: now, body: BODY }));
      sent.add(1);
    };
    socket.on('open', () => {
      socket.send(JSON.stringify({ op: 'hello', user: user, last_seq: 0 }));
    });
    socket.on('message', (data) => {
      const f = JSON.parse(data);
      if (f.op === 'msg') {
        delivery.add(Date.now() - f.t);
        delivered.add(1);
        socket.send(JSON.stringify({ op: 'ack', seq: f.seq, id: f.id, from: f.from, t: f.t, s: f.s }));
      } else if (f.op === 'sent') {
        acked.add(1);
      } else if (f.op === 'receipt') {
        receipts.add(1);
      } else if (f.op === 'hello_ok') {
        // Each user starts at a random phase, so the rate is even over the second.
        socket.setTimeout(() => socket.setInterval(send, every), Math.random() * every);
      }
    });
    socket.setTimeout(() => socket.close(), SECS * 1000);
  });
}
