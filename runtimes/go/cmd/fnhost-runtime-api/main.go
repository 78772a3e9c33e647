// Command fnhost-runtime-api is the worker of fnhost's `provided` runtime: it speaks the fnhost
// worker protocol (protos/worker-protocol.md) on its control fds like every shim, and serves
// Lambda's Runtime API (2018-06-01) over HTTP on 127.0.0.1 to one child process, the function's
// bootstrap, which it starts after INIT with AWS_LAMBDA_RUNTIME_API=127.0.0.1:<port>.
//
//	fnhost-runtime-api [BOOTSTRAP]
//
// Without BOOTSTRAP the bootstrap is, first found: <this executable>.bootstrap (the layout the go
// runtime uses to put an aws-lambda-go program behind the adapter), $LAMBDA_TASK_ROOT/bootstrap,
// $FNHOST_LAYERS_DIR/bootstrap, $FNHOST_LAYERS_DIR/bin/bootstrap. FNHOST_ADAPTER_RUNTIME names the
// runtime in HELLO (default "provided").
//
// The bootstrap is in the adapter's process group and memory group; when it dies the adapter
// ends the same way (its exit status, or its signal raised again), so the daemon's
// classification (Runtime.ExitError, out of memory, timeout) applies unchanged.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"fnhost/internal/wire"
)

const (
	controlFdsEnv = "FNHOST_CONTROL_FDS"
	// How long a bootstrap that reported an init error gets to exit by itself.
	initErrorGrace = 2 * time.Second
)

// initInfo is what the adapter reads of INIT; the rest reaches the bootstrap as its environment.
type initInfo struct {
	Handler            string `json:"handler"`
	FunctionName       string `json:"function_name"`
	InvokedFunctionArn string `json:"invoked_function_arn"`
}

func main() {
	// One goroutine at a time has work (a request from the one bootstrap, or a frame from the
	// daemon, both waiting in the poller): a single P spares the scheduler's spinning threads,
	// about half the futex and nanosleep calls per invocation. The bootstrap keeps its own
	// GOMAXPROCS (the environment is untouched).
	runtime.GOMAXPROCS(1)
	spec, ok := os.LookupEnv(controlFdsEnv)
	if !ok {
		fmt.Fprintln(os.Stderr, "fnhost-runtime-api: FNHOST_CONTROL_FDS is not set: this program is the worker of fnhost's provided runtime, started by the fnhost daemon")
		os.Exit(2)
	}
	os.Unsetenv(controlFdsEnv) // before the bootstrap inherits the environment
	ch, err := wire.OpenPollable(spec)
	if err != nil {
		fatal(err)
	}
	a := &adapter{ch: ch, invokes: make(chan []byte, 1), exited: make(chan struct{})}
	rt := os.Getenv("FNHOST_ADAPTER_RUNTIME")
	if rt == "" {
		rt = "provided"
	}
	os.Unsetenv("FNHOST_ADAPTER_RUNTIME")
	hello := `{"protocol":` + strconv.Itoa(wire.ProtocolVersion) + `,"runtime":` + strconv.Quote(rt) +
		`,"runtime_version":` + strconv.Quote("fnhost-runtime-api 2018-06-01 ("+runtime.Version()+")") +
		`,"pid":` + strconv.Itoa(os.Getpid()) + `}`
	a.send(wire.KindHello, nil, []byte(hello))

	kind, body, err := ch.ReadFrame()
	if err != nil {
		a.channelBroken(err)
	}
	if kind != wire.KindInit {
		fatal(fmt.Errorf("expected INIT, got frame kind %d", kind))
	}
	var info initInfo
	if len(body) > 0 {
		if err := json.Unmarshal(body, &info); err != nil {
			fatal(fmt.Errorf("INIT body is not the expected JSON: %v", err))
		}
	}
	a.arn = functionArn(info)
	go a.readFrames()

	bootstrap, why := findBootstrap(os.Args[1:])
	if bootstrap == "" {
		a.initError(errorJSON{Type: "Runtime.InvalidEntrypoint", Message: why})
		os.Exit(1)
	}

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		a.initError(errorJSON{Type: "Runtime.InvalidEntrypoint", Message: "cannot serve the Runtime API: " + err.Error()})
		os.Exit(1)
	}
	// No read timeouts: only the function's own processes can connect (ownerOnlyListener), and a
	// deadline per request is a timer set and cleared on the warm path for nothing.
	srv := &http.Server{Handler: a, MaxHeaderBytes: 64 << 10}
	go srv.Serve(&ownerOnlyListener{ln.(*net.TCPListener), uint32(os.Getuid())})

	env := append(os.Environ(), "AWS_LAMBDA_RUNTIME_API="+ln.Addr().String())
	for started := false; ; started = true {
		cmd := exec.Command(bootstrap)
		cmd.Args = []string{bootstrap}
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		// Same process group (the daemon's kill reaches it); dies with the adapter should the
		// adapter be killed alone.
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := cmd.Start(); err != nil {
			if started {
				fmt.Fprintf(os.Stderr, "fnhost-runtime-api: cannot start the bootstrap again: %v\n", err)
				os.Exit(1)
			}
			a.initError(errorJSON{Type: "Runtime.InvalidEntrypoint",
				Message: fmt.Sprintf("cannot start the bootstrap %s: %v (ship an executable file named bootstrap: chmod +x, with a #! line or built for this machine)", bootstrap, err)})
			os.Exit(1)
		}
		bootstrapPid.Store(int32(cmd.Process.Pid))
		err = cmd.Wait()
		if a.restartAfterExit(cmd.ProcessState) {
			continue
		}
		close(a.exited)
		a.bootstrapExited(cmd.ProcessState, err)
	}
}

// restartAfterExit decides, when the bootstrap has exited, whether to start it again. Only a
// bootstrap that exits between invocations, after answering at least one (aws-lambda-go exits
// right after reporting a panic), is started again, as Lambda resets an environment whose runtime
// exited: the answer it gave stands, and the next invocation, which the daemon may already have
// sent, gets a fresh bootstrap instead of a dead worker. Any other exit ends the worker.
func (a *adapter) restartAfterExit(st *os.ProcessState) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.phase != phaseIdle || a.answered == 0 {
		return false
	}
	a.flushPendingLocked()
	a.answered = 0
	a.polling = false
	a.bootGen++
	fmt.Fprintf(os.Stderr, "fnhost-runtime-api: the bootstrap exited (%v) after answering its invocation; starting it again for the next one\n", st)
	return true
}

// findBootstrap returns the bootstrap to start, or "" and what to ship instead.
func findBootstrap(args []string) (string, string) {
	var candidates []string
	explicit := len(args) > 0 && args[0] != ""
	if explicit {
		candidates = []string{args[0]}
	} else {
		if self, err := os.Executable(); err == nil {
			candidates = append(candidates, self+".bootstrap")
		}
		if root := os.Getenv("LAMBDA_TASK_ROOT"); root != "" {
			candidates = append(candidates, filepath.Join(root, "bootstrap"))
		}
		if layers := os.Getenv("FNHOST_LAYERS_DIR"); layers != "" {
			candidates = append(candidates, filepath.Join(layers, "bootstrap"), filepath.Join(layers, "bin", "bootstrap"))
		}
	}
	for _, path := range candidates {
		st, err := os.Stat(path)
		if err != nil || st.IsDir() {
			continue
		}
		if st.Mode()&0o111 == 0 || syscall.Access(path, 0x1) != nil {
			return "", fmt.Sprintf("the bootstrap %s is not executable: chmod +x it before packaging the function", path)
		}
		return path, ""
	}
	looked := candidates
	if !explicit && len(looked) > 0 {
		looked = looked[1:] // the .bootstrap sibling is fnhost's own layout, not the user's
	}
	return "", fmt.Sprintf("no bootstrap: a function of the provided runtime ships an executable file named bootstrap at the top of its code (or in a layer, as /opt/bootstrap or /opt/bin/bootstrap) that serves Lambda's Runtime API at $AWS_LAMBDA_RUNTIME_API; looked for %v", looked)
}

// functionArn is INIT's ARN, else the one every shim derives (protos/worker-protocol.md).
func functionArn(info initInfo) string {
	if info.InvokedFunctionArn != "" {
		return info.InvokedFunctionArn
	}
	region := os.Getenv("AWS_REGION")
	if region == "" {
		region = "local"
	}
	name := info.FunctionName
	if name == "" {
		name = os.Getenv("AWS_LAMBDA_FUNCTION_NAME")
	}
	return "arn:aws:lambda:" + region + ":000000000000:function:" + name
}

// readFrames takes the daemon's frames from INIT on: INVOKE goes to the waiting /next; EOF means
// the daemon is gone and the worker goes with its whole process group.
func (a *adapter) readFrames() {
	for {
		kind, body, err := a.ch.ReadFrame()
		if err != nil {
			a.channelBroken(err)
		}
		if kind != wire.KindInvoke {
			fatal(fmt.Errorf("expected INVOKE, got frame kind %d", kind))
		}
		a.invokes <- body
	}
}

func (a *adapter) channelBroken(err error) {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		killGroup()
		os.Exit(0)
	}
	fatal(err)
}

// bootstrapExited ends the adapter the way its bootstrap ended. During init it first answers
// INIT_ERROR Runtime.ExitError, as Lambda reports a runtime that exits before calling next.
func (a *adapter) bootstrapExited(st *os.ProcessState, waitErr error) {
	a.mu.Lock()
	phase := a.phase
	if phase == phaseInit {
		a.phase = phaseDone
	}
	a.flushPendingLocked() // the error it reported before exiting is its invocation's answer
	a.phase = phaseDone
	a.mu.Unlock()
	if phase == phaseInit {
		what := "exit status unknown"
		if st != nil {
			what = st.String()
		} else if waitErr != nil {
			what = waitErr.Error()
		}
		a.initError(errorJSON{Type: "Runtime.ExitError", Message: "Runtime exited without providing a reason: bootstrap " + what})
	}
	if st == nil {
		os.Exit(1)
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		sig := ws.Signal()
		signal.Reset(sig)
		syscall.Kill(os.Getpid(), sig)
		time.Sleep(100 * time.Millisecond)
		os.Exit(128 + int(sig))
	}
	os.Exit(st.ExitCode())
}

// killGroup ends the worker's process group, the bootstrap and whatever it started, when the
// adapter leads it (as the daemon starts it); otherwise only the bootstrap.
func killGroup() {
	if syscall.Getpgrp() == os.Getpid() {
		syscall.Kill(-os.Getpid(), syscall.SIGKILL)
	} else if pid := bootstrapPid.Load(); pid > 0 {
		syscall.Kill(int(pid), syscall.SIGKILL)
	}
}

var bootstrapPid atomic.Int32

func fatal(err error) {
	// The daemon sees the exit and this line at the end of stderr, and kills the group.
	fmt.Fprintf(os.Stderr, "fnhost-runtime-api: worker protocol error: %v\n", err)
	os.Exit(1)
}
