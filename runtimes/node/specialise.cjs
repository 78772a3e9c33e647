'use strict';
// A stem cell becomes one function's worker (protos/worker-protocol.md, "Stem cells"): SPECIALISE's
// steps 1-3, the function's identity, environment and working directory, in that order and before
// anything of the function's loads. INIT (step 4) is bootstrap.cjs's, as for a spawned worker.

const fs = require('fs');

// Its message names the step and the OS error; the worker answers INIT_ERROR with it and exits.
class SpecialiseFailure extends Error {}

// Node's messages mostly start with the errno name ("EACCES: permission denied, chdir ..."); not all.
function osError(err) {
  const text = String(err && err.message ? err.message : err);
  return err && err.code && !text.startsWith(err.code) ? `${err.code}: ${text}` : text;
}

// Real, effective, saved (and fs) ids and the supplementary groups, from the kernel: Node's
// getgroups() adds the effective gid to the list, and it has no getresuid() for the saved ids.
function credentials() {
  let status;
  try {
    status = fs.readFileSync('/proc/self/status', 'latin1');
  } catch (_) {
    const egid = process.getegid();
    return {
      uids: [process.getuid(), process.geteuid()],
      gids: [process.getgid(), egid],
      groups: process.getgroups().filter((g) => g !== egid),
    };
  }
  const field = (name) => {
    const match = new RegExp(`^${name}:(.*)$`, 'm').exec(status);
    return match ? match[1].trim().split(/\s+/).filter(Boolean).map(Number) : [];
  };
  return { uids: field('Uid'), gids: field('Gid'), groups: field('Groups') };
}

// Node's setgid/setuid are libc's, which (as root, holding CAP_SETGID/CAP_SETUID) set the real,
// effective and saved ids alike, and which glibc applies to every thread of the process: V8's
// and libuv's threads run the function's code too. Leaving uid 0 drops every capability.
function takeIdentity(identity) {
  if (identity === null || identity === undefined) return;  // the daemon is not root
  const { uid, gid } = identity;
  if (!Number.isSafeInteger(uid) || uid < 0 || !Number.isSafeInteger(gid) || gid < 0) {
    throw new SpecialiseFailure(`identity: uid and gid must be non-negative integers, got ${JSON.stringify(identity)}`);
  }
  let call = 'setgroups([])';
  try {
    process.setgroups([]);
    call = `setgid(${gid})`;
    process.setgid(gid);
    call = `setuid(${uid})`;
    process.setuid(uid);
  } catch (err) {
    throw new SpecialiseFailure(`identity: ${call} failed: ${osError(err)}`);
  }
  const now = credentials();
  if (now.uids.length < 2 || now.uids.some((id) => id !== uid) ||
      now.gids.length < 2 || now.gids.some((id) => id !== gid) || now.groups.length !== 0) {
    throw new SpecialiseFailure(`identity: uid ${uid} gid ${gid} did not take: uids ${now.uids}, ` +
      `gids ${now.gids}, groups [${now.groups}]`);
  }
}

// process.env is no copy in Node: its setter and deleter are setenv/unsetenv on the C environ, so
// native code and child processes see the same, and a set or deleted TZ makes Node call tzset()
// and tell V8 to drop its time-zone cache. An assignment Node cannot make (a name holding "=", a
// value holding NUL) does not throw: reading everything back catches it.
// `env` is process.env but in warmUp's rehearsal, which works on a copy of its own.
function replaceEnvironment(target, env = process.env) {
  if (target === null || typeof target !== 'object' || Array.isArray(target)) {
    throw new SpecialiseFailure('environment: process_environment is not a JSON object');
  }
  const wanted = new Map(Object.entries(target).map(([name, value]) => [name, String(value)]));
  for (const name of Object.keys(env)) {
    if (!wanted.has(name)) delete env[name];
  }
  for (const [name, value] of wanted) env[name] = value;
  const now = Object.keys(env);
  const wrong = now.find((name) => wanted.get(name) !== env[name]) ||
    [...wanted.keys()].find((name) => env[name] !== wanted.get(name));
  if (wrong !== undefined || now.length !== wanted.size) {
    throw new SpecialiseFailure(`environment: cannot set ${JSON.stringify(wrong)}: ` +
      'setenv refused it or kept less of it (EINVAL: a name holding "=", or a NUL)');
  }
  // require()'s global folders come from NODE_PATH and HOME, which Node read when the cell started.
  if (env === process.env) require('module')._initPaths();
}

function enterDirectory(cwd) {
  if (typeof cwd !== 'string' || cwd === '') {
    throw new SpecialiseFailure(`working directory: cwd must be a path, got ${JSON.stringify(cwd)}`);
  }
  try {
    process.chdir(cwd);
  } catch (err) {
    throw new SpecialiseFailure(`working directory: chdir(${cwd}) failed: ${osError(err)}`);
  }
}

// Throws a SpecialiseFailure; the cell is then neither root's nor the function's, and must exit.
function specialise(spec) {
  takeIdentity(spec.identity);
  replaceEnvironment(spec.process_environment);
  enterDirectory(spec.cwd);
}

// A cell's rehearsal of the above while it waits (bootstrap.cjs, warmUp): V8 compiles a function
// the first time it runs, and Node's own lazily, so a first SPECIALISE paid for compiling all of
// this. Nothing changes: the credentials are read, the environment steps run on a copy, and the
// 'module' built-in (about 1 ms to load) is loaded now rather than in step 2.
function warmUp() {
  credentials();
  const copy = { ...process.env };
  replaceEnvironment({ ...copy, FNHOST_WARMUP: '1' }, copy);
  require('module');
}

module.exports = { specialise, SpecialiseFailure, warmUp };
