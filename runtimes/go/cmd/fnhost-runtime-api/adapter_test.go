package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestNormaliseErrorKeepsLambdasShapeAndDistrustsTheRest(t *testing.T) {
	cases := []struct {
		body, header string
		want         errorJSON
	}{
		{`{"errorType":"E","errorMessage":"m","stackTrace":["a","b"]}`, "H", errorJSON{"E", "m", []string{"a", "b"}}},
		{`{"errorMessage":"m"}`, "H", errorJSON{"H", "m", nil}},
		{`{"errorMessage":7,"stackTrace":[{"line":3},null]}`, "", errorJSON{"Runtime.Unknown", "7", []string{`{"line":3}`, ""}}},
		{"plain \xff text", "T", errorJSON{"T", "plain \uFFFD text", nil}},
		{`[1,2]`, "", errorJSON{"Runtime.Unknown", "[1,2]", nil}},
		{``, "", errorJSON{"Runtime.Unknown", "", nil}},
	}
	for _, c := range cases {
		got := normaliseError([]byte(c.body), c.header)
		if got.Type != c.want.Type || got.Message != c.want.Message || strings.Join(got.StackTrace, "|") != strings.Join(c.want.StackTrace, "|") {
			t.Errorf("normaliseError(%q, %q) = %+v, want %+v", c.body, c.header, got, c.want)
		}
	}
	long := normaliseError([]byte(`{"errorType":"`+strings.Repeat("t", 1000)+`","errorMessage":"`+strings.Repeat("é", 20000)+`"}`), "")
	if len(long.Type) > maxErrorType+64 || len(long.Message) > maxErrorMessage+64 || !strings.Contains(long.Message, "clipped") {
		t.Errorf("not clipped: type %d bytes, message %d bytes", len(long.Type), len(long.Message))
	}
	if !strings.HasSuffix(strings.TrimSuffix(long.Message[:maxErrorMessage], "é"), "é") {
		t.Errorf("clipped inside a character")
	}
}

func TestProcNetAddressesAreSpelledAsTheKernelDoes(t *testing.T) {
	a := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8080}
	if got := procAddr4(a); got != "0100007F:1F90" {
		t.Errorf("procAddr4 = %s", got)
	}
	if got := procAddr6(a); got != "0000000000000000FFFF00000100007F:1F90" {
		t.Errorf("procAddr6 = %s", got)
	}
}

func TestSocketOwnerFindsOurOwnConnection(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp4", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	uid, ok := socketOwner(c.LocalAddr().(*net.TCPAddr), ln.Addr().(*net.TCPAddr))
	if !ok || uid != uint32(os.Getuid()) {
		t.Errorf("socketOwner = %d, %v; want %d", uid, ok, os.Getuid())
	}
	if _, ok := socketOwner(&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, ln.Addr().(*net.TCPAddr)); ok {
		t.Errorf("found an owner for a connection that does not exist")
	}
}

func TestBootstrapLookupOrder(t *testing.T) {
	task, layers := t.TempDir(), t.TempDir()
	t.Setenv("LAMBDA_TASK_ROOT", task)
	t.Setenv("FNHOST_LAYERS_DIR", layers)
	if path, why := findBootstrap(nil); path != "" || !strings.Contains(why, "no bootstrap") {
		t.Fatalf("empty dirs: %q %q", path, why)
	}
	os.MkdirAll(filepath.Join(layers, "bin"), 0o755)
	os.WriteFile(filepath.Join(layers, "bin", "bootstrap"), []byte("#!/bin/sh\n"), 0o755)
	if path, _ := findBootstrap(nil); path != filepath.Join(layers, "bin", "bootstrap") {
		t.Errorf("got %q, want the layer's bin/bootstrap", path)
	}
	os.WriteFile(filepath.Join(layers, "bootstrap"), []byte("#!/bin/sh\n"), 0o755)
	if path, _ := findBootstrap(nil); path != filepath.Join(layers, "bootstrap") {
		t.Errorf("got %q, want the layer's bootstrap", path)
	}
	os.WriteFile(filepath.Join(task, "bootstrap"), []byte("#!/bin/sh\n"), 0o644)
	if path, why := findBootstrap(nil); path != "" || !strings.Contains(why, "not executable") {
		t.Errorf("a non-executable bootstrap in the code: %q %q", path, why)
	}
	os.Chmod(filepath.Join(task, "bootstrap"), 0o755)
	if path, _ := findBootstrap(nil); path != filepath.Join(task, "bootstrap") {
		t.Errorf("got %q, want the code's bootstrap", path)
	}
	if path, _ := findBootstrap([]string{filepath.Join(layers, "bootstrap")}); path != filepath.Join(layers, "bootstrap") {
		t.Errorf("an explicit bootstrap was not used: %q", path)
	}
}
