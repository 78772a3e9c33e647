package fnhost

import (
	"context"
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

// functionArn is what InvokedFunctionArn reports. fnhost has no accounts and the daemon sends no
// ARN, so it is synthesised in ARN syntax (region from AWS_REGION, else "local"; account all
// zeros) so that code splitting an ARN on ":" still finds the function name in field 6.
func functionArn() string {
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

// ClientApplication describes a mobile caller; fnhost never has one.
type ClientApplication struct {
	InstallationID string `json:"installation_id"`
	AppTitle       string `json:"app_title"`
	AppVersionCode string `json:"app_version_code"`
	AppPackageName string `json:"app_package_name"`
}

// ClientContext is what a mobile caller passes along; fnhost never has one.
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
