// Runs inside a grain (see tests/tests/runtimes.rs) under the machine's /usr/bin/node: serves
// HTTP on 127.0.0.1:$PORT with `http` and fetches from itself, writes /var/node.txt and reads it
// back, runs a child node, then prints one RESULT line with what each step got.
'use strict';
const http = require('http');
const fs = require('fs');
const { execFileSync } = require('child_process');

const nonce = process.env.NONCE;
const port = Number(process.env.PORT);

function fail(what, err) {
  console.error(`${what}: ${err && err.stack || err}`);
  process.exit(1);
}

const server = http.createServer((req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/plain' });
  res.end(`hello ${nonce}`);
});
server.on('error', (e) => fail('server', e));
server.listen(port, '127.0.0.1', () => {
  const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
    let got = '';
    res.setEncoding('utf8');
    res.on('data', (d) => { got += d; });
    res.on('end', () => {
      if (res.statusCode !== 200) fail('status', res.statusCode);
      server.close();
      finish(got);
    });
  });
  req.on('error', (e) => fail('client', e));
});

function finish(got) {
  fs.writeFileSync('/var/node.txt', nonce);
  const back = fs.readFileSync('/var/node.txt', 'utf8');
  const child = execFileSync(process.execPath,
    ['-e', "console.log('child', process.env.NONCE.split('').reverse().join(''))"],
    { encoding: 'utf8' }).trim();
  console.log(`RESULT http=${got} var=${back} child=${child}`);
}
