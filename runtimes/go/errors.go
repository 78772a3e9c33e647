package fnhost

import (
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"strconv"
	"strings"
)

// InvokeError is an error whose Lambda error JSON the handler chooses itself: return one (or a
// pointer to one) and the caller sees exactly this errorType, errorMessage and stackTrace. It
// plays the part of aws-lambda-go's messages.InvokeResponse_Error.
type InvokeError struct {
	Type       string   `json:"errorType"`
	Message    string   `json:"errorMessage"`
	StackTrace []string `json:"stackTrace"`
}

func (e InvokeError) Error() string { return e.Message }

// encode never fails: the fields are strings, and invalid UTF-8 becomes U+FFFD.
func (e InvokeError) encode() []byte {
	if e.StackTrace == nil {
		e.StackTrace = []string{}
	}
	b, _ := json.Marshal(e)
	return b
}

// errorFor turns a handler's returned error into Lambda's error JSON. errorType is the error's
// dynamic type name (pointer stripped), as aws-lambda-go reports it: errors.New gives
// "errorString", fmt.Errorf with %w gives "wrapError".
func errorFor(err error) (body []byte) {
	switch e := err.(type) {
	case InvokeError:
		return e.encode()
	case *InvokeError:
		if e != nil {
			return e.encode()
		}
	}
	defer func() {
		// A typed nil pointer whose Error method dereferences it.
		if v := recover(); v != nil {
			body = InvokeError{Type: typeName(err), Message: fmt.Sprintf("%T.Error() panicked: %v", err, v)}.encode()
		}
	}()
	return InvokeError{Type: typeName(err), Message: err.Error()}.encode()
}

// panicError describes a recovered panic. pcs is the stack captured in the deferred function.
func panicError(value any, pcs []uintptr) []byte {
	return InvokeError{
		Type:       typeName(value),
		Message:    fmt.Sprintf("%v", value),
		StackTrace: panicStack(pcs),
	}.encode()
}

func typeName(v any) string {
	t := reflect.TypeOf(v)
	if t == nil {
		return "nil"
	}
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() != "" {
		return t.Name()
	}
	return t.String() // unnamed types (a struct literal's type) still say something
}

// panicStack keeps the frames between the panic and the handler's entry: the runtime's panic
// machinery above them and fnhost's (and reflect's) call machinery below them are not the
// user's code. Each frame reads "file:line function".
func panicStack(pcs []uintptr) []string {
	frames := runtime.CallersFrames(pcs)
	var all []runtime.Frame
	for {
		f, more := frames.Next()
		all = append(all, f)
		if !more {
			break
		}
	}
	start := 0
	for start < len(all) && (isFnhost(all[start].Function) || strings.HasPrefix(all[start].Function, "runtime.")) {
		start++
	}
	end := start
	for end < len(all) && !isFnhost(all[end].Function) {
		end++
	}
	for end > start && strings.HasPrefix(all[end-1].Function, "reflect.") {
		end--
	}
	trace := make([]string, 0, end-start)
	for _, f := range all[start:end] {
		trace = append(trace, f.File+":"+strconv.Itoa(f.Line)+" "+f.Function)
	}
	return trace
}

// isFnhost tells this package's functions from those of a user package whose path merely
// starts with "fnhost." (such a path has a "/").
func isFnhost(function string) bool {
	return strings.HasPrefix(function, "fnhost.") && !strings.Contains(function, "/")
}
