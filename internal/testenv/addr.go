package testenv

import (
	"net"
	"testing"
)

// FreeAddr returns a loopback address with a port nothing listens on at
// the time of the call, for a service a test starts (its public or admin
// listener).
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
