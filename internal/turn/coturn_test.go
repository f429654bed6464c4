package turn_test

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"luxchat/internal/config"
	ts "luxchat/internal/testserver"
)

// TestCoturnClient drives the embedded server with coturn's own test
// client (Debian's coturn package): two clients relay to each other's
// relayed addresses, over UDP and over TCP, with credentials fetched
// from /voip/turnServer, and nothing may be lost.
func TestCoturnClient(t *testing.T) {
	if testing.Short() {
		t.Skip("drives coturn's client for ~10 s: not under -short")
	}
	uclient, err := exec.LookPath("turnutils_uclient")
	if err != nil {
		t.Skip("SKIPPED LOUDLY: turnutils_uclient is not installed (apt-get install coturn); the embedded TURN server was not checked against coturn's client")
	}
	certFile, keyFile, _ := selfSigned(t)
	s := ts.New(t, withTURN(func(c *config.TURN) {
		c.MaxBitrate = 0
		c.TLSCertFile, c.TLSKeyFile = certFile, keyFile
	}), ts.WithConfig(func(c *config.Config) { c.Listen.TURNS = relayHost + ":0" }))
	g := fetchGrant(t, s.Register(t, "alice"))
	host, port, _ := strings.Cut(serverAddr(t, g, "udp"), ":")
	tlsHost, tlsPort, _ := strings.Cut(uriFor(t, g, "turns:", "tcp"), ":")
	// Not over IPv6: coturn's client refuses the relay it is given there
	// ("relay addr cannot be received"); TestRelayIPv6 uses pion's.
	for _, transport := range []string{"udp", "tcp", "tls"} {
		t.Run(transport, func(t *testing.T) {
			args := []string{"-y", "-c", "-m", "2", "-n", "100", "-l", "170", "-z", "5",
				"-u", g.Username, "-w", g.Password}
			to := host
			switch transport {
			case "udp":
				args = append(args, "-p", port)
			case "tcp":
				args = append(args, "-p", port, "-t")
			case "tls": // coturn's client over TLS (it does not check the certificate)
				args, to = append(args, "-p", tlsPort, "-t", "-S"), tlsHost
			}
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, uclient, append(args, to)...).CombinedOutput()
			if err != nil {
				t.Fatalf("turnutils_uclient: %v\n%s", err, out)
			}
			text := string(out)
			if testing.Verbose() {
				t.Log(text)
			}
			sent := lastInt(t, text, `tot_send_msgs=(\d+)`)
			recv := lastInt(t, text, `tot_recv_msgs=(\d+)`)
			lost := lastInt(t, text, `Total lost packets (\d+)`)
			if sent < 200 || recv < sent || lost != 0 {
				t.Fatalf("sent %d, received %d, lost %d\n%s", sent, recv, lost, text)
			}
			if m := regexp.MustCompile(`Average round trip delay ([0-9.]+) ms`).FindStringSubmatch(text); m != nil {
				t.Logf("%s: %d messages relayed, average round trip %s ms", transport, recv, m[1])
			}
		})
	}
}

// lastInt is the number captured by the last match of pattern.
func lastInt(t *testing.T, text, pattern string) int {
	t.Helper()
	ms := regexp.MustCompile(pattern).FindAllStringSubmatch(text, -1)
	if len(ms) == 0 {
		t.Fatalf("no %q in turnutils_uclient's output:\n%s", pattern, text)
	}
	n, _ := strconv.Atoi(ms[len(ms)-1][1])
	return n
}
