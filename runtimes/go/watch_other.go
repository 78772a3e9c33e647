//go:build !linux

package fnhost

// watchHangup is Linux's: fnhost runs workers on Linux only. Elsewhere the package still builds
// (for a function's own tests), and a worker notices the daemon's end only between invocations.
func watchHangup(int) {}
