// Package fnhost runs a Go function as an fnhost worker, the way aws-lambda-go's lambda package
// runs one on AWS Lambda. A function is a main package that calls Start:
//
//	package main
//
//	import "fnhost"
//
//	func handler(ctx context.Context, event MyEvent) (MyResult, error) { … }
//
//	func main() { fnhost.Start(handler) }
//
// Handler shapes are aws-lambda-go's: func ([context.Context] [, TIn]) [([TOut,] error)], TIn and
// TOut being anything encoding/json handles. The context carries the invocation deadline
// (ctx.Deadline()) and a *LambdaContext (FromContext); FunctionName and the other package
// variables mirror lambdacontext's.
//
// The worker protocol (protos/worker-protocol.md) starts in this package's init function, which
// runs before the user's main package initialises: HELLO goes out, FNHOST_CONTROL_FDS leaves the
// environment, and a goroutine watches for the daemon's end of the pipe closing from then on.
// Go initialises independent packages in import-path order, so a package of the user's that
// sorts before "fnhost" (example.com/app/db, say) and does not import it initialises first. A program run outside fnhost
// (go test of the user's package, say) sees none of that until it calls Start.
package fnhost

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync/atomic"
	"time"
)

const controlFdsEnv = "FNHOST_CONTROL_FDS"

var (
	control    *channel // nil outside fnhost
	controlErr error    // why the channel named in the environment could not be opened
	started    atomic.Bool
)

func init() {
	loadSettings()
	spec, ok := os.LookupEnv(controlFdsEnv)
	if !ok {
		return
	}
	// Before any user code: the fds are the daemon's, not the function's.
	os.Unsetenv(controlFdsEnv)
	c, err := openChannel(spec)
	if err != nil {
		controlErr = err
		return
	}
	control = c
	hello := `{"protocol":` + strconv.Itoa(protocolVersion) + `,"runtime":"go","runtime_version":` +
		strconv.Quote(runtime.Version()) + `,"pid":` + strconv.Itoa(os.Getpid()) + `}`
	c.send(kindHello, nil, []byte(hello))
	go watchHangup(c.InFd)
}

// Start serves invocations with handler until the daemon goes away; it never returns. handler is
// a function of one of the shapes in the package documentation, or a Handler. A handler of
// another shape is reported to the daemon as Runtime.HandlerNotFound with aws-lambda-go's
// explanation, and the process exits.
func Start(handler any) {
	StartHandler(NewHandler(handler))
}

// StartHandlerFunc is Start for the usual shape, checked by the compiler instead of at INIT.
func StartHandlerFunc[TIn, TOut any, H HandlerFunc[TIn, TOut]](handler H) {
	StartHandler(NewHandler(handler))
}

// StartHandler serves invocations with a raw Handler; see Start.
func StartHandler(h Handler) {
	if !started.CompareAndSwap(false, true) {
		panic("fnhost: Start called more than once")
	}
	c := control
	if c == nil {
		why := controlFdsEnv + " is not set"
		if controlErr != nil {
			why = controlErr.Error()
		}
		fmt.Fprintf(os.Stderr, "fnhost: %s: this program is an fnhost function; deploy it with fnhost (runtime go) rather than running it directly\n", why)
		os.Exit(1)
	}

	var info initInfo
	if body := c.next(kindInit); len(body) > 0 {
		if err := json.Unmarshal(body, &info); err != nil {
			protocolFailure(fmt.Errorf("INIT body is not the expected JSON: %v", err))
		}
	}
	info.fillSettings()

	if h == nil {
		h = invalidHandler{fmt.Errorf("handler is nil")}
	}
	if bad, ok := h.(invalidHandler); ok {
		c.send(kindInitError, nil, InvokeError{
			Type: "Runtime.HandlerNotFound",
			Message: fmt.Sprintf("%s: the handler given to fnhost.Start is not a valid handler: %v "+
				"(expected func([context.Context,] [TIn]) ([TOut,] error))", executableName(info.Handler), bad.err),
		}.encode())
		os.Exit(1)
	}
	c.send(kindInitOK, nil, nil)
	(&server{c: c, h: h, arn: functionArn(info.InvokedFunctionArn)}).loop()
}

func executableName(handler string) string {
	if handler != "" {
		return handler
	}
	return os.Args[0]
}

type server struct {
	c   *channel
	h   Handler
	arn string
}

func (s *server) loop() {
	// Only runtime.Goexit in a handler unwinds this goroutine without crashing the process (handle
	// recovers every panic); it has been answered, so carry on serving from a fresh goroutine.
	defer func() { go s.loop() }()
	for {
		s.handle(s.c.next(kindInvoke))
	}
}

// handle runs one invocation and answers it with exactly one RESULT or ERROR.
// Go's os.Stdout and os.Stderr are unbuffered, so everything the handler printed through them
// has reached the daemon's pipes before the answer does.
func (s *server) handle(body []byte) {
	id, deadlineMs, rawContext, payload, err := splitInvoke(body)
	if err != nil {
		protocolFailure(err)
	}
	lc := &LambdaContext{AwsRequestID: string(id), InvokedFunctionArn: s.arn}
	if len(rawContext) > 0 {
		if err := parseInvokeContext(rawContext, lc); err != nil {
			s.c.send(kindError, id, InvokeError{Type: "Runtime.InvalidContext", Message: err.Error()}.encode())
			return
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), time.UnixMilli(deadlineMs))
	defer cancel()
	ctx = NewContext(ctx, lc)

	returned := false
	defer func() {
		if returned {
			return
		}
		value := recover()
		if value == nil {
			// recover() gives nil for runtime.Goexit and, under GODEBUG=panicnil=1 (modules
			// older than go 1.21), for panic(nil).
			s.c.send(kindError, id, InvokeError{
				Type:    "Runtime.HandlerExited",
				Message: "the handler called runtime.Goexit (or panicked with nil) instead of returning",
			}.encode())
			return
		}
		var pcs [64]uintptr
		n := runtime.Callers(2, pcs[:]) // from runtime.gopanic down to the handler's entry
		s.c.send(kindError, id, panicError(value, pcs[:n]))
	}()
	result, err := s.h.Invoke(ctx, payload)
	returned = true

	switch {
	case err != nil:
		s.c.send(kindError, id, errorFor(err))
	case 2+len(id)+len(result) > maxFrame:
		s.c.send(kindError, id, InvokeError{
			Type: "Function.ResponseSizeTooLarge",
			Message: fmt.Sprintf("Response payload size (%d bytes) exceeded maximum allowed payload size (%d bytes).",
				len(result), maxFrame-2-len(id)),
		}.encode())
	default:
		s.c.send(kindResult, id, result)
	}
}
