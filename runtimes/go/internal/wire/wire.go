// Package wire is the worker protocol's framing (protos/worker-protocol.md, version 2), shared by
// package fnhost (a Go function that is its own worker) and cmd/fnhost-runtime-api (the worker
// that serves Lambda's Runtime API to a bootstrap). It only moves bytes: what to do when the
// channel breaks (exit, report a protocol error) is each caller's decision.
package wire

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Frame kinds and limits of protos/worker-protocol.md, version 2.
const (
	ProtocolVersion = 2

	KindHello     = 1
	KindInit      = 2
	KindInitOK    = 3
	KindInitError = 4
	KindInvoke    = 5
	KindResult    = 6
	KindError     = 7

	MaxFrame = 16 << 20 // counts the kind byte and the body

	// Below this a frame is assembled into one buffer so the daemon wakes once per frame; above
	// it the copy would cost more than the second write.
	coalesceLimit = 64 << 10
)

// Channel is the worker's end of the control pipes.
type Channel struct {
	R    *bufio.Reader
	W    *os.File
	InFd int
}

// Open takes the fds named in FNHOST_CONTROL_FDS ("<in>,<out>") and marks them close-on-exec.
// It returns an error when spec is not two fd numbers.
func Open(spec string) (*Channel, error) { return open(spec, false) }

// OpenPollable is Open with both fds made non-blocking, so that reads and writes wait in Go's
// network poller instead of holding an OS thread (and, with GOMAXPROCS 1, the only P) in a
// blocking system call.
func OpenPollable(spec string) (*Channel, error) { return open(spec, true) }

func open(spec string, pollable bool) (*Channel, error) {
	in, out, ok := strings.Cut(spec, ",")
	if !ok {
		return nil, fmt.Errorf("FNHOST_CONTROL_FDS=%q is not \"<in>,<out>\"", spec)
	}
	inFd, err1 := strconv.Atoi(in)
	outFd, err2 := strconv.Atoi(out)
	if err1 != nil || err2 != nil || inFd < 0 || outFd < 0 {
		return nil, fmt.Errorf("FNHOST_CONTROL_FDS=%q is not two fd numbers", spec)
	}
	// The daemon cleared close-on-exec to hand the fds over; a program the user's code starts
	// must not inherit the control channel.
	syscall.CloseOnExec(inFd)
	syscall.CloseOnExec(outFd)
	if pollable {
		// os.NewFile hands a non-blocking fd to the poller.
		if err := syscall.SetNonblock(inFd, true); err != nil {
			return nil, fmt.Errorf("control fd %d: %v", inFd, err)
		}
		if err := syscall.SetNonblock(outFd, true); err != nil {
			return nil, fmt.Errorf("control fd %d: %v", outFd, err)
		}
	}
	return &Channel{
		R:    bufio.NewReaderSize(os.NewFile(uintptr(inFd), "fnhost-in"), 64<<10),
		W:    os.NewFile(uintptr(outFd), "fnhost-out"),
		InFd: inFd,
	}, nil
}

// ReadFrame returns the next frame's kind and body. It returns io.EOF or io.ErrUnexpectedEOF
// when the daemon is gone, and an error for a length out of range.
func (c *Channel) ReadFrame() (byte, []byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(c.R, head[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[:4])
	if n < 1 || n > MaxFrame {
		return 0, nil, fmt.Errorf("frame length %d out of range", n)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(c.R, body); err != nil {
		return 0, nil, err
	}
	return head[4], body, nil
}

// Send writes one frame: kind, then an optional request id (RESULT/ERROR), then body. Callers
// send one frame at a time (no lock here). It returns the write's error (EPIPE: the daemon is
// gone).
func (c *Channel) Send(kind byte, id []byte, body []byte) error {
	headLen := 5
	if id != nil {
		headLen += 1 + len(id)
	}
	total := headLen + len(body)
	var buf []byte
	if len(body) <= coalesceLimit {
		buf = make([]byte, headLen, total)
	} else {
		buf = make([]byte, headLen)
	}
	binary.BigEndian.PutUint32(buf, uint32(total-4))
	buf[4] = kind
	if id != nil {
		buf[5] = byte(len(id))
		copy(buf[6:], id)
	}
	if len(body) <= coalesceLimit {
		_, err := c.W.Write(append(buf, body...))
		return err
	}
	if _, err := c.W.Write(buf); err != nil {
		return err
	}
	_, err := c.W.Write(body)
	return err
}

// SplitInvoke parses an INVOKE body: id_len u8, id, deadline_ms u64, context_len u32, context,
// payload. It returns an error for a body too short for its own lengths.
func SplitInvoke(body []byte) (id []byte, deadlineMs int64, context []byte, payload []byte, err error) {
	if len(body) < 1 || len(body) < 1+int(body[0])+12 {
		return nil, 0, nil, nil, fmt.Errorf("INVOKE body of %d bytes is too short", len(body))
	}
	n := int(body[0])
	id = body[1 : 1+n]
	deadlineMs = int64(binary.BigEndian.Uint64(body[1+n:]))
	size := uint64(binary.BigEndian.Uint32(body[1+n+8:]))
	start := uint64(1 + n + 12)
	if uint64(len(body)) < start+size {
		return nil, 0, nil, nil, fmt.Errorf("INVOKE context of %d bytes runs past the end of the body", size)
	}
	return id, deadlineMs, body[start : start+size], body[start+size:], nil
}
