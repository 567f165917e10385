// Compatibility workload for the seccomp profile: the parts of Node an agent
// uses. Prints one JSON line of results and exits 0 only if all passed.
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const os = require('os');
const crypto = require('crypto');
const { spawn } = require('child_process');
const { Worker } = require('worker_threads');

const results = {};
const check = async (name, fn) => {
  try {
    await fn();
    results[name] = 'ok';
  } catch (e) {
    results[name] = 'FAIL: ' + (e && e.stack || e);
  }
};

const withTimeout = (p, ms, what) => Promise.race([
  p, new Promise((_, rej) => setTimeout(() => rej(new Error(what + ' timed out')), ms)),
]);

(async () => {
  await check('http', () => withTimeout(new Promise((resolve, reject) => {
    const srv = http.createServer((req, res) => res.end('pong:' + req.url));
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      http.get({ host: '127.0.0.1', port, path: '/ping' }, (res) => {
        let body = '';
        res.on('data', (c) => body += c);
        res.on('end', () => { srv.close(); body === 'pong:/ping' ? resolve() : reject(new Error(body)); });
      }).on('error', reject);
    });
  }), 5000, 'http'));

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'compat-'));
  await check('fs', async () => {
    const f = path.join(dir, 'a.txt');
    fs.writeFileSync(f, 'hello');
    await fs.promises.appendFile(f, ' world');
    if (fs.readFileSync(f, 'utf8') !== 'hello world') throw new Error('content');
    fs.renameSync(f, f + '.2');
    fs.statSync(f + '.2');
    fs.unlinkSync(f + '.2');
    fs.readdirSync('/');
  });

  await check('fs.watch', () => withTimeout(new Promise((resolve, reject) => {
    const w = fs.watch(dir, (ev, name) => { if (name === 'watched.txt') { w.close(); resolve(); } });
    w.on('error', reject);
    setTimeout(() => fs.writeFileSync(path.join(dir, 'watched.txt'), 'x'), 50);
  }), 5000, 'fs.watch'));

  await check('child_process', () => withTimeout(new Promise((resolve, reject) => {
    const c = spawn('sh', ['-c', 'echo spawned-$((6*7))']);
    let out = '';
    c.stdout.on('data', (d) => out += d);
    c.on('error', reject);
    c.on('close', (code) => code === 0 && out.trim() === 'spawned-42' ? resolve() : reject(new Error(`code ${code} out ${out}`)));
  }), 5000, 'child_process'));

  await check('worker_threads', () => withTimeout(new Promise((resolve, reject) => {
    const w = new Worker('const { parentPort } = require("worker_threads"); let s = 0; for (let i = 0; i < 1e6; i++) s += i; parentPort.postMessage(s);', { eval: true });
    w.on('message', (m) => m === 499999500000 ? resolve() : reject(new Error(String(m))));
    w.on('error', reject);
  }), 5000, 'worker_threads'));

  await check('crypto', async () => {
    const h = crypto.createHash('sha256').update('abc').digest('hex');
    if (!h.startsWith('ba7816bf')) throw new Error(h);
    crypto.randomBytes(32);
    const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
    const sig = crypto.sign(null, Buffer.from('m'), privateKey);
    if (!crypto.verify(null, Buffer.from('m'), publicKey, sig)) throw new Error('verify');
    await new Promise((res, rej) => crypto.pbkdf2('p', 's', 1000, 32, 'sha256', (e) => e ? rej(e) : res()));
  });

  fs.rmSync(dir, { recursive: true, force: true });
  console.log(JSON.stringify(results));
  process.exit(Object.values(results).every((v) => v === 'ok') ? 0 : 1);
})();
