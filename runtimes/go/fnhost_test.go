package fnhost

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"fnhost/internal/wire"
)

type event struct {
	Name string `json:"name"`
}

type result struct {
	Greeting string `json:"greeting"`
}

var errBoom = errors.New("boom")

// Every shape aws-lambda-go accepts, with what it should answer to {"name":"go"}.
func TestShapes(t *testing.T) {
	cases := []struct {
		name string
		fn   any
		want string
	}{
		{"func()", func() {}, "null"},
		{"func() error", func() error { return nil }, "null"},
		{"func(TIn) error", func(e event) error { return nil }, "null"},
		{"func() (TOut, error)", func() (result, error) { return result{"hi"}, nil }, `{"greeting":"hi"}`},
		{"func(TIn) (TOut, error)", func(e event) (result, error) { return result{"hi " + e.Name}, nil }, `{"greeting":"hi go"}`},
		{"func(ctx) error", func(ctx context.Context) error { return nil }, "null"},
		{"func(ctx, TIn) error", func(ctx context.Context, e event) error { return nil }, "null"},
		{"func(ctx) (TOut, error)", func(ctx context.Context) (string, error) { return "x", nil }, `"x"`},
		{"func(ctx, TIn) (TOut, error)", func(ctx context.Context, e event) (*result, error) { return &result{e.Name}, nil }, `{"greeting":"go"}`},
		{"func(TIn) where TIn is any", func(e any) (any, error) { return e, nil }, `{"name":"go"}`},
		{"func(json.RawMessage)", func(e json.RawMessage) (json.RawMessage, error) { return e, nil }, `{"name":"go"}`},
	}
	for _, c := range cases {
		h := NewHandler(c.fn)
		if bad, ok := h.(invalidHandler); ok {
			t.Errorf("%s: rejected: %v", c.name, bad.err)
			continue
		}
		out, err := h.Invoke(context.Background(), []byte(`{"name":"go"}`))
		if err != nil || string(out) != c.want {
			t.Errorf("%s: got %s, %v; want %s", c.name, out, err, c.want)
		}
	}
}

func TestShapeErrorsAreAwsLambdaGos(t *testing.T) {
	var nilFunc func()
	cases := []struct {
		fn   any
		want string
	}{
		{nil, "handler is nil"},
		{nilFunc, "handler is nil"},
		{"handler", "handler kind string is not func"},
		{func(a, b, c int) {}, "handlers may not take more than two arguments, but handler takes 3"},
		{func(a int, b event) {}, "handler takes two arguments, but the first is not Context. got int"},
		{func() (int, int, error) { return 0, 0, nil }, "handler may not return more than two values"},
		{func() (int, int) { return 0, 0 }, "handler returns two values, but the second does not implement error"},
		{func() int { return 0 }, "handler returns a single value, but it does not implement error"},
	}
	for _, c := range cases {
		bad, ok := NewHandler(c.fn).(invalidHandler)
		if !ok || bad.err.Error() != c.want {
			t.Errorf("%T: got %v, want %q", c.fn, bad.err, c.want)
		}
	}
}

func TestContextReachesHandler(t *testing.T) {
	deadline := time.Now().Add(time.Minute).Truncate(time.Millisecond)
	var got *LambdaContext
	var gotDeadline time.Time
	s := pipeServer(t, func(ctx context.Context) error {
		got, _ = FromContext(ctx)
		gotDeadline, _ = ctx.Deadline()
		return nil
	})
	kind, id, body := s.roundTrip(t, "req-7", deadline, `{}`)
	if kind != kindResult || id != "req-7" || body != "null" {
		t.Fatalf("got %d %q %s", kind, id, body)
	}
	if got == nil || got.AwsRequestID != "req-7" || !gotDeadline.Equal(deadline) {
		t.Errorf("context: %+v, deadline %v want %v", got, gotDeadline, deadline)
	}
}

type quotaError struct{}

func (*quotaError) Error() string { return "over quota" }

func TestErrors(t *testing.T) {
	cases := []struct {
		name     string
		fn       any
		payload  string
		wantType string
		wantMsg  string
	}{
		{"errors.New", func() error { return errBoom }, `{}`, "errorString", "boom"},
		{"pointer type", func() error { return &quotaError{} }, `{}`, "quotaError", "over quota"},
		{"InvokeError", func() error { return InvokeError{Type: "T", Message: "m"} }, `{}`, "T", "m"},
		{"*InvokeError", func() error { return &InvokeError{Type: "T2", Message: "m2"} }, `{}`, "T2", "m2"},
		{"typed nil", func() error { var q *nilErr; return q }, `{}`, "nilErr", "*fnhost.nilErr.Error() panicked: runtime error: invalid memory address or nil pointer dereference"},
		{"bad JSON", func(e event) error { return nil }, `{"name":`, "Runtime.UnmarshalError", "Unable to unmarshal input: unexpected end of JSON input"},
		{"bad raw JSON", func(e json.RawMessage) error { return nil }, `[1,]`, "Runtime.UnmarshalError", "Unable to unmarshal input: invalid character ']' looking for beginning of value"},
		{"wrong type", func(e event) error { return nil }, `[1]`, "Runtime.UnmarshalError", "Unable to unmarshal input: json: cannot unmarshal array into Go value of type fnhost.event"},
		{"unmarshalable", func() (any, error) { return make(chan int), nil }, `{}`, "Runtime.MarshalError", "Unable to marshal response: json: unsupported type: chan int"},
		{"bad raw result", func() (json.RawMessage, error) { return json.RawMessage("{"), nil }, `{}`, "Runtime.MarshalError", "Unable to marshal response: the json.RawMessage result is not valid JSON"},
	}
	for _, c := range cases {
		s := pipeServer(t, c.fn)
		kind, _, body := s.roundTrip(t, "r", time.Now().Add(time.Second), c.payload)
		var e InvokeError
		if err := json.Unmarshal([]byte(body), &e); err != nil || kind != kindError {
			t.Errorf("%s: kind %d body %s", c.name, kind, body)
			continue
		}
		if e.Type != c.wantType || e.Message != c.wantMsg || e.StackTrace == nil {
			t.Errorf("%s: got %+v, want %s %q", c.name, e, c.wantType, c.wantMsg)
		}
	}
}

type nilErr struct{ msg string }

func (e *nilErr) Error() string { return e.msg }

func deepPanic(n int) {
	if n == 0 {
		panic(errBoom)
	}
	deepPanic(n - 1)
}

func TestPanicBecomesError(t *testing.T) {
	s := pipeServer(t, func() error { deepPanic(2); return nil })
	kind, _, body := s.roundTrip(t, "p", time.Now().Add(time.Second), `{}`)
	var e InvokeError
	json.Unmarshal([]byte(body), &e)
	if kind != kindError || e.Type != "errorString" || e.Message != "boom" {
		t.Fatalf("got %d %s", kind, body)
	}
	// Every frame here is package fnhost's, so the trace trims to nothing; the fixtures
	// (tests/fixtures/go/extras) check a user's trace.
	// the server still works
	if kind, _, body := s.roundTrip(t, "q", time.Now().Add(time.Second), `{}`); kind != kindError || !strings.Contains(body, "boom") {
		t.Errorf("second call: %d %s", kind, body)
	}
}

func TestGoexitIsAnsweredAndServingContinues(t *testing.T) {
	calls := 0
	// The restarted loop outlives the test, reading the pipe: keep it open (and out of reach of
	// os.File's finalizer, which would close it).
	s := openPipeServer(t, func() (int, error) {
		calls++
		if calls == 1 {
			runtime.Goexit()
		}
		return calls, nil
	})
	outliving = append(outliving, s)
	go s.loop()
	s.sendInvoke(t, "a", time.Now().Add(time.Second), `{}`)
	if kind, id, body := s.readReply(t); kind != kindError || id != "a" || !strings.Contains(body, "Runtime.HandlerExited") {
		t.Fatalf("got %d %q %s", kind, id, body)
	}
	s.sendInvoke(t, "b", time.Now().Add(time.Second), `{}`)
	if kind, id, body := s.readReply(t); kind != kindResult || id != "b" || body != "2" {
		t.Fatalf("got %d %q %s", kind, id, body)
	}
}

var outliving []*testServer

func TestLargeResultIsRefused(t *testing.T) {
	s := pipeServer(t, func() (json.RawMessage, error) {
		return json.RawMessage(`"` + strings.Repeat("x", maxFrame) + `"`), nil
	})
	kind, _, body := s.roundTrip(t, "big", time.Now().Add(time.Second), `{}`)
	if kind != kindError || !strings.Contains(body, "Function.ResponseSizeTooLarge") {
		t.Errorf("got %d %.200s", kind, body)
	}
}

// testServer is a server wired to pipes, the test playing the daemon.
type testServer struct {
	*server
	toWorker   *os.File
	fromWorker *bufio.Reader
}

func pipeServer(t *testing.T, fn any) *testServer {
	s := openPipeServer(t, fn)
	t.Cleanup(func() { s.toWorker.Close(); s.c.W.Close() })
	return s
}

func openPipeServer(t *testing.T, fn any) *testServer {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c := &channel{&wire.Channel{R: bufio.NewReader(inR), W: outW, InFd: int(inR.Fd())}}
	return &testServer{&server{c: c, h: NewHandler(fn), arn: "arn"}, inW, bufio.NewReader(outR)}
}

func (s *testServer) sendInvoke(t *testing.T, id string, deadline time.Time, payload string) {
	t.Helper()
	s.sendInvokeContext(t, id, deadline, "", payload)
}

func (s *testServer) sendInvokeContext(t *testing.T, id string, deadline time.Time, ctxJSON, payload string) {
	t.Helper()
	body := append([]byte{byte(len(id))}, id...)
	body = binary.BigEndian.AppendUint64(body, uint64(deadline.UnixMilli()))
	body = binary.BigEndian.AppendUint32(body, uint32(len(ctxJSON)))
	body = append(body, ctxJSON...)
	body = append(body, payload...)
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(body)+1))
	frame = append(append(frame, kindInvoke), body...)
	go s.toWorker.Write(frame) // a big frame would fill the pipe before the server reads it
}

func (s *testServer) readReply(t *testing.T) (byte, string, string) {
	t.Helper()
	var head [5]byte
	if _, err := io.ReadFull(s.fromWorker, head[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint32(head[:4])-1)
	if _, err := io.ReadFull(s.fromWorker, body); err != nil {
		t.Fatal(err)
	}
	n := int(body[0])
	return head[4], string(body[1 : 1+n]), string(body[1+n:])
}

// roundTrip runs one invocation on the calling goroutine, as the serving loop would.
func (s *testServer) roundTrip(t *testing.T, id string, deadline time.Time, payload string) (byte, string, string) {
	t.Helper()
	s.sendInvoke(t, id, deadline, payload)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.handle(s.c.next(kindInvoke))
	}()
	kind, gotID, body := s.readReply(t)
	<-done
	return kind, gotID, body
}

func TestInvokeContextReachesTheLambdaContext(t *testing.T) {
	s := pipeServer(t, func(ctx context.Context) (any, error) {
		lc, _ := FromContext(ctx)
		return []any{lc.InvokedFunctionArn, lc.ClientContext}, nil
	})
	deadline := time.Now().Add(time.Minute)
	s.sendInvokeContext(t, "r1", deadline,
		`{"client_context":{"client":{"installation_id":"i","app_title":7},"custom":{"n":5,"s":"x"},"env":null},"invoked_function_arn":"arn:x:1"}`, `{}`)
	s.handle(s.c.next(kindInvoke))
	kind, _, body := s.readReply(t)
	want := `["arn:x:1",{"Client":{"installation_id":"i","app_title":"7","app_version_name":"","app_version_code":"","app_package_name":""},"env":null,"custom":{"n":"5","s":"x"}}]`
	if kind != kindResult || body != want {
		t.Fatalf("got %d %s, want %s", kind, body, want)
	}
	s.sendInvokeContext(t, "r2", deadline, `{"client_context":[1]}`, `{}`)
	s.handle(s.c.next(kindInvoke))
	if kind, _, body := s.readReply(t); kind != kindError || !strings.Contains(body, "Runtime.InvalidContext") {
		t.Fatalf("got %d %s, want a Runtime.InvalidContext error", kind, body)
	}
}
