package main

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"fnhost/internal/wire"
)

// Limits of the endpoint. A response may be as large as Lambda's synchronous payload limit
// (6 MB, with Lambda's 100 bytes of slack) and no larger, so an oversized one is refused as soon
// as its Content-Length says so, or at the first byte over, never buffered whole. Error reports
// are small on Lambda; 1 MiB stays inside the daemon's INIT_ERROR limit.
const (
	maxResponse  = 6*1024*1024 + 100
	maxErrorBody = 1 << 20

	// How long a reported error waits for the bootstrap's next /next or its exit before it goes
	// to the daemon anyway (a runtime that neither asks for work nor exits).
	errorHold = time.Second

	prefix = "/2018-06-01/runtime/"
)

type phase int

const (
	phaseInit     phase = iota // bootstrap started, no /next yet
	phaseIdle                  // INIT_OK sent; no invocation handed out
	phaseInvoking              // an invocation is with the bootstrap
	phaseDone                  // init failed: the adapter is on its way out
)

func (p phase) String() string {
	return [...]string{"Init", "Ready", "Invoking", "Exited"}[p]
}

type adapter struct {
	ch      *wire.Channel
	arn     string
	invokes chan []byte   // INVOKE bodies from readFrames
	exited  chan struct{} // closed when the bootstrap has exited

	sendMu sync.Mutex // one frame at a time on the control pipe

	mu        sync.Mutex
	phase     phase
	polling   bool   // a /next is waiting
	current   string // the request id handed out (phaseInvoking)
	answering bool   // a response or error for current is being read
	pending   []byte // an ERROR frame's request id and body, held until /next or the exit
	answered  int    // invocations answered by the running bootstrap
	bootGen   int    // which start of the bootstrap is running (restartAfterExit counts)
	pendingID []byte
	lastArn   []byte // the last context parsed, and its ARN (the daemon repeats them)
	lastArnV  string
}

// errorJSON is Lambda's error shape, the body of INIT_ERROR and ERROR.
type errorJSON struct {
	Type       string   `json:"errorType"`
	Message    string   `json:"errorMessage"`
	StackTrace []string `json:"stackTrace"`
}

func (e errorJSON) encode() []byte {
	if e.StackTrace == nil {
		e.StackTrace = []string{}
	}
	b, _ := json.Marshal(e)
	return b
}

func (a *adapter) send(kind byte, id, body []byte) {
	a.sendMu.Lock()
	err := a.ch.Send(kind, id, body)
	a.sendMu.Unlock()
	if err != nil {
		a.channelBroken(io.EOF) // EPIPE: the daemon is gone
	}
}

func (a *adapter) initError(e errorJSON) { a.send(wire.KindInitError, nil, e.encode()) }

// apiError answers with the Runtime API's error JSON.
func apiError(w http.ResponseWriter, status int, errorType, message string) {
	body, _ := json.Marshal(struct {
		Message string `json:"errorMessage"`
		Type    string `json:"errorType"`
	}{message, errorType})
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	w.Write(body)
}

var acceptedBody = []byte(`{"status":"OK"}`)

func accepted(w http.ResponseWriter) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{"15"}
	w.WriteHeader(http.StatusAccepted)
	w.Write(acceptedBody)
}

func (a *adapter) transitionError(w http.ResponseWriter, from phase, to string) {
	apiError(w, http.StatusForbidden, "InvalidStateTransition",
		fmt.Sprintf("State transition from %s to %s failed for runtime. Error: State transition is not allowed", from, to))
}

// ServeHTTP routes the four endpoints of the Runtime API; anything else is 404 (unknown path) or
// 405 (known path, wrong method), with the API's error JSON.
func (a *adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	rest, ok := strings.CutPrefix(path, prefix)
	if !ok {
		apiError(w, http.StatusNotFound, "InvalidPath", "no such Runtime API path: "+path)
		return
	}
	method := http.MethodPost
	var handle func(http.ResponseWriter, *http.Request)
	switch {
	case rest == "invocation/next":
		method, handle = http.MethodGet, a.next
	case rest == "init/error":
		handle = a.postInitError
	case strings.HasPrefix(rest, "invocation/"):
		id, what, ok := strings.Cut(rest[len("invocation/"):], "/")
		if !ok || id == "" || strings.Contains(what, "/") || (what != "response" && what != "error") {
			apiError(w, http.StatusNotFound, "InvalidPath", "no such Runtime API path: "+path)
			return
		}
		if what == "response" {
			handle = func(w http.ResponseWriter, r *http.Request) { a.postResponse(w, r, id) }
		} else {
			handle = func(w http.ResponseWriter, r *http.Request) { a.postError(w, r, id) }
		}
	default:
		apiError(w, http.StatusNotFound, "InvalidPath", "no such Runtime API path: "+path)
		return
	}
	if r.Method != method {
		w.Header().Set("Allow", method)
		apiError(w, http.StatusMethodNotAllowed, "MethodNotAllowed", r.Method+" is not allowed on "+path+"; use "+method)
		return
	}
	handle(w, r)
}

// next hands the bootstrap the next invocation (a long poll). The first call ends init: INIT_OK.
func (a *adapter) next(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	switch {
	case a.phase == phaseInvoking || a.phase == phaseDone:
		from := a.phase
		a.mu.Unlock()
		a.transitionError(w, from, "Ready")
		return
	case a.polling:
		a.mu.Unlock()
		apiError(w, http.StatusForbidden, "InvalidStateTransition",
			"State transition from Ready to Ready failed for runtime. Error: another /next is already waiting")
		return
	}
	if a.phase == phaseInit {
		a.phase = phaseIdle
		a.send(wire.KindInitOK, nil, nil)
	}
	a.flushPendingLocked()
	a.polling = true
	gen := a.bootGen
	a.mu.Unlock()
	for {
		var body []byte
		select {
		case body = <-a.invokes:
		case <-r.Context().Done(): // the bootstrap hung up: the next /next takes the invocation
			a.stopPolling(gen)
			return
		}
		if r.Context().Err() != nil || a.generation() != gen {
			// This /next's bootstrap is gone (it died while waiting, and may have been started
			// again): the invocation is for whoever asks next.
			a.invokes <- body // the daemon sends one INVOKE at a time: there is room
			a.stopPolling(gen)
			return
		}
		id, deadlineMs, rawCtx, payload, err := wire.SplitInvoke(body)
		if err != nil {
			fatal(err)
		}
		clientContext, arn, err := a.parseContext(rawCtx)
		if err != nil {
			a.send(wire.KindError, id, errorJSON{Type: "Runtime.InvalidContext", Message: err.Error()}.encode())
			continue
		}
		a.mu.Lock()
		a.polling = false
		a.phase = phaseInvoking
		a.current = string(id)
		a.mu.Unlock()
		h := w.Header()
		h["Lambda-Runtime-Aws-Request-Id"] = []string{string(id)}
		h["Lambda-Runtime-Deadline-Ms"] = []string{strconv.FormatInt(deadlineMs, 10)}
		h["Lambda-Runtime-Invoked-Function-Arn"] = []string{arn}
		h["Lambda-Runtime-Trace-Id"] = []string{traceID()}
		if clientContext != "" {
			h["Lambda-Runtime-Client-Context"] = []string{clientContext}
		}
		// Never Lambda-Runtime-Cognito-Identity: fnhost's callers carry no Cognito identity.
		h["Content-Type"] = []string{"application/json"}
		h["Content-Length"] = []string{strconv.Itoa(len(payload))}
		w.WriteHeader(http.StatusOK)
		w.Write(payload)
		return
	}
}

// stopPolling ends a /next that is going away without an invocation, unless the bootstrap it
// belonged to has been replaced (the new one's /next is not this one's to end).
func (a *adapter) stopPolling(gen int) {
	a.mu.Lock()
	if a.bootGen == gen {
		a.polling = false
	}
	a.mu.Unlock()
}

func (a *adapter) generation() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bootGen
}

// parseContext reads INVOKE's context: Lambda's client context (as the header's JSON text) and
// the invoked ARN. It returns an error for a context that is not of the protocol's shape.
func (a *adapter) parseContext(raw []byte) (string, string, error) {
	if len(raw) == 0 {
		return "", a.arn, nil
	}
	if a.lastArn != nil && string(raw) == string(a.lastArn) {
		return "", a.lastArnV, nil
	}
	var ctx struct {
		ClientContext      json.RawMessage `json:"client_context"`
		InvokedFunctionArn *string         `json:"invoked_function_arn"`
	}
	if err := json.Unmarshal(raw, &ctx); err != nil {
		return "", "", fmt.Errorf("the invocation's context is not a JSON object: %v", err)
	}
	arn := a.arn
	if ctx.InvokedFunctionArn != nil {
		arn = *ctx.InvokedFunctionArn
	}
	cc := ""
	if len(ctx.ClientContext) > 0 && string(ctx.ClientContext) != "null" {
		var parts map[string]json.RawMessage
		if json.Unmarshal(ctx.ClientContext, &parts) != nil {
			return "", "", errors.New("the invocation's client_context is not a JSON object")
		}
		for _, key := range []string{"client", "custom", "env"} {
			if v := parts[key]; len(v) > 0 && string(v) != "null" && v[0] != '{' {
				return "", "", fmt.Errorf("the invocation's client_context.%s is not a JSON object", key)
			}
		}
		// Lambda passes the client context on as its JSON text, on one line.
		var compact bytes.Buffer
		if json.Compact(&compact, ctx.ClientContext) != nil {
			return "", "", errors.New("the invocation's client_context is not valid JSON")
		}
		cc = compact.String()
	} else {
		a.lastArn, a.lastArnV = append([]byte(nil), raw...), arn
	}
	return cc, arn, nil
}

// traceID is an X-Ray trace header for one invocation: a new root, a parent, not sampled.
func traceID() string {
	var b [20]byte
	rand.Read(b[:])
	var t [4]byte
	binary.BigEndian.PutUint32(t[:], uint32(time.Now().Unix()))
	return "Root=1-" + hex.EncodeToString(t[:]) + "-" + hex.EncodeToString(b[:12]) +
		";Parent=" + hex.EncodeToString(b[12:]) + ";Sampled=0"
}
