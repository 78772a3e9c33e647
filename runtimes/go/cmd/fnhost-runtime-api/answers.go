// The bootstrap's answers: POST /invocation/{id}/response, /invocation/{id}/error and
// /init/error, each read within its limit and turned into the worker protocol's frame.

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"

	"fnhost/internal/wire"
)

// claim checks that id names the invocation with the bootstrap and marks it being answered.
// It answers the request itself (and returns false) when not.
func (a *adapter) claim(w http.ResponseWriter, id, to string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.phase != phaseInvoking || a.answering {
		from := a.phase
		if a.answering {
			from = phaseInvoking
		}
		if a.phase == phaseIdle && id != "" {
			// An invocation already answered (or never handed out): Lambda's InvalidRequestID.
			apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
			return false
		}
		a.transitionError(w, from, to)
		return false
	}
	if id != a.current {
		apiError(w, http.StatusBadRequest, "InvalidRequestID", "Invalid request ID")
		return false
	}
	a.answering = true
	return true
}

// finish ends the invocation after its answer went to the daemon (done) or puts it back (not).
func (a *adapter) finish(done bool) {
	a.mu.Lock()
	a.answering = false
	if done {
		a.phase = phaseIdle
		a.current = ""
		a.answered++
	}
	a.mu.Unlock()
}

// readBody reads at most limit bytes; tooBig says the body is over it (nothing more is read).
func readBody(r *http.Request, limit int64) (body []byte, tooBig bool, err error) {
	if r.ContentLength > limit {
		return nil, true, nil
	}
	size := r.ContentLength
	if size < 0 {
		size = 512
	}
	buf := make([]byte, 0, size+1)
	lr := io.LimitReader(r.Body, limit+1)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := lr.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, false, err
		}
	}
	if int64(len(buf)) > limit {
		return nil, true, nil
	}
	return buf, false, nil
}

func (a *adapter) postResponse(w http.ResponseWriter, r *http.Request, id string) {
	if !a.claim(w, id, "InvocationResponse") {
		return
	}
	body, tooBig, err := readBody(r, maxResponse)
	switch {
	case err != nil:
		a.finish(false)
		apiError(w, http.StatusBadRequest, "TruncatedHTTPRequest", "the request body could not be read: "+err.Error())
	case tooBig:
		// As on Lambda, the invocation is over: its caller gets the error, the runtime a 413.
		size := "more than " + strconv.Itoa(maxResponse)
		if r.ContentLength > 0 {
			size = strconv.FormatInt(r.ContentLength, 10)
		}
		a.send(wire.KindError, []byte(id), errorJSON{Type: "Function.ResponseSizeTooLarge",
			Message: fmt.Sprintf("Response payload size (%s bytes) exceeded maximum allowed payload size (%d bytes).", size, maxResponse)}.encode())
		a.finish(true)
		apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
			fmt.Sprintf("Exceeded maximum allowed payload size (%d bytes).", maxResponse))
	default:
		a.send(wire.KindResult, []byte(id), body)
		a.finish(true)
		accepted(w)
	}
}

func (a *adapter) postError(w http.ResponseWriter, r *http.Request, id string) {
	if !a.claim(w, id, "InvocationErrorResponse") {
		return
	}
	body, tooBig, err := readBody(r, maxErrorBody)
	switch {
	case err != nil:
		a.finish(false)
		apiError(w, http.StatusBadRequest, "TruncatedHTTPRequest", "the request body could not be read: "+err.Error())
	case tooBig:
		a.finish(false)
		apiError(w, http.StatusRequestEntityTooLarge, "RequestEntityTooLarge",
			fmt.Sprintf("Exceeded maximum allowed error size (%d bytes).", maxErrorBody))
	default:
		// Held until the bootstrap asks for the next invocation or exits: runtimes exit right
		// after reporting some errors (aws-lambda-go after a panic), and the daemon must not hand
		// this worker the next invocation before that exit is seen.
		a.mu.Lock()
		a.pendingID, a.pending = []byte(id), normaliseError(body, r.Header.Get("Lambda-Runtime-Function-Error-Type")).encode()
		a.mu.Unlock()
		a.finish(true)
		accepted(w)
		time.AfterFunc(errorHold, func() {
			a.mu.Lock()
			if string(a.pendingID) == id { // not a later invocation's
				a.flushPendingLocked()
			}
			a.mu.Unlock()
		})
	}
}

// flushPendingLocked sends a held ERROR, if any (a.mu held).
func (a *adapter) flushPendingLocked() {
	if a.pending != nil {
		a.send(wire.KindError, a.pendingID, a.pending)
		a.pending, a.pendingID = nil, nil
	}
}

func (a *adapter) postInitError(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	if a.phase != phaseInit {
		from := a.phase
		a.mu.Unlock()
		a.transitionError(w, from, "InitError")
		return
	}
	a.phase = phaseDone
	a.mu.Unlock()
	body, tooBig, err := readBody(r, maxErrorBody)
	var e errorJSON
	switch {
	case err != nil || tooBig:
		e = errorJSON{Type: "Runtime.InitError", Message: "the runtime reported an init error whose body could not be read (over 1 MiB, or cut short)"}
	default:
		e = normaliseError(body, r.Header.Get("Lambda-Runtime-Function-Error-Type"))
	}
	a.initError(e)
	accepted(w)
	if f, ok := w.(http.Flusher); ok {
		f.Flush()
	}
	// The bootstrap may exit by itself now (its exit is already reported); then the worker ends.
	go func() {
		select {
		case <-a.exited:
		case <-time.After(initErrorGrace):
		}
		killGroup()
		os.Exit(1)
	}()
}
