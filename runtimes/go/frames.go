package fnhost

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"fnhost/internal/wire"
)

// Frame kinds of protos/worker-protocol.md, version 2; the framing itself is package wire's,
// shared with the Runtime API adapter (cmd/fnhost-runtime-api).
const (
	protocolVersion = wire.ProtocolVersion

	kindHello     = wire.KindHello
	kindInit      = wire.KindInit
	kindInitOK    = wire.KindInitOK
	kindInitError = wire.KindInitError
	kindInvoke    = wire.KindInvoke
	kindResult    = wire.KindResult
	kindError     = wire.KindError

	maxFrame = wire.MaxFrame // counts the kind byte and the body
)

// channel is the worker's end of the control pipes. Frames are read by the goroutine that
// serves invocations, between invocations, so an INVOKE reaches its handler without a hop
// between goroutines; watchHangup covers the time a handler runs.
type channel struct {
	*wire.Channel
}

// openChannel takes the fds named in FNHOST_CONTROL_FDS ("<in>,<out>").
func openChannel(spec string) (*channel, error) {
	c, err := wire.Open(spec)
	if err != nil {
		return nil, err
	}
	return &channel{c}, nil
}

// next returns the next frame, which must be of the kind wanted. EOF means the daemon is gone,
// and the worker goes with it.
func (c *channel) next(want byte) []byte {
	kind, body, err := c.ReadFrame()
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

// send writes one frame: kind, then an optional request id (RESULT/ERROR), then body.
// Only one goroutine at a time ever sends (HELLO from init, then the goroutine in Start), so no
// lock.
func (c *channel) send(kind byte, id []byte, body []byte) {
	if err := c.Send(kind, id, body); err != nil {
		if errors.Is(err, syscall.EPIPE) {
			os.Exit(0) // the daemon is gone: same as EOF on <in>
		}
		protocolFailure(err)
	}
}

// splitInvoke parses an INVOKE body (see wire.SplitInvoke).
func splitInvoke(body []byte) (id []byte, deadlineMs int64, context []byte, payload []byte, err error) {
	return wire.SplitInvoke(body)
}

// protocolFailure ends a worker whose channel can no longer be trusted; the daemon sees the exit
// and this line at the end of stderr.
func protocolFailure(err error) {
	fmt.Fprintf(os.Stderr, "fnhost: worker protocol error: %v\n", err)
	os.Exit(1)
}
