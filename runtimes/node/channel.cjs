'use strict';
// The control channel of protos/worker-protocol.md: two inherited pipe fds, length-prefixed frames.

const fs = require('fs');

const Kind = Object.freeze({
  HELLO: 1, INIT: 2, INIT_OK: 3, INIT_ERROR: 4, INVOKE: 5, RESULT: 6, ERROR: 7, SPECIALISE: 8,
});
const MAX_FRAME = 16 * 1024 * 1024;
const HEADER = 5;

// Python's pass_fds leaves the inherited fds without close-on-exec, and libuv's spawn closes
// nothing, so every child process the user starts would inherit them: a grandchild holding <out>
// hides the worker's death from the daemon. Node has no fcntl, but opening /proc/self/fd/N gives
// a new descriptor of the same pipe, and libuv opens everything with O_CLOEXEC.
// Opening a pipe end blocks until its peer end is open somewhere; O_NONBLOCK makes the open
// itself safe (ENXIO for a write end whose reader is gone). Without /proc (an unusual sandbox)
// the inherited fd is kept as it is.
function reopenCloexec(fd, flags) {
  const procPath = `/proc/self/fd/${fd}`;
  try {
    if (flags === fs.constants.O_RDONLY) {
      // The reader is handed to libuv, which makes it non-blocking anyway.
      const fresh = fs.openSync(procPath, flags | fs.constants.O_NONBLOCK);
      fs.closeSync(fd);
      return fresh;
    }
    // The writer must stay blocking so that a frame is written whole without an event-loop
    // turn: probe without blocking, then open for real now that the daemon's end is known open.
    fs.closeSync(fs.openSync(procPath, flags | fs.constants.O_NONBLOCK));
    const fresh = fs.openSync(procPath, flags);
    fs.closeSync(fd);
    return fresh;
  } catch (_) {
    return fd;
  }
}

function openControlFds(spec) {
  const match = /^(\d+),(\d+)$/.exec(spec || '');
  if (!match) throw new Error(`FNHOST_CONTROL_FDS must be "<in>,<out>", got ${JSON.stringify(spec)}`);
  return {
    input: reopenCloexec(Number(match[1]), fs.constants.O_RDONLY),
    out: reopenCloexec(Number(match[2]), fs.constants.O_WRONLY),
  };
}

const pause = new Int32Array(new SharedArrayBuffer(4));

// Writes a whole buffer: normally one write(2) on the blocking pipe. EAGAIN can only come from an
// inherited descriptor kept as-is that is non-blocking (a socketpair end, which /proc cannot
// reopen); a 50 µs nap until the daemon has read some of it beats spinning.
function writeAll(fd, buf) {
  let off = 0;
  while (off < buf.length) {
    try {
      off += fs.writeSync(fd, buf, off, buf.length - off);
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 0.05);
    }
  }
}

function frameHeader(buf, length, kind) {
  buf.writeUInt32BE(length, 0);
  buf[4] = kind;
}

function encode(kind, body) {
  const buf = Buffer.allocUnsafe(HEADER + body.length);
  frameHeader(buf, body.length + 1, kind);
  body.copy(buf, HEADER);
  return buf;
}

// RESULT and ERROR: one buffer holding header, request id and the UTF-8 text, built with a
// single copy of the text so a 5 MB result is encoded once and written with one syscall.
function encodeReply(kind, requestId, text) {
  const textLen = Buffer.byteLength(text, 'utf8');
  const start = HEADER + 1 + requestId.length;
  const buf = Buffer.allocUnsafe(start + textLen);
  frameHeader(buf, buf.length - 4, kind);
  buf[HEADER] = requestId.length;
  requestId.copy(buf, HEADER + 1);
  buf.write(text, start, textLen, 'utf8');
  return buf;
}

// Incremental decoder: pipes deliver 64 KiB at a time, so a large frame arrives in many chunks
// that are joined once, when the last one is in.
class Decoder {
  constructor(onFrame) {
    this.onFrame = onFrame;
    this.chunks = [];
    this.buffered = 0;
    this.need = HEADER; // bytes wanted before the next look at the buffer
  }

  push(chunk) {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    if (this.buffered < this.need) return;
    let buf = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.buffered);
    let pos = 0;
    while (buf.length - pos >= HEADER) {
      const length = buf.readUInt32BE(pos);
      if (length < 1 || length > MAX_FRAME) {
        throw new Error(`control channel broken: frame length ${length} out of range`);
      }
      if (buf.length - pos - 4 < length) break;
      const kind = buf[pos + 4];
      const body = buf.subarray(pos + HEADER, pos + 4 + length);
      pos += 4 + length;
      this.onFrame(kind, body);
    }
    buf = pos === buf.length ? null : buf.subarray(pos);
    this.chunks = buf ? [buf] : [];
    this.buffered = buf ? buf.length : 0;
    this.need = buf && buf.length >= HEADER ? 4 + buf.readUInt32BE(0) : HEADER;
  }
}

module.exports = { Kind, MAX_FRAME, openControlFds, writeAll, encode, encodeReply, Decoder };
