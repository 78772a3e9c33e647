'use strict';
// Lambda's error JSON for whatever a handler throws, rejects with or passes to its callback.

const { types } = require('util');

// Lambda's Node runtime treats anything shaped like an Error (name, message, stack) as one,
// so errors from another realm (vm contexts) or hand-made ones keep their type.
function isErrorLike(value) {
  if (types.isNativeError(value)) return true;
  return value !== null && typeof value === 'object' &&
    typeof value.name === 'string' && typeof value.message === 'string' &&
    typeof value.stack === 'string';
}

function stackLines(error) {
  const { stack } = error;
  return typeof stack === 'string' ? stack.split('\n') : [];
}

// A non-Error value has no name or stack; its message is the most readable text we can get
// (JSON for plain data, so `throw {code: 42}` does not turn into "[object Object]").
function describeValue(value) {
  if (typeof value === 'string') return value;
  if (value !== null && typeof value === 'object') {
    try {
      const json = JSON.stringify(value);
      if (json !== undefined) return json;
    } catch (_) { /* circular or BigInt inside: fall back to String() */ }
  }
  try {
    return String(value);
  } catch (_) {
    return Object.prototype.toString.call(value);
  }
}

// Lambda's Node runtime names a non-Error by its typeof ("string", "number", "object", ...).
function typeName(value) {
  if (isErrorLike(value)) return typeof value.name === 'string' && value.name ? value.name : 'Error';
  return value === null ? 'object' : typeof value;
}

function toErrorJson(value) {
  try {
    if (isErrorLike(value)) {
      return {
        errorType: typeName(value),
        errorMessage: typeof value.message === 'string' ? value.message : String(value.message),
        stackTrace: stackLines(value),
      };
    }
    return { errorType: typeName(value), errorMessage: describeValue(value), stackTrace: [] };
  } catch (_) {
    // Getters on a hostile error object can throw; the invocation must still fail cleanly.
    return {
      errorType: 'Error',
      errorMessage: 'the handler failed with a value whose name, message or stack could not be read',
      stackTrace: [],
    };
  }
}

// For platform errors (Runtime.*) whose message quotes the original: "TypeError: x is not ...".
function platformError(errorType, cause, prefix) {
  const original = toErrorJson(cause);
  const text = `${original.errorType}: ${original.errorMessage}`;
  return {
    errorType,
    errorMessage: prefix ? `${prefix}${text}` : text,
    stackTrace: original.stackTrace,
  };
}

function simpleError(errorType, errorMessage) {
  return { errorType, errorMessage, stackTrace: [] };
}

module.exports = { isErrorLike, toErrorJson, platformError, simpleError, typeName };
