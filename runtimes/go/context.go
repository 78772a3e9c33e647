package fnhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
)

// The function's settings, under the names of aws-lambda-go's lambdacontext package. They are read
// from the environment before the user's package initialises, so package-level code may use
// them; Start fills any the environment lacked from the daemon's INIT frame.
var (
	// FunctionName is the name of the function (AWS_LAMBDA_FUNCTION_NAME).
	FunctionName string
	// FunctionVersion is the version being run, "$LATEST" on fnhost (AWS_LAMBDA_FUNCTION_VERSION).
	FunctionVersion string
	// MemoryLimitInMB is the function's memory limit (AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
	MemoryLimitInMB int
	// LogGroupName is the log group the function's output is filed under.
	LogGroupName string
	// LogStreamName is the log stream of this worker.
	LogStreamName string
)

func loadSettings() {
	FunctionName = os.Getenv("AWS_LAMBDA_FUNCTION_NAME")
	FunctionVersion = os.Getenv("AWS_LAMBDA_FUNCTION_VERSION")
	MemoryLimitInMB, _ = strconv.Atoi(os.Getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"))
	LogGroupName = os.Getenv("AWS_LAMBDA_LOG_GROUP_NAME")
	LogStreamName = os.Getenv("AWS_LAMBDA_LOG_STREAM_NAME")
}

// initInfo is the part of the INIT frame's JSON body a Go worker uses. Its "environment" is
// not applied: the executable is the function, so there is no generic worker to specialise,
// and the daemon started this one with that environment already.
type initInfo struct {
	Handler         string `json:"handler"`
	CodeDir         string `json:"code_dir"`
	FunctionName    string `json:"function_name"`
	FunctionVersion string `json:"function_version"`
	MemoryMB        int    `json:"memory_mb"`
	LogGroupName    string `json:"log_group_name"`
	LogStreamName   string `json:"log_stream_name"`
	// The unqualified ARN, when the daemon sends one.
	InvokedFunctionArn string `json:"invoked_function_arn"`
}

func (in *initInfo) fillSettings() {
	fill := func(v *string, from string) {
		if *v == "" {
			*v = from
		}
	}
	fill(&FunctionName, in.FunctionName)
	fill(&FunctionVersion, in.FunctionVersion)
	fill(&LogGroupName, in.LogGroupName)
	fill(&LogStreamName, in.LogStreamName)
	if MemoryLimitInMB == 0 {
		MemoryLimitInMB = in.MemoryMB
	}
}

// functionArn is what InvokedFunctionArn reports when INVOKE names no ARN: INIT's, else one
// synthesised in ARN syntax (region from AWS_REGION, else "local"; account all zeros) so that
// code splitting an ARN on ":" still finds the function name in field 6.
func functionArn(fromInit string) string {
	if fromInit != "" {
		return fromInit
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "local"
	}
	return "arn:aws:lambda:" + region + ":000000000000:function:" + FunctionName
}

// CognitoIdentity is the Amazon Cognito identity of the caller; fnhost never has one.
type CognitoIdentity struct {
	CognitoIdentityID     string
	CognitoIdentityPoolID string
}

// ClientApplication describes the (mobile) app that called, from Lambda's client context.
type ClientApplication struct {
	InstallationID string `json:"installation_id"`
	AppTitle       string `json:"app_title"`
	AppVersionName string `json:"app_version_name"` // not in aws-lambda-go's; Lambda's other runtimes have it
	AppVersionCode string `json:"app_version_code"`
	AppPackageName string `json:"app_package_name"`
}

// ClientContext is what the caller passed along (Invoke's ClientContext); the zero value when it
// passed none.
type ClientContext struct {
	Client ClientApplication
	Env    map[string]string `json:"env"`
	Custom map[string]string `json:"custom"`
}

// LambdaContext is the per-invocation metadata, as in aws-lambda-go's lambdacontext package.
// The invocation's deadline is the context.Context's own: ctx.Deadline().
type LambdaContext struct {
	AwsRequestID       string
	InvokedFunctionArn string
	Identity           CognitoIdentity
	ClientContext      ClientContext
}

type contextKey struct{}

// NewContext returns a copy of parent carrying lc, for testing handlers outside fnhost.
func NewContext(parent context.Context, lc *LambdaContext) context.Context {
	return context.WithValue(parent, contextKey{}, lc)
}

// FromContext returns the LambdaContext of the invocation ctx belongs to.
func FromContext(ctx context.Context) (*LambdaContext, bool) {
	lc, ok := ctx.Value(contextKey{}).(*LambdaContext)
	return lc, ok
}

// parseInvokeContext reads INVOKE's context JSON (protocol version 2) into lc. Values that are not
// strings where this shape holds strings (custom, env, client's fields) arrive as their JSON text,
// where aws-lambda-go would fail the invocation.
func parseInvokeContext(raw []byte, lc *LambdaContext) error {
	var wire struct {
		ClientContext *struct {
			Client *map[string]json.RawMessage `json:"client"`
			Custom map[string]json.RawMessage  `json:"custom"`
			Env    map[string]json.RawMessage  `json:"env"`
		} `json:"client_context"`
		InvokedFunctionArn *string `json:"invoked_function_arn"`
	}
	if trimmed := bytes.TrimSpace(raw); len(trimmed) == 0 || trimmed[0] != '{' {
		return errors.New("Unable to parse the invocation's context: it is not a JSON object")
	}
	if err := json.Unmarshal(raw, &wire); err != nil {
		return fmt.Errorf("Unable to parse the invocation's context: %w", err)
	}
	if wire.InvokedFunctionArn != nil && *wire.InvokedFunctionArn != "" {
		lc.InvokedFunctionArn = *wire.InvokedFunctionArn
	}
	if cc := wire.ClientContext; cc != nil {
		lc.ClientContext.Custom = stringMap(cc.Custom)
		lc.ClientContext.Env = stringMap(cc.Env)
		if cc.Client != nil {
			client := *cc.Client
			lc.ClientContext.Client = ClientApplication{
				InstallationID: jsonText(client["installation_id"]),
				AppTitle:       jsonText(client["app_title"]),
				AppVersionName: jsonText(client["app_version_name"]),
				AppVersionCode: jsonText(client["app_version_code"]),
				AppPackageName: jsonText(client["app_package_name"]),
			}
		}
	}
	return nil
}

func stringMap(values map[string]json.RawMessage) map[string]string {
	if values == nil {
		return nil
	}
	out := make(map[string]string, len(values))
	for k, v := range values {
		out[k] = jsonText(v)
	}
	return out
}

// jsonText is a JSON string's value, "" for null or nothing, and any other value's JSON text.
func jsonText(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	if len(v) == 0 || string(v) == "null" {
		return ""
	}
	var s string
	if v[0] == '"' && json.Unmarshal(v, &s) == nil {
		return s
	}
	return string(v)
}
