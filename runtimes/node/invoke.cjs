'use strict';
// One invocation: the Lambda context, the three handler styles (promise, callback, plain return)
// and how each of them ends in exactly one RESULT or ERROR.

const buffer = require('buffer');
const { toErrorJson, platformError, simpleError } = require('./errors.cjs');

// Leaves room for the header and request id inside the protocol's 16 MiB frame limit.
const MAX_TEXT = 16 * 1024 * 1024 - 512;

// process.stdout/stderr on a pipe write synchronously until the pipe is full, then queue in
// libuv. Anything queued must reach the daemon before RESULT/ERROR, or those lines would be
// attributed to the next invocation. A stream that fails instead (EPIPE) closes, which ends the
// wait just as well.
function whenStdioFlushed(then) {
  for (const stream of [process.stdout, process.stderr]) {
    if (stream.writableLength > 0 && !stream.destroyed) {
      const resume = () => {
        stream.off('drain', resume);
        stream.off('close', resume);
        whenStdioFlushed(then);
      };
      stream.on('drain', resume);
      stream.on('close', resume);
      return;
    }
  }
  then();
}

// buffer.isUtf8 arrived in Node 18.14; a fatal TextDecoder is the slower equivalent.
const isUtf8 = buffer.isUtf8 || ((bytes) => {
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return true;
  } catch (_) {
    return false;
  }
});

function parseEvent(payload) {
  // Lambda hands an invocation without a payload to the handler as {}.
  if (payload.length === 0) return {};
  if (!isUtf8(payload)) throw new Error('payload is not valid UTF-8');
  return JSON.parse(payload.toString('utf8'));
}

// INVOKE's context (protocol version 2): { clientContext, invokedFunctionArn }, or null when the
// invocation has none. Throws an Error saying what is wrong with it.
function parseContext(raw) {
  if (raw.length === 0) return null;
  const context = JSON.parse(raw.toString('utf8'));
  if (context === null || typeof context !== 'object' || Array.isArray(context)) {
    throw new Error('it is not a JSON object');
  }
  const clientContext = context.client_context;
  const arn = context.invoked_function_arn;
  if (clientContext !== undefined && clientContext !== null &&
      (typeof clientContext !== 'object' || Array.isArray(clientContext))) {
    throw new Error('client_context is not a JSON object');
  }
  const client = clientContext ? clientContext.client : undefined;
  if (client !== undefined && client !== null && (typeof client !== 'object' || Array.isArray(client))) {
    throw new Error('client_context.client is not a JSON object');
  }
  if (arn !== undefined && arn !== null && typeof arn !== 'string') {
    throw new Error('invoked_function_arn is not a string');
  }
  return { clientContext: clientContext ?? undefined, invokedFunctionArn: arn || undefined };
}

function isThenable(value) {
  return value !== null && (typeof value === 'object' || typeof value === 'function') &&
    typeof value.then === 'function';
}

// Lambda's wording: a handler that answers twice (a callback and a promise, say) learns of it.
function warnDone() {
  process.stderr.write('Invocation has already been reported as done. Cannot call complete more than once per invocation.\n');
}

class Invocation {
  constructor(runner, requestId, deadlineMs) {
    this.runner = runner;
    this.requestId = requestId;
    this.deadlineMs = deadlineMs;
    this.invoked = null; // parseContext's result: this invocation's client context and ARN
    this.done = false;
    this.waitsForEmptyLoop = true;
    this.parked = undefined; // a callback's result waiting for the event loop to empty
  }

  // Lambda's legacy API and the callback both end here. `immediate` is false only for a
  // successful callback while callbackWaitsForEmptyEventLoop is on: Lambda then answers once the
  // event loop has drained, so timers and sockets the handler left behind get to finish.
  complete(err, result, immediate) {
    if (this.done) {
      warnDone();
      return;
    }
    if (err !== undefined && err !== null) {
      this.fail(err);
    } else if (immediate || !this.waitsForEmptyLoop) {
      this.succeed(result);
    } else {
      this.parked = { result };
    }
  }

  // A rejected promise fails the invocation whatever it was rejected with, undefined included.
  reject(err) {
    if (this.done) warnDone();
    else this.fail(err);
  }

  // The event loop has nothing left to do: Lambda's "handler returned nothing" outcome.
  loopEmpty() {
    if (!this.done) this.succeed(this.parked ? this.parked.result : null);
  }

  succeed(value) {
    if (this.done) return;
    let text;
    try {
      text = JSON.stringify(value === undefined ? null : value);
    } catch (err) {
      this.failWith(platformError('Runtime.MarshalError', err, 'Unable to stringify response body: '));
      return;
    }
    // Functions and symbols have no JSON form; Lambda sends null for them as for undefined.
    if (text === undefined) text = 'null';
    if (text.length > MAX_TEXT / 3 && Buffer.byteLength(text, 'utf8') > MAX_TEXT) {
      this.failWith(simpleError('Function.ResponseSizeTooLarge',
        `Response payload size (${Buffer.byteLength(text, 'utf8')} bytes) exceeds the 16 MiB frame limit`));
      return;
    }
    this.finish(true, text);
  }

  fail(err) {
    this.failWith(toErrorJson(err));
  }

  failWith(errorJson) {
    if (this.done) return;
    let text = JSON.stringify(errorJson);
    if (text.length > MAX_TEXT / 3) {
      // A pathological message or stack must not break the channel: keep the beginning.
      text = JSON.stringify({
        errorType: errorJson.errorType,
        errorMessage: String(errorJson.errorMessage).slice(0, 256 * 1024),
        stackTrace: errorJson.stackTrace.slice(0, 200).map((line) => String(line).slice(0, 1024)),
      });
    }
    this.finish(false, text);
  }

  finish(ok, text) {
    this.done = true;
    whenStdioFlushed(() => this.runner.reply(this, ok, text));
  }

  context() {
    const { info } = this.runner;
    const inv = this;
    const done = (err, result) => inv.complete(err, result, true);
    const invoked = this.invoked;
    const context = {
      awsRequestId: this.requestId.toString('latin1'),
      invokedFunctionArn: (invoked && invoked.invokedFunctionArn) || info.invokedFunctionArn,
      functionName: info.functionName,
      functionVersion: info.functionVersion,
      memoryLimitInMB: info.memoryLimitInMB,
      logGroupName: info.logGroupName,
      logStreamName: info.logStreamName,
      // Lambda's Node runtime hands over the parsed object as it came, or undefined.
      clientContext: invoked ? invoked.clientContext : undefined,
      identity: undefined,
      getRemainingTimeInMillis: () => Math.max(0, inv.deadlineMs - Date.now()),
      done,
      succeed: (result) => done(null, result),
      // Lambda's fail() without an error still fails, with the message "handled".
      fail: (err) => done(err === undefined || err === null ? 'handled' : err),
    };
    Object.defineProperty(context, 'callbackWaitsForEmptyEventLoop', {
      enumerable: true,
      get: () => inv.waitsForEmptyLoop,
      set: (value) => { inv.waitsForEmptyLoop = Boolean(value); },
    });
    return context;
  }
}

class Runner {
  // reply(requestId, ok, text) writes the frame; holdLoop(bool) says whether the control pipe
  // may keep the event loop alive (it must not while a handler runs, or the loop never empties).
  // watchLoop false (warmUp's rehearsal only) leaves process's beforeExit alone.
  constructor(handler, info, { reply, holdLoop, watchLoop = true }) {
    this.handler = handler;
    this.takesCallback = handler.length >= 3;
    this.info = info;
    this.sendReply = reply;
    this.holdLoop = holdLoop;
    this.current = null;
    if (watchLoop) {
      process.on('beforeExit', () => {
        if (this.current) this.current.loopEmpty();
      });
    }
  }

  get busy() {
    return this.current !== null && !this.current.done;
  }

  invoke(requestId, deadlineMs, rawContext, payload) {
    const inv = new Invocation(this, requestId, deadlineMs);
    this.current = inv;
    this.holdLoop(false);
    try {
      inv.invoked = parseContext(rawContext);
    } catch (err) {
      inv.failWith(simpleError('Runtime.InvalidContext', `Unable to parse the invocation's context: ${err.message}`));
      return;
    }
    let event;
    try {
      event = parseEvent(payload);
    } catch (err) {
      inv.failWith(simpleError('Runtime.UnmarshalError', `Unable to parse input as json: ${err.message}`));
      return;
    }
    const callback = (err, result) => inv.complete(err, result, false);
    let returned;
    try {
      returned = this.handler(event, inv.context(), callback);
    } catch (err) {
      inv.fail(err);
      return;
    }
    if (isThenable(returned)) {
      Promise.resolve(returned).then((value) => inv.complete(null, value, true),
        (err) => inv.reject(err));
    } else if (returned !== undefined && !this.takesCallback) {
      // Not in Lambda, where a plain return value is ignored; an (event, context) handler that
      // returns a value synchronously clearly means it as the result.
      inv.complete(null, returned, true);
    }
    // Otherwise the callback, context.succeed/fail/done or an empty event loop ends it.
  }

  // An uncaught exception or unhandled rejection belongs to the invocation in flight, as in
  // Lambda. Returns false when there is none, so the caller can log it instead.
  failCurrent(errorJson) {
    if (!this.busy) return false;
    this.current.failWith(errorJson);
    return true;
  }

  reply(inv, ok, text) {
    if (this.current === inv) {
      this.current = null;
      this.holdLoop(true);
    }
    this.sendReply(inv.requestId, ok, text);
  }
}

// A stem cell's rehearsal of one invocation while it waits (bootstrap.cjs, warmUp), with the
// shim's stand-in handler: the context, the event's and the result's JSON, the callback and
// promise paths, so that V8 has compiled them before a function's first INVOKE. `reply` gets
// (requestId, ok, text) and must send nothing. process.stdout and process.stderr, which Node
// creates when first read, are created here (whenStdioFlushed) rather than at that first reply;
// nothing is written to them. Calls `done` once the invocation has been answered.
function warmUp(handler, info, reply, holdLoop, done) {
  const runner = new Runner(handler, info, {
    reply: (requestId, ok, text) => {
      reply(requestId, ok, text);
      done();
    },
    holdLoop,
    watchLoop: false,
  });
  const context = Buffer.from('{"client_context":{"client":{}},"invoked_function_arn":"arn:aws:lambda:local:000000000000:function:warmup"}');
  runner.invoke(Buffer.from('warmup'), Date.now() + 60000, context, Buffer.from('{"warmup":[1,"2",{"3":null}]}'));
}

module.exports = { Runner, whenStdioFlushed, warmUp };
