package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"strconv"
)

// ownerOnlyListener accepts only connections made by processes of the adapter's own uid. Under a
// root daemon every worker runs as a uid of its own, so no other function's process (nor any
// other user's) can drive this worker's invocations; each refused connection is closed at once
// and noted on stderr (the function's log).
type ownerOnlyListener struct {
	*net.TCPListener
	uid uint32
}

func (l *ownerOnlyListener) Accept() (net.Conn, error) {
	for {
		c, err := l.AcceptTCP()
		if err != nil {
			return nil, err
		}
		peer := c.RemoteAddr().(*net.TCPAddr)
		uid, ok := socketOwner(peer, l.Addr().(*net.TCPAddr))
		if ok && uid == l.uid {
			c.SetNoDelay(true)
			return c, nil
		}
		c.Close()
		who := "an unknown process"
		if ok {
			who = "uid " + strconv.FormatUint(uint64(uid), 10)
		}
		fmt.Fprintf(os.Stderr, "fnhost-runtime-api: refused a Runtime API connection from %s (%s): only the function's own processes may use its endpoint\n", who, peer)
	}
}

// socketOwner finds the uid owning the client end of a loopback connection (local = peer,
// remote = ours) in /proc/net/tcp, or /proc/net/tcp6 for an IPv4-mapped socket.
func socketOwner(peer, ours *net.TCPAddr) (uint32, bool) {
	v4 := procAddr4(peer) + " " + procAddr4(ours)
	if uid, ok := scanSockets("/proc/net/tcp", v4); ok {
		return uid, true
	}
	v6 := procAddr6(peer) + " " + procAddr6(ours)
	return scanSockets("/proc/net/tcp6", v6)
}

// procAddr4 spells an IPv4 address as /proc/net/tcp does: the 32-bit address in host (little
// endian) order, then the port, in upper-case hex.
func procAddr4(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

// procAddr6 spells the IPv4-mapped IPv6 address (::ffff:a.b.c.d) as /proc/net/tcp6 does: four
// 32-bit words, each in host order.
func procAddr6(a *net.TCPAddr) string {
	ip := a.IP.To4()
	return fmt.Sprintf("0000000000000000FFFF0000%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], a.Port)
}

// scanSockets returns the uid column of the line whose "local remote" addresses are want.
func scanSockets(path, want string) (uint32, bool) {
	f, err := os.Open(path)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	key := []byte(want)
	for sc.Scan() {
		fields := bytes.Fields(sc.Bytes())
		// sl local rem st tx:rx tr:when retrnsmt uid ...
		if len(fields) < 8 {
			continue
		}
		if len(fields[1])+1+len(fields[2]) != len(key) || !bytes.HasPrefix(key, fields[1]) || !bytes.HasSuffix(key, fields[2]) {
			continue
		}
		uid, err := strconv.ParseUint(string(fields[7]), 10, 32)
		if err != nil {
			return 0, false
		}
		return uint32(uid), true
	}
	return 0, false
}
