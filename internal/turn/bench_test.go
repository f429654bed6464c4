package turn_test

import (
	"fmt"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
	"luxchat/internal/turn"
)

// benchServer is an embedded TURN server without a bitrate bound (the
// benchmarks measure what it can carry) that may relay to loopback peers.
func benchServer(b *testing.B) *ts.Server {
	return ts.New(b, withTURN(func(c *config.TURN) {
		c.MaxBitrate = 0
		c.MaxAllocations = 1000
		c.AllowedPeerNetworks = []string{"127.0.0.1/32"}
	}))
}

// allocate makes an allocation of a user of its own over UDP.
func allocate(b *testing.B, s *ts.Server, user string) net.PacketConn {
	username, password := turn.Credentials([]byte(secret), "@"+user+":"+s.Config.ServerName, time.Now().Add(time.Hour))
	c := dial(b, turnAddr(b, s), "udp", username, password, s.Config.ServerName)
	relay, err := c.Allocate()
	if err != nil {
		b.Fatalf("allocate: %v", err)
	}
	b.Cleanup(func() { relay.Close() })
	return relay
}

// turnAddr waits for the embedded server to listen (the test server
// starts its listeners on a goroutine of its own).
func turnAddr(tb testing.TB, s *ts.Server) string {
	for range 500 {
		if a := s.TURN.Addr(); a.IsValid() {
			return a.String()
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("the TURN server did not start")
	return ""
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRelayThroughput sends 1,200-byte datagrams (a video RTP
// packet) from a client through one allocation to a UDP peer, with at
// most a window of them in flight so that the figure is what the relay
// carries rather than what the socket buffers drop. It reports the
// throughput, the loss and the process's CPU time (client, server and
// peer together) per relayed megabyte.
func BenchmarkRelayThroughput(b *testing.B) {
	s := benchServer(b)
	relay := allocate(b, s, "sender")
	peer, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer peer.Close()
	_ = peer.(*net.UDPConn).SetReadBuffer(4 << 20)
	payload := make([]byte, 1200)
	// Permission and channel binding first.
	for range 100 {
		relay.WriteTo(payload, peer.LocalAddr())
		peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := peer.ReadFrom(make([]byte, 1500)); err == nil {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // the channel bind completes
	for {                              // drain
		peer.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := peer.ReadFrom(make([]byte, 1500)); err != nil {
			break
		}
	}

	const window = 128
	var received atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			peer.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
			if _, _, err := peer.ReadFrom(buf); err != nil {
				return
			}
			received.Add(1)
		}
	}()
	cpu0 := cpuTime()
	b.SetBytes(int64(len(payload)))
	b.ResetTimer()
	start := time.Now()
	lost := int64(0)
	for i := 0; i < b.N; i++ {
		wait := time.Now()
		for int64(i)-lost-received.Load() >= window {
			if time.Since(wait) > 20*time.Millisecond { // the window's tail was lost
				lost = int64(i) - received.Load()
				break
			}
			time.Sleep(20 * time.Microsecond)
		}
		if _, err := relay.WriteTo(payload, peer.LocalAddr()); err != nil {
			b.Fatal(err)
		}
	}
	for received.Load() < int64(b.N) && time.Since(start) < time.Minute {
		before := received.Load()
		time.Sleep(100 * time.Millisecond)
		if received.Load() == before {
			break
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	got := received.Load()
	cpu := cpuTime() - cpu0
	mb := float64(got*int64(len(payload))) / 1e6
	b.ReportMetric(mb*8/elapsed.Seconds(), "Mbit/s")
	b.ReportMetric(100*float64(int64(b.N)-got)/float64(b.N), "%lost")
	if mb > 0 {
		b.ReportMetric(float64(cpu.Microseconds())/mb, "cpu-µs/MB")
	}
	peer.Close()
	<-done
}

// BenchmarkConcurrentAllocations runs 100 allocations at once, each a
// caller sending an audio-like stream (160-byte datagrams every 20 ms)
// through its relay to an echoing peer and back, and reports the
// percentiles of the round trip against the same round trip made
// directly, without the relay: what the relay adds. Eight rounds of
// 250 ms each way; cpu-ms/s is the process's CPU time (callers, server
// and echo) per second of relayed rounds.
func BenchmarkConcurrentAllocations(b *testing.B) {
	const allocations = 100
	s := benchServer(b)
	echo, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer echo.Close()
	_ = echo.(*net.UDPConn).SetReadBuffer(4 << 20)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			echo.WriteTo(buf[:n], from)
		}
	}()
	relays := make([]net.PacketConn, allocations)
	for i := range relays {
		relays[i] = allocate(b, s, fmt.Sprintf("caller%d", i))
	}
	direct := make([]net.PacketConn, allocations)
	for i := range direct {
		if direct[i], err = net.ListenPacket("udp4", "127.0.0.1:0"); err != nil {
			b.Fatal(err)
		}
		defer direct[i].Close()
	}
	// Warm up permissions and channel bindings.
	for _, r := range relays {
		r.WriteTo(make([]byte, 4), echo.LocalAddr())
	}
	time.Sleep(500 * time.Millisecond)

	// stream sends packets every 20 ms on each conn for d and returns
	// the round trips of those that came back.
	stream := func(conns []net.PacketConn, d time.Duration) ([]time.Duration, int) {
		var mu sync.Mutex
		var rtts []time.Duration
		sent := 0
		var wg sync.WaitGroup
		for i, c := range conns {
			wg.Add(2)
			go func() { // reader
				defer wg.Done()
				buf := make([]byte, 1500)
				for {
					c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
					n, _, err := c.ReadFrom(buf)
					if err != nil {
						return
					}
					if n != 160 { // a warm-up packet
						continue
					}
					var ns int64
					for i := range 8 {
						ns = ns<<8 | int64(buf[i])
					}
					rtt := time.Duration(time.Now().UnixNano() - ns)
					mu.Lock()
					rtts = append(rtts, rtt)
					mu.Unlock()
				}
			}()
			go func() { // writer
				defer wg.Done()
				pkt := make([]byte, 160)
				// Calls are not in step: spread the streams over the
				// 20 ms period.
				time.Sleep(time.Duration(i) * 20 * time.Millisecond / time.Duration(len(conns)))
				t := time.NewTicker(20 * time.Millisecond)
				defer t.Stop()
				end := time.Now().Add(d)
				for now := range t.C {
					if now.After(end) {
						return
					}
					ns := time.Now().UnixNano()
					for i := range 8 {
						pkt[7-i] = byte(ns >> (8 * i))
					}
					if _, err := c.WriteTo(pkt, echo.LocalAddr()); err == nil {
						mu.Lock()
						sent++
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		return rtts, sent
	}
	pct := func(d []time.Duration, p float64) time.Duration {
		if len(d) == 0 {
			return 0
		}
		slices.Sort(d)
		return d[min(len(d)-1, int(float64(len(d))*p))]
	}
	b.ResetTimer()
	var relayed, base []time.Duration
	var sentRelayed int
	// Relayed and direct rounds alternate, so that both meet the same
	// moments of the machine's load.
	var cpu time.Duration
	for range b.N {
		for range 8 {
			cpu0 := cpuTime()
			r, n := stream(relays, 250*time.Millisecond)
			cpu += cpuTime() - cpu0
			relayed, sentRelayed = append(relayed, r...), sentRelayed+n
			r, _ = stream(direct, 250*time.Millisecond)
			base = append(base, r...)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(pct(relayed, 0.5).Microseconds()), "relayed-p50-µs")
	b.ReportMetric(float64(pct(relayed, 0.99).Microseconds()), "relayed-p99-µs")
	b.ReportMetric(float64(pct(base, 0.5).Microseconds()), "direct-p50-µs")
	b.ReportMetric(float64(pct(base, 0.99).Microseconds()), "direct-p99-µs")
	b.ReportMetric(float64((pct(relayed, 0.99) - pct(base, 0.99)).Microseconds()), "added-p99-µs")
	b.ReportMetric(100*float64(sentRelayed-len(relayed))/float64(max(sentRelayed, 1)), "%lost")
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N)/8/0.25, "cpu-ms/s")
	if os.Getenv("LUXCHAT_TURN_BENCH_VERBOSE") != "" {
		b.Logf("relayed %d round trips: p90 %s p95 %s p99 %s p99.9 %s max %s; direct %d: p90 %s p95 %s p99 %s max %s",
			len(relayed), pct(relayed, .9), pct(relayed, .95), pct(relayed, .99), pct(relayed, .999), pct(relayed, 1),
			len(base), pct(base, .9), pct(base, .95), pct(base, .99), pct(base, 1))
	}
}
