'use strict';
// Finds and loads the handler named by "dir/file.export", the way Lambda's Node runtime does:
// the file part is tried as-is, then .js (CommonJS or ESM by the nearest package.json), .mjs and
// .cjs, then as a package in node_modules; the export part may be nested ("file.a.b").

const fs = require('fs');
const path = require('path');
const { platformError, simpleError, typeName } = require('./errors.cjs');

class InitFailure extends Error {
  constructor(errorJson) {
    super(errorJson.errorMessage);
    this.errorJson = errorJson;
  }
}

function splitHandler(handler) {
  if (typeof handler !== 'string' || handler === '') {
    throw new InitFailure(simpleError('Runtime.MalformedHandlerName',
      `handler must be a string "file.export" (e.g. "index.handler"), got ${JSON.stringify(handler)}`));
  }
  if (handler.includes('..')) {
    throw new InitFailure(simpleError('Runtime.MalformedHandlerName',
      `'${handler}' is not a valid handler name: ".." is not allowed; name the file relative to the code directory`));
  }
  const base = path.basename(handler);
  const moduleRoot = handler.slice(0, handler.length - base.length);
  const dot = base.indexOf('.');
  if (dot <= 0 || dot === base.length - 1) {
    throw new InitFailure(simpleError('Runtime.MalformedHandlerName',
      `'${handler}' is not a valid handler name: expected "file.export" (e.g. "index.handler" or "src/app.handler")`));
  }
  return { moduleRoot, moduleName: base.slice(0, dot), exportPath: base.slice(dot + 1) };
}

function isFile(p) {
  try {
    return fs.statSync(p).isFile();
  } catch (_) {
    return false;
  }
}

// Node's own rule for a .js file: the nearest package.json decides, and the search stops at a
// node_modules folder. An unreadable package.json is an error in Node; it is one here too.
function packageTypeIsModule(dir) {
  for (;;) {
    if (path.basename(dir) === 'node_modules') return false;
    const pj = path.join(dir, 'package.json');
    let text = null;
    // existsSync first: a failed read costs an Error with its stack, and most folders have none.
    if (fs.existsSync(pj)) {
      try {
        text = fs.readFileSync(pj, 'utf8');
      } catch (_) {
        text = null;
      }
    }
    if (text !== null) {
      let pkg;
      try {
        pkg = JSON.parse(text);
      } catch (err) {
        throw new InitFailure(simpleError('Runtime.ImportModuleError',
          `cannot decide whether ${path.join(dir, '*.js')} is CommonJS or ESM: ${pj} is not valid JSON (${err.message})`));
      }
      return pkg !== null && typeof pkg === 'object' && pkg.type === 'module';
    }
    const parent = path.dirname(dir);
    if (parent === dir) return false;
    dir = parent;
  }
}

async function importFile(file) {
  // Loaded lazily: `url` is not needed by CommonJS-only functions.
  const { pathToFileURL } = require('url');
  try {
    return await import(pathToFileURL(file).href);
  } catch (err) {
    if (err instanceof SyntaxError && !syntaxErrorLocation(err)) err.fnhostEsmFile = file;
    throw err;
  }
}

// A .js file outside a "type": "module" package may still be ESM: Node 20.19+ detects that and
// require() loads it, unless its module graph has a top-level await (ERR_REQUIRE_ASYNC_MODULE);
// older Nodes refuse it outright (ERR_REQUIRE_ESM). Either way import() is what works, as in
// Lambda. Only a refusal naming this very file counts: one from deeper down is the user's bug.
async function requireFile(file) {
  try {
    return require(file);
  } catch (err) {
    const code = err !== null && typeof err === 'object' ? err.code : undefined;
    if ((code === 'ERR_REQUIRE_ASYNC_MODULE' || code === 'ERR_REQUIRE_ESM') &&
        String(err.message).includes(file)) {
      return importFile(file);
    }
    throw err;
  }
}

async function loadModule(appRoot, moduleRoot, moduleName, handler) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  // Lambda tries the bare name first, so a directory "app/" with an index.js answers "app.handler".
  if (fs.existsSync(base)) return requireFile(base);
  const js = `${base}.js`;
  if (isFile(js)) return packageTypeIsModule(path.dirname(js)) ? importFile(js) : requireFile(js);
  if (isFile(`${base}.mjs`)) return importFile(`${base}.mjs`);
  if (isFile(`${base}.cjs`)) return require(`${base}.cjs`);
  let resolved;
  try {
    resolved = require.resolve(moduleName, { paths: [appRoot, path.resolve(appRoot, moduleRoot)] });
  } catch (err) {
    if (err && err.code === 'MODULE_NOT_FOUND') {
      throw new InitFailure(simpleError('Runtime.ImportModuleError',
        `Error: Cannot find module '${moduleName}' for handler '${handler}': looked for ${base}, ` +
        `${base}.js, ${base}.mjs, ${base}.cjs and a package '${moduleName}' in node_modules`));
    }
    throw err;
  }
  return require(resolved);
}

// For CommonJS, Node says where a syntax error is only in the stack's first two lines
// ("/code/app.js:3", then the offending source line); the message alone does not name the file.
function syntaxErrorLocation(err) {
  const [first, source] = typeof err.stack === 'string' ? err.stack.split('\n', 2) : [];
  if (!/^(?:file:\/\/)?\/\S*:\d+$/.test(first || '')) return null;
  const where = first.replace(/^file:\/\//, '');
  return source && source.trim() ? `${where}: ${source.trim()}` : where;
}

// An ES module's SyntaxError carries no location at all in Node 20. Only on this failure path,
// `node --check` on the handler's file recovers it ("/code/app.mjs:3" and the offending line);
// when that file is fine, the error is in a module it imports.
function esmSyntaxErrorLocation(file) {
  const { spawnSync } = require('child_process');
  const check = spawnSync(process.execPath, ['--check', file], { encoding: 'utf8', timeout: 10000 });
  const lines = (check.stderr || '').split('\n');
  if (check.status !== 0 && /^\/\S*:\d+$/.test(lines[0])) {
    return `at ${lines[0]}: ${(lines[1] || '').trim()}`;
  }
  return `in a module imported by ${file}`;
}

// The require stack Node puts in the message ends with the shim's own files: not the user's concern.
function withoutShimFrames(message) {
  return message.split('\n').filter((line) => !line.startsWith(`- ${__dirname}${path.sep}`)).join('\n');
}

function classifyLoadError(err) {
  if (err instanceof InitFailure) return err;
  if (err instanceof SyntaxError) {
    const json = platformError('Runtime.UserCodeSyntaxError', err);
    const where = syntaxErrorLocation(err);
    if (where) json.errorMessage += ` (at ${where})`;
    else if (err.fnhostEsmFile) json.errorMessage += ` (${esmSyntaxErrorLocation(err.fnhostEsmFile)})`;
    if (/outside a module|import\.meta/.test(err.message)) {
      json.errorMessage += '; to load a .js file as an ES module, add "type": "module" to its package.json or rename it .mjs';
    }
    return new InitFailure(json);
  }
  const code = err !== null && typeof err === 'object' ? err.code : undefined;
  if (code === 'MODULE_NOT_FOUND' || code === 'ERR_MODULE_NOT_FOUND') {
    const json = platformError('Runtime.ImportModuleError', err);
    json.errorMessage = withoutShimFrames(json.errorMessage);
    return new InitFailure(json);
  }
  return new InitFailure(platformError('Runtime.InitError', err));
}

function describeExports(mod) {
  if (mod === null || (typeof mod !== 'object' && typeof mod !== 'function')) return `a ${typeName(mod)}`;
  const names = Object.keys(mod);
  if (names.length === 0) return 'no exports';
  const shown = names.slice(0, 20).join(', ');
  return `exports: ${shown}${names.length > 20 ? ', …' : ''}`;
}

function resolveExport(mod, exportPath, handler) {
  let value = mod;
  for (const key of exportPath.split('.')) {
    value = value === null || value === undefined ? undefined : value[key];
  }
  if (typeof value === 'function') return value;
  const message = value === undefined || value === null
    ? `${handler} is undefined or not exported (the module has ${describeExports(mod)})`
    : `${handler} is not a function (found a value of type ${typeName(value)})`;
  throw new InitFailure(simpleError('Runtime.HandlerNotFound', message));
}

// Resolves to the handler function, or rejects with an InitFailure carrying the error JSON.
async function loadHandler(appRoot, handler) {
  const { moduleRoot, moduleName, exportPath } = splitHandler(handler);
  let mod;
  try {
    mod = await loadModule(appRoot, moduleRoot, moduleName, handler);
  } catch (err) {
    throw classifyLoadError(err);
  }
  return resolveExport(mod, exportPath, handler);
}

// A stem cell's rehearsal of a CommonJS handler's load while it waits (bootstrap.cjs, warmUp),
// with the shim's own warmup/noop.js: V8 compiles a function the first time it runs, Node's
// module loader included, and a first SPECIALISE paid for that. The package.json walk runs from
// the shim's folder too (read-only). The stand-in is then dropped from require()'s caches, so
// nothing of it shows to the function. Resolves to the stand-in's handler.
async function warmUp() {
  const dir = path.join(__dirname, 'warmup');
  const file = path.join(dir, 'noop.js');
  try {
    packageTypeIsModule(__dirname);
  } catch (_) { /* a broken package.json above the shim is no concern of the rehearsal */ }
  isFile(path.join(dir, 'absent.js'));
  try {
    return await loadHandler(dir, 'noop.handler');
  } finally {
    const Module = require('module');
    const loaded = Module._cache[file];
    delete Module._cache[file];
    const at = loaded ? module.children.indexOf(loaded) : -1;  // this file's require() loaded it
    if (at >= 0) module.children.splice(at, 1);
    for (const key of Object.keys(Module._pathCache)) {
      if (Module._pathCache[key] === file) delete Module._pathCache[key];
    }
  }
}

module.exports = { loadHandler, InitFailure, classifyLoadError, warmUp };
