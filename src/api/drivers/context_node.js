// sbx code-context driver for Node.js (docs/api.md, "Code contexts"). sbxd embeds this file and runs it as
// `node -e <this>` in the sandbox. Cells run with vm.runInThisContext, so globals and top-level let/const
// persist between runs (like scripts of one page); breakOnSigint makes SIGINT throw inside a running cell
// (an endless loop is interrupted, the context and its state stay). Same marker protocol as the Python
// driver: "\x1e<token> <nonce> R|D <json>\n" on stdout, "\x1e<token> <nonce> E\n" on stderr.
// Everything is inside one function: `node -e` code shares the global scope the cells use.
(function sbxDriver() {
'use strict';
const vm = require('vm');
const util = require('util');
const fs = require('fs');
const path = require('path');
const Module = require('module');

const MARK = '\x1e' + (process.env.SBX_CONTEXT_TOKEN || '');
delete process.env.SBX_CONTEXT_TOKEN;
const DATA_MAX = 12 << 20;
let nonce = '';
let count = 0;
let interruptWaiting = null;

// Between cells SIGINT does nothing; while a cell's promise is awaited it rejects the wait.
process.on('SIGINT', () => {
  if (interruptWaiting) interruptWaiting();
});

function marker(fd, kind, obj) {
  let line = MARK + ' ' + nonce + ' ' + kind;
  if (obj !== undefined) line += ' ' + JSON.stringify(obj);
  fs.writeSync(fd, line + '\n');
}

const MAGIC = [[Buffer.from([0x89, 0x50, 0x4e, 0x47]), 'image/png'], [Buffer.from([0xff, 0xd8, 0xff]), 'image/jpeg'],
  [Buffer.from('GIF8'), 'image/gif']];
const EXT = { '.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg', '.gif': 'image/gif',
  '.svg': 'image/svg+xml', '.html': 'text/html', '.htm': 'text/html', '.json': 'application/json',
  '.md': 'text/markdown' };

function inspect(v) {
  return util.inspect(v, { depth: 4, maxArrayLength: 200, maxStringLength: 1 << 20, breakLength: 100 });
}

function enc(mime, v) {
  if (Buffer.isBuffer(v) || v instanceof Uint8Array) {
    const b = Buffer.from(v);
    return mime.startsWith('text/') || mime === 'image/svg+xml' ? b.toString('utf8') : b.toString('base64');
  }
  if (mime === 'application/json' || mime.endsWith('+json')) return v;
  return typeof v === 'string' ? v : String(v);
}

function bundle(obj) {
  if (Buffer.isBuffer(obj) || obj instanceof Uint8Array) {
    const b = Buffer.from(obj);
    for (const [m, mime] of MAGIC)
      if (b.subarray(0, m.length).equals(m)) return { [mime]: b.toString('base64'), 'text/plain': `<${mime}, ${b.length} bytes>` };
    return { 'text/plain': inspect(obj) };
  }
  if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
    const keys = Object.keys(obj);
    if (keys.length && keys.every((k) => k.includes('/'))) {
      const out = {};
      for (const k of keys) out[k] = enc(k, obj[k]);
      return out;
    }
  }
  return { 'text/plain': typeof obj === 'string' ? obj : inspect(obj) };
}

// display(obj...): rich outputs of the current run (a mime bundle object, PNG/JPEG/GIF bytes, or any value).
globalThis.display = (...objs) => {
  for (const o of objs) {
    const b = bundle(o);
    if (JSON.stringify(b).length > DATA_MAX) {
      process.stderr.write(`display: output larger than ${DATA_MAX} bytes dropped\n`);
      continue;
    }
    marker(1, 'D', { data: b });
  }
};
// displayFile(path, mime?): a file the cell wrote, its type from mime or its extension.
globalThis.displayFile = (p, mime) => {
  const data = fs.readFileSync(p);
  if (data.length > DATA_MAX) throw new Error(`displayFile: ${p} is larger than ${DATA_MAX} bytes`);
  mime = mime || EXT[path.extname(String(p)).toLowerCase()];
  if (!mime) for (const [m, mm] of MAGIC) if (data.subarray(0, m.length).equals(m)) mime = mm;
  mime = mime || 'text/plain';
  globalThis.display({ [mime]: mime === 'application/json' ? JSON.parse(data.toString('utf8')) : data });
};
globalThis.require = Module.createRequire(path.join(process.cwd(), '[context]'));

function errorOf(e, interrupted) {
  if (!(e instanceof Error) && !(e && typeof e === 'object' && 'stack' in e))
    return { name: 'Error', value: inspect(e), traceback: ['Uncaught ' + inspect(e)] };
  const stack = String(e.stack || `${e.name}: ${e.message}`).split('\n')
    .filter((l) => !/^\s+at /.test(l) || l.includes('<cell-')); // the driver's frames are not the user's
  return { name: interrupted ? 'KeyboardInterrupt' : e.name || 'Error', value: String(e.message || ''), traceback: stack };
}

async function run(code) {
  count++;
  const res = { count };
  let value;
  try {
    try {
      value = vm.runInThisContext(code, { filename: `<cell-${count}>`, breakOnSigint: true });
    } catch (e) {
      // Top-level await: the cell runs as an async function (its let/const then stay local to it).
      if (!(e instanceof SyntaxError) || !/await/.test(code)) throw e;
      value = vm.runInThisContext(`(async () => {\n${code}\n})()`, { filename: `<cell-${count}>`, breakOnSigint: true });
    }
    if (value && typeof value.then === 'function') {
      value = await Promise.race([value, new Promise((_, reject) => {
        interruptWaiting = () => reject(new Error('Script execution was interrupted by `SIGINT`'));
      })]);
    }
    if (value !== undefined) {
      globalThis._ = value;
      res.data = bundle(value);
      if (typeof value === 'string') res.data['text/plain'] = inspect(value);
    }
  } catch (e) {
    res.error = errorOf(e, /interrupted by `SIGINT`/.test(String(e && e.message)));
  } finally {
    interruptWaiting = null;
  }
  marker(2, 'E');
  marker(1, 'R', res);
}

let buf = '';
let lines = [];
let busy = false;
const queue = [];

async function drain() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const [code, n] = queue.shift();
    nonce = n;
    await run(code);
  }
  busy = false;
}

process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  buf += chunk;
  let i;
  while ((i = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, i + 1);
    buf = buf.slice(i + 1);
    if (line.startsWith(MARK + ' ')) {
      queue.push([lines.join(''), line.slice(MARK.length + 1).trim()]);
      lines = [];
    } else {
      lines.push(line);
    }
  }
  drain();
});
process.stdin.on('end', () => process.exit(0));
})();
