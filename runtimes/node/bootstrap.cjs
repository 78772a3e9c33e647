'use strict';
// fnhost worker for Node.js: HELLO first, then INIT loads the handler, then INVOKE frames one
// at a time. Protocol: protos/worker-protocol.md. Files are .cjs so that a package.json with
// "type": "module" above this folder cannot turn the shim into ESM.
// A stem cell gets SPECIALISE instead of INIT: until then it knows no function, so nothing here
// reads the environment it started with but FNHOST_CONTROL_FDS; the rest is read at INIT.

const channel = require('./channel.cjs');

const { Kind } = channel;
const controlSpec = process.env.FNHOST_CONTROL_FDS;
delete process.env.FNHOST_CONTROL_FDS; // unsetenv: user code and its children never see it

function die(message, status) {
  process.stderr.write(`fnhost node worker: ${message}\n`);
  process.exit(status);
}

let fds;
try {
  fds = channel.openControlFds(controlSpec);
} catch (err) {
  die(err.message, 2);
}

function send(buf) {
  try {
    channel.writeAll(fds.out, buf);
  } catch (err) {
    // EPIPE: the daemon has gone away, which ends a worker the same way EOF on <in> does.
    if (err.code === 'EPIPE') process.exit(0);
    die(`control channel write failed: ${err.message}`, 1);
  }
}

send(channel.encode(Kind.HELLO, Buffer.from(JSON.stringify({
  protocol: 3,
  runtime: 'node',
  runtime_version: process.versions.node,
  pid: process.pid,
}))));

const net = require('net');
const loader = require('./loader.cjs');
const invoke = require('./invoke.cjs');
const { toErrorJson, platformError, simpleError } = require('./errors.cjs');
const { specialise, SpecialiseFailure, warmUp: warmUpSpecialise } = require('./specialise.cjs');

const { loadHandler, classifyLoadError } = loader;
const { Runner, whenStdioFlushed } = invoke;

let state = 'starting'; // → initializing → ready | failed
let runner = null;

const input = new net.Socket({ fd: fds.input, readable: true, writable: false });

function holdLoop(hold) {
  if (hold) input.ref();
  else input.unref();
}

function initFailed(errorJson) {
  if (state === 'failed') return;
  state = 'failed';
  whenStdioFlushed(() => {
    send(channel.encode(Kind.INIT_ERROR, Buffer.from(JSON.stringify(errorJson))));
    process.exit(1);
  });
}

function functionInfo(init) {
  const env = process.env;
  const functionName = String(init.function_name ?? env.AWS_LAMBDA_FUNCTION_NAME ?? '');
  return {
    functionName,
    functionVersion: String(init.function_version ?? env.AWS_LAMBDA_FUNCTION_VERSION ?? '$LATEST'),
    invokedFunctionArn: typeof init.invoked_function_arn === 'string' && init.invoked_function_arn
      ? init.invoked_function_arn
      : `arn:aws:lambda:${env.AWS_REGION || 'local'}:000000000000:function:${functionName}`,
    // A string, as in Lambda, where it comes from the environment.
    memoryLimitInMB: String(init.memory_mb ?? env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE ?? ''),
    logGroupName: String(init.log_group_name ?? env.AWS_LAMBDA_LOG_GROUP_NAME ?? ''),
    logStreamName: String(init.log_stream_name ?? env.AWS_LAMBDA_LOG_STREAM_NAME ?? ''),
  };
}

function parseBody(name, body) {
  try {
    return body.length ? JSON.parse(body.toString('utf8')) : {};
  } catch (err) {
    return die(`${name} body is not JSON: ${err.message}`, 1);
  }
}

function parseFirstFrame(name, body) {
  if (state !== 'starting') die(`${name} received after INIT or SPECIALISE`, 1);
  state = 'initializing';
  stopWarmUp();
  return parseBody(name, body);
}

function onInit(body) {
  initialise(parseFirstFrame('INIT', body));
}

// A stem cell takes the function's identity, environment and working directory, then goes on as
// INIT does: everything below reads the environment it has from now on.
function onSpecialise(body) {
  const spec = parseFirstFrame('SPECIALISE', body);
  if (spec === null || typeof spec !== 'object' || Array.isArray(spec)) die('SPECIALISE body is not a JSON object', 1);
  try {
    specialise(spec);
  } catch (err) {
    // Half specialised: neither the cell nor the function's worker. The daemon starts one another way.
    const message = err instanceof SpecialiseFailure ? err.message : `specialise: ${toErrorJson(err).errorMessage}`;
    initFailed(simpleError('Runtime.SpecialiseError', message));
    return;
  }
  initialise(spec);
}

function initialise(init) {
  // A generic worker may be specialised after start-up: INIT's environment is authoritative.
  const environment = init.environment && typeof init.environment === 'object' ? init.environment : {};
  for (const [name, value] of Object.entries(environment)) {
    if (value !== null && value !== undefined) process.env[name] = String(value);
  }
  const layers = process.env.FNHOST_LAYERS_DIR;
  if (layers) {  // Lambda's NODE_PATH into the layers (require() only: ES modules ignore NODE_PATH)
    const major = process.versions.node.split('.')[0];
    process.env.NODE_PATH = [`${layers}/nodejs/node${major}/node_modules`, `${layers}/nodejs/node_modules`,
      process.env.NODE_PATH].filter(Boolean).join(':');
    require('module')._initPaths();  // node reads NODE_PATH once, at start-up: again, now
  }
  const info = functionInfo(init);
  const codeDir = init.code_dir || process.env.LAMBDA_TASK_ROOT || process.cwd();
  loadHandler(codeDir, init.handler ?? process.env._HANDLER).then((handler) => {
    if (state !== 'initializing') return;
    runner = new Runner(handler, info, { reply, holdLoop });
    state = 'ready';
    send(channel.encode(Kind.INIT_OK, Buffer.alloc(0)));
  }, (failure) => initFailed(classifyLoadError(failure).errorJson));
}

function reply(requestId, ok, text) {
  send(channel.encodeReply(ok ? Kind.RESULT : Kind.ERROR, requestId, text));
}

// INVOKE's body: [requestId, deadlineMs, context, payload].
function splitInvoke(body) {
  const idLen = body[0];
  if (body.length < 13 + idLen) die('INVOKE body shorter than its header', 1);
  // Copied: the id outlives the read chunk, which may be a large shared buffer.
  const requestId = Buffer.from(body.subarray(1, 1 + idLen));
  const deadlineMs = body.readUInt32BE(1 + idLen) * 0x100000000 + body.readUInt32BE(5 + idLen);
  const contextEnd = 13 + idLen + body.readUInt32BE(9 + idLen);
  if (body.length < contextEnd) die('INVOKE context runs past the end of the frame', 1);
  return [requestId, deadlineMs, body.subarray(13 + idLen, contextEnd), body.subarray(contextEnd)];
}

function onInvoke(body) {
  if (state !== 'ready') die(`INVOKE received while ${state}`, 1);
  if (runner.busy) die('INVOKE received while another invocation is in flight', 1);
  const [requestId, deadlineMs, context, payload] = splitInvoke(body);
  runner.invoke(requestId, deadlineMs, context, payload);
}

const decoder = new channel.Decoder((kind, body) => {
  if (kind === Kind.INVOKE) onInvoke(body);
  else if (kind === Kind.INIT) onInit(body);
  else if (kind === Kind.SPECIALISE) onSpecialise(body);
  else die(`unexpected frame kind ${kind} from the daemon`, 1);
});

input.on('data', (chunk) => {
  try {
    decoder.push(chunk);
  } catch (err) {
    die(err.message, 1);
  }
});
// EOF: the daemon is gone. Exit at once, even with a handler still running.
input.on('end', () => process.exit(0));
input.on('error', (err) => die(`control channel read failed: ${err.message}`, 1));

// Without these Node would crash the worker; Lambda instead fails the invocation in flight.
process.on('uncaughtException', (err) => {
  if (state === 'initializing') initFailed(classifyLoadError(err).errorJson);
  else if (!(runner && runner.failCurrent(toErrorJson(err)))) logStray('Uncaught exception', err);
});
process.on('unhandledRejection', (reason) => {
  if (state === 'initializing') {
    initFailed(platformError('Runtime.InitError', reason, 'Unhandled promise rejection: '));
  } else if (!(runner && runner.failCurrent(platformError('Runtime.UnhandledPromiseRejection', reason)))) {
    logStray('Unhandled promise rejection', reason);
  }
});

// Between invocations there is nobody to report to; the log is the best place, and the worker
// stays up rather than fail the next caller for what a stray timer did.
function logStray(what, value) {
  const json = toErrorJson(value);
  const detail = json.stackTrace.length ? json.stackTrace.join('\n') : `${json.errorType}: ${json.errorMessage}`;
  process.stderr.write(`${what} outside any invocation: ${detail}\n`);
}

// Warm-up: a cell waits for its function, and a first SPECIALISE used to spend most of its time
// in V8 compiling the shim's functions and Node's (both are compiled when first called). While
// nothing has come, the worker rehearses SPECIALISE, a handler's load and one invocation with the
// shim's own stand-ins (each module's warmUp says how): no function code, no write to any file,
// the control pipe or stdout/stderr, no environment change, no listener left behind. Each step is
// short and runs from the event loop, so a frame or EOF is taken between steps; the first frame
// (SPECIALISE, or INIT for a spawned worker) stops it. A failure just ends the rehearsal. It
// starts WARM_UP_DELAY_MS after start-up: a spawned worker has its INIT by then, and does not
// share its CPU with a rehearsal it has no use for.
const WARM_UP_DELAY_MS = 10;
let warmUpTimer = null;  // the first step's Timeout, then each next step's Immediate
let warmUpTimerIsImmediate = false;

function stopWarmUp() {
  if (warmUpTimer !== null) {
    if (warmUpTimerIsImmediate) clearImmediate(warmUpTimer);
    else clearTimeout(warmUpTimer);
  }
  warmUpTimer = null;
}

function warmUpStep(steps) {
  warmUpTimer = null;
  if (state !== 'starting' || steps.length === 0) return;
  const step = steps.shift();
  const next = () => {
    if (state === 'starting') {
      warmUpTimer = setImmediate(warmUpStep, steps);
      warmUpTimerIsImmediate = true;
    }
  };
  try {
    const pending = step(next);
    if (pending) pending.then(next, () => {});
    else if (step.length === 0) next();
  } catch (_) { /* rehearsal over */ }
}

function warmUp() {
  let handler = null;
  const steps = [
    // A frame's way in: the control pipe's stream is a Readable too.
    (done) => {
      const dummy = new (require('stream').Readable)({ read() {} });
      dummy.on('data', () => {
        dummy.destroy();
        done();
      });
      dummy.push(Buffer.alloc(16));
    },
    () => warmUpSpecialise(),
    () => {
      const frame = Buffer.from(JSON.stringify({
        handler: 'noop.handler', function_name: 'warmup', function_version: '$LATEST', memory_mb: 128,
        environment: { WARMUP: '1' }, identity: { uid: 1, gid: 1 }, process_environment: { PATH: '/usr/bin:/bin' },
      }));
      functionInfo(parseBody('SPECIALISE', frame));
      toErrorJson(new Error('warmup'));
    },
    () => loader.warmUp().then((h) => { handler = h; }),
    (done) => {
      if (typeof handler !== 'function') return;
      const id = Buffer.from('warmup');
      const head = Buffer.alloc(13);
      head[0] = id.length;
      const body = Buffer.concat([head.subarray(0, 1), id, head.subarray(1), Buffer.from('{}')]);
      new channel.Decoder((kind, frameBody) => splitInvoke(frameBody))
        .push(channel.encode(Kind.INVOKE, body));
      const info = functionInfo({ function_name: 'warmup' });
      invoke.warmUp(handler, info, (requestId, ok, text) => {
        channel.encodeReply(ok ? Kind.RESULT : Kind.ERROR, requestId, text);
      }, (hold) => { if (hold) holdLoop(true); }, done);
    },
  ];
  warmUpTimer = setTimeout(warmUpStep, WARM_UP_DELAY_MS, steps);
}

warmUp();
