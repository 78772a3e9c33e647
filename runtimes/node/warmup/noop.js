'use strict';
// The shim's own stand-in for a handler, loaded by a stem cell's warm-up (loader.cjs, warmUp)
// so that a function's first require() does not pay for compiling Node's module loader.
exports.handler = async (event, context) => {
  context.getRemainingTimeInMillis();
  return event;
};
