package fnhost

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// Frame kinds of protos/worker-protocol.md, version 2.
const (
	protocolVersion = 2

	kindHello     = 1
	kindInit      = 2
	kindInitOK    = 3
	kindInitError = 4
	kindInvoke    = 5
	kindResult    = 6
	kindError     = 7

	maxFrame = 16 << 20 // counts the kind byte and the body

	// Below this a frame is assembled into one buffer so the daemon wakes once per frame; above
	// it the copy would cost more than the second write.
	coalesceLimit = 64 << 10
)

// channel is the worker's end of the control pipes. Frames are read by the goroutine that
// serves invocations, between invocations, so an INVOKE reaches its handler without a hop
// between goroutines; watchHangup covers the time a handler runs.
type channel struct {
	r    *bufio.Reader
	w    *os.File
	inFd int
}

// openChannel takes the fds named in FNHOST_CONTROL_FDS ("<in>,<out>").
func openChannel(spec string) (*channel, error) {
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
	return &channel{
		r:    bufio.NewReaderSize(os.NewFile(uintptr(inFd), "fnhost-in"), 64<<10),
		w:    os.NewFile(uintptr(outFd), "fnhost-out"),
		inFd: inFd,
	}, nil
}

// next returns the next frame, which must be of the kind wanted. EOF means the daemon is gone,
// and the worker goes with it.
func (c *channel) next(want byte) []byte {
	kind, body, err := c.readFrame()
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			os.Exit(0)
		}
		protocolFailure(err)
	}
	if kind != want {
		protocolFailure(fmt.Errorf("expected frame kind %d, got %d", want, kind))
	}
	return body
}

func (c *channel) readFrame() (byte, []byte, error) {
	var head [5]byte
	if _, err := io.ReadFull(c.r, head[:]); err != nil {
		return 0, nil, err
	}
	n := binary.BigEndian.Uint32(head[:4])
	if n < 1 || n > maxFrame {
		return 0, nil, fmt.Errorf("frame length %d out of range", n)
	}
	body := make([]byte, n-1)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return 0, nil, err
	}
	return head[4], body, nil
}

// send writes one frame: kind, then an optional request id (RESULT/ERROR), then body.
// Only one goroutine at a time ever sends (HELLO from init, then the goroutine in Start), so no
// lock.
func (c *channel) send(kind byte, id []byte, body []byte) {
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
		c.write(append(buf, body...))
		return
	}
	c.write(buf)
	c.write(body)
}

func (c *channel) write(p []byte) {
	if _, err := c.w.Write(p); err != nil {
		if errors.Is(err, syscall.EPIPE) {
			os.Exit(0) // the daemon is gone: same as EOF on <in>
		}
		protocolFailure(err)
	}
}

// splitInvoke parses an INVOKE body: id_len u8, id, deadline_ms u64, context_len u32, context,
// payload.
func splitInvoke(body []byte) (id []byte, deadlineMs int64, context []byte, payload []byte, err error) {
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

// protocolFailure ends a worker whose channel can no longer be trusted; the daemon sees the exit
// and this line at the end of stderr.
func protocolFailure(err error) {
	fmt.Fprintf(os.Stderr, "fnhost: worker protocol error: %v\n", err)
	os.Exit(1)
}
