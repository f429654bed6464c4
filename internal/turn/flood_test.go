package turn_test

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	ts "luxchat/internal/testserver"
)

// TestRequestFlood: a source that floods STUN requests over UDP (as one
// forging its victim's address would) is answered at most at the
// per-source rate (100/s after a burst of 200); another source still is.
func TestRequestFlood(t *testing.T) {
	s := ts.New(t, withTURN(nil))
	addr, err := net.ResolveUDPAddr("udp4", turnAddr(t, s))
	if err != nil {
		t.Fatal(err)
	}
	flooder, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer flooder.Close()
	_ = flooder.SetReadBuffer(1 << 20)
	answered := make(chan int)
	go func() {
		n, buf := 0, make([]byte, 1500)
		for {
			flooder.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := flooder.Read(buf); err != nil {
				answered <- n
				return
			}
			n++
		}
	}()
	const sent = 1000
	start := time.Now()
	for i := 0; i < sent; i += 20 {
		for range 20 {
			msg := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
			if _, err := flooder.WriteTo(msg.Raw, addr); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	elapsed := time.Since(start)
	got := <-answered
	bound := 200 + int(100*elapsed.Seconds()) + 10
	if bound >= sent {
		t.Skipf("sending took %s: too slow a machine to tell the rate", elapsed)
	}
	if got > bound || got < 100 {
		t.Fatalf("%d of %d requests in %s answered, want between 100 and %d", got, sent, elapsed, bound)
	}

	// Another source is answered at once.
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	msg := stun.MustBuild(stun.TransactionID, stun.BindingRequest)
	if _, err := other.WriteTo(msg.Raw, addr); err != nil {
		t.Fatal(err)
	}
	other.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1500)
	n, err := other.Read(buf)
	if err != nil {
		t.Fatalf("another source is not answered: %v", err)
	}
	var resp stun.Message
	resp.Raw = buf[:n]
	var mapped stun.XORMappedAddress
	if err := resp.Decode(); err != nil || mapped.GetFrom(&resp) != nil || !mapped.IP.Equal(net.IPv4(127, 0, 0, 3)) {
		t.Fatalf("binding response %v %v", err, mapped)
	}
	if m := scrape(t, s); !strings.Contains(m, "luxchat_turn_requests_dropped_total") || strings.Contains(m, "luxchat_turn_requests_dropped_total 0\n") {
		t.Error("dropped requests are not counted")
	}
}
