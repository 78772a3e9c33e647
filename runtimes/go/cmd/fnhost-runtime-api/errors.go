package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Bounds of an error report, as the daemon clips INIT_ERROR (protos/worker-protocol.md).
const (
	maxErrorType    = 256
	maxErrorMessage = 16 << 10
	maxTraceEntries = 100
	maxTraceEntry   = 2 << 10
)

// normaliseError turns what a bootstrap posted to /error or /init/error into the protocol's
// error JSON. The body is untrusted: normally Lambda's {errorMessage, errorType, stackTrace},
// but any bytes at all may arrive. errorType comes from the body, else from the
// Lambda-Runtime-Function-Error-Type header, else "Runtime.Unknown"; a body that is not such an
// object becomes the message (as text).
func normaliseError(body []byte, headerType string) errorJSON {
	var raw map[string]json.RawMessage
	e := errorJSON{}
	if json.Unmarshal(body, &raw) == nil && raw != nil {
		e.Type = jsonString(raw["errorType"])
		e.Message = jsonString(raw["errorMessage"])
		var trace []json.RawMessage
		if json.Unmarshal(raw["stackTrace"], &trace) == nil {
			for _, t := range trace {
				if len(e.StackTrace) == maxTraceEntries {
					e.StackTrace = append(e.StackTrace, fmt.Sprintf("[fnhost: %d more entries clipped]", len(trace)-maxTraceEntries))
					break
				}
				e.StackTrace = append(e.StackTrace, clip(jsonString(t), maxTraceEntry))
			}
		}
	} else if len(body) > 0 {
		e.Message = strings.ToValidUTF8(string(body), "\uFFFD")
	}
	if e.Type == "" {
		e.Type = headerType
	}
	if e.Type == "" {
		e.Type = "Runtime.Unknown"
	}
	e.Type = clip(e.Type, maxErrorType)
	e.Message = clip(e.Message, maxErrorMessage)
	return e
}

// jsonString is a JSON string's value, or the JSON text of anything else ("" for absent/null).
func jsonString(v json.RawMessage) string {
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}

func clip(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	cut := limit
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… [fnhost: %d more bytes clipped]", s[:cut], len(s)-cut)
}
