package fnhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
)

// Handler is the raw form of a function, as in aws-lambda-go: it gets the payload bytes and
// returns the result bytes (JSON text). Start wraps a handler function into one.
type Handler interface {
	Invoke(ctx context.Context, payload []byte) ([]byte, error)
}

// HandlerFunc constrains StartHandlerFunc to the most common shape, checked at compile time.
type HandlerFunc[TIn, TOut any] interface {
	~func(context.Context, TIn) (TOut, error)
}

var (
	contextType    = reflect.TypeOf((*context.Context)(nil)).Elem()
	errorType      = reflect.TypeOf((*error)(nil)).Elem()
	rawMessageType = reflect.TypeOf(json.RawMessage(nil))
)

// NewHandler turns a handler function into a Handler. A value of the wrong shape yields a
// Handler that reports why on every call, as aws-lambda-go's does; Start reports it at INIT
// instead, before any invocation is accepted.
func NewHandler(handlerFunc any) Handler {
	if h, ok := handlerFunc.(Handler); ok {
		return h
	}
	h, err := newReflectHandler(handlerFunc)
	if err != nil {
		return invalidHandler{err}
	}
	return h
}

// invalidHandler carries a shape error from NewHandler to Start.
type invalidHandler struct{ err error }

func (h invalidHandler) Invoke(context.Context, []byte) ([]byte, error) { return nil, h.err }

// reflectHandler calls any of aws-lambda-go's handler shapes:
// func ([context.Context] [, TIn]) [([TOut,] error)].
type reflectHandler struct {
	fn           reflect.Value
	takesContext bool
	event        reflect.Type // nil when the handler takes no event
	returnsValue bool
	returnsError bool
}

// The messages are aws-lambda-go's, word for word, so search results for them still apply.
func newReflectHandler(handlerFunc any) (*reflectHandler, error) {
	if handlerFunc == nil {
		return nil, errors.New("handler is nil")
	}
	t := reflect.TypeOf(handlerFunc)
	if t.Kind() != reflect.Func {
		return nil, fmt.Errorf("handler kind %s is not %s", t.Kind(), reflect.Func)
	}
	h := &reflectHandler{fn: reflect.ValueOf(handlerFunc)}
	if h.fn.IsNil() {
		return nil, errors.New("handler is nil")
	}
	switch n := t.NumIn(); {
	case n > 2:
		return nil, fmt.Errorf("handlers may not take more than two arguments, but handler takes %d", n)
	case n > 0:
		h.takesContext = t.In(0).Implements(contextType)
		if n == 2 && !h.takesContext {
			return nil, fmt.Errorf("handler takes two arguments, but the first is not Context. got %s", t.In(0).Kind())
		}
		if n == 2 || !h.takesContext {
			h.event = t.In(n - 1)
		}
	}
	switch n := t.NumOut(); {
	case n > 2:
		return nil, errors.New("handler may not return more than two values")
	case n == 2:
		if !t.Out(1).Implements(errorType) {
			return nil, errors.New("handler returns two values, but the second does not implement error")
		}
		h.returnsValue, h.returnsError = true, true
	case n == 1:
		if !t.Out(0).Implements(errorType) {
			return nil, errors.New("handler returns a single value, but it does not implement error")
		}
		h.returnsError = true
	}
	return h, nil
}

func (h *reflectHandler) Invoke(ctx context.Context, payload []byte) ([]byte, error) {
	args := make([]reflect.Value, 0, 2)
	if h.takesContext {
		args = append(args, reflect.ValueOf(ctx))
	}
	if h.event != nil {
		event := reflect.New(h.event)
		// An empty payload is no event at all: the handler gets TIn's zero value, as for null.
		// A json.RawMessage event is the payload itself, once checked: decoding into one would
		// scan it twice and copy it, 50 ms for a 5 MB event. The buffer is this invocation's own.
		if h.event == rawMessageType && len(payload) > 0 {
			if !json.Valid(payload) {
				return nil, unmarshalError(json.Unmarshal(payload, new(any)))
			}
			event.Elem().SetBytes(payload)
		} else if len(payload) > 0 {
			if err := json.Unmarshal(payload, event.Interface()); err != nil {
				return nil, unmarshalError(err)
			}
		}
		args = append(args, event.Elem())
	}
	out := h.fn.Call(args)
	if h.returnsError {
		// Interface() keeps a typed nil pointer as a non-nil error, as aws-lambda-go does.
		if err, _ := out[len(out)-1].Interface().(error); err != nil {
			return nil, err
		}
	}
	var result any
	if h.returnsValue {
		result = out[0].Interface()
	}
	return marshalResult(result)
}

func unmarshalError(err error) error {
	return &InvokeError{Type: "Runtime.UnmarshalError", Message: "Unable to unmarshal input: " + err.Error()}
}

// marshalResult encodes like aws-lambda-go: HTML characters unescaped, no trailing newline, and
// an io.Reader's bytes passed through unchanged (a handler that has its JSON ready). A
// json.RawMessage is checked and passed through rather than re-encoded (which would only
// compact it, at the cost of two scans and a copy).
func marshalResult(result any) ([]byte, error) {
	if raw, ok := result.(json.RawMessage); ok {
		if len(raw) == 0 {
			return []byte("null"), nil
		}
		if !json.Valid(raw) {
			return nil, &InvokeError{Type: "Runtime.MarshalError", Message: "Unable to marshal response: the json.RawMessage result is not valid JSON"}
		}
		return raw, nil
	}
	if r, ok := result.(io.Reader); ok {
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, &InvokeError{Type: "Runtime.MarshalError", Message: "Unable to read response: " + err.Error()}
		}
		return b, nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(result); err != nil {
		return nil, &InvokeError{Type: "Runtime.MarshalError", Message: "Unable to marshal response: " + err.Error()}
	}
	b := buf.Bytes()
	return b[:len(b)-1], nil
}
