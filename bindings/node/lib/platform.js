'use strict';
// Where the C library lives for this platform: shared by the loader (lib/ffi.js) and the
// packing script (scripts/native.js), so that what npm pack puts in is what require finds.

const LIB_NAMES = {
  linux: 'libbatchdb.so',
  darwin: 'libbatchdb.dylib',
  win32: 'batchdb.dll',
};

/** The folder under native/ for this platform, e.g. linux-x64. */
function platformDir() {
  return `${process.platform}-${process.arch}`;
}

module.exports = { LIB_NAMES, platformDir };
