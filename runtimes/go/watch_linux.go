package fnhost

import (
	"errors"
	"os"
	"syscall"
	"unsafe"
)

// watchHangup ends the process as soon as the daemon's end of <in> closes, even while a handler
// runs or the user's package is still initialising. It asks ppoll for no event at all: POLLHUP
// is reported regardless, and arriving frames do not wake it, so the serving goroutine stays the
// only reader.
func watchHangup(fd int) {
	pfd := struct {
		fd      int32
		events  int16
		revents int16
	}{fd: int32(fd)}
	for {
		_, _, errno := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&pfd)), 1, 0, 0, 0, 0)
		if errno == syscall.EINTR {
			continue
		}
		switch {
		case errno != 0:
			return // cannot watch; EOF is still noticed between invocations
		case pfd.revents&pollNval != 0:
			protocolFailure(errors.New("the control channel's fd was closed by the function's code"))
		case pfd.revents&(pollHup|pollErr) != 0:
			os.Exit(0)
		}
	}
}

const (
	pollErr  = 0x8
	pollHup  = 0x10
	pollNval = 0x20
)
