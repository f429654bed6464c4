// Command pollfloor measures the transport's share of a message's fan-out:
// the server CPU that net/http alone costs to answer N keep-alive long
// polls released at once, with a handler that computes nothing (it waits
// for a broadcast, then writes a fixed answer of -size bytes). Whatever a
// real /sync costs above this figure is the server's own work.
//
// The server runs in a child process (this binary with -serve), so that
// its CPU, read from /proc, is not mixed with the clients'. -raw serves
// with a bare loop per connection instead; -repoll with luxchat's router,
// its polls parked (httputil.Park) and their re-polls read outside
// net/http, as luxchat serves /sync.
//
//	go run ./cmd/pollfloor -polls 1000 -rounds 20 [-raw|-repoll]
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"luxchat/internal/httpapi/httputil"
	"luxchat/internal/procstat"
)

func main() {
	serve := flag.Bool("serve", false, "run the server (the child process)")
	polls := flag.Int("polls", 1000, "long polls waiting when a round releases them")
	rounds := flag.Int("rounds", 20, "rounds measured")
	size := flag.Int("size", 1200, "bytes of each answer's body (a woken /sync of one message is ~1.2 KB)")
	raw := flag.Bool("raw", false, "serve with a bare loop over the connection instead of net/http: what the kernel and goroutines alone cost")
	repoll := flag.Bool("repoll", false, "serve with luxchat's router, polls parked and re-polls read outside net/http")
	flag.Parse()
	var err error
	switch {
	case *serve && *raw:
		err = runRaw(*size)
	case *serve && *repoll:
		err = runRepoll(*size)
	case *serve:
		err = runServer(*size)
	default:
		err = measure(*polls, *rounds, *repoll)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "pollfloor:", err)
		os.Exit(1)
	}
}

// runServer answers /poll when /release is called, and prints its address.
func runServer(size int) error {
	var mu sync.Mutex
	release := make(chan struct{})
	var waiting atomic.Int64
	body := []byte(`{"next_batch":"s1","pad":"` + strings.Repeat("x", max(size-30, 0)) + `"}`)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /poll", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		ch := release
		mu.Unlock()
		waiting.Add(1)
		select {
		case <-ch:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
	})
	mux.HandleFunc("GET /waiting", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, waiting.Load())
	})
	mux.HandleFunc("POST /release", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		close(release)
		release = make(chan struct{})
		mu.Unlock()
		waiting.Store(0)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	return http.Serve(ln, mux)
}

// runRaw is runServer without net/http: one goroutine per connection
// reads a request's head with a bufio.Reader, waits and writes the
// answer in one write. It parses nothing but the path.
func runRaw(size int) error {
	var mu sync.Mutex
	release := make(chan struct{})
	var waiting atomic.Int64
	body := `{"next_batch":"s1","pad":"` + strings.Repeat("x", max(size-30, 0)) + `"}`
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				for { // the headers; no request here has a body
					h, err := br.ReadSlice('\n')
					if err != nil {
						return
					}
					if len(h) <= 2 {
						break
					}
				}
				var out []byte
				switch {
				case strings.HasPrefix(line, "GET /poll "):
					mu.Lock()
					ch := release
					mu.Unlock()
					waiting.Add(1)
					<-ch
					out = answer
				case strings.HasPrefix(line, "GET /waiting "):
					n := strconv.FormatInt(waiting.Load(), 10)
					out = []byte("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(n)) + "\r\n\r\n" + n)
				case strings.HasPrefix(line, "POST /release "):
					mu.Lock()
					close(release)
					release = make(chan struct{})
					mu.Unlock()
					waiting.Store(0)
					out = []byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
				default:
					return
				}
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}()
	}
}

// syncPath is what the -repoll server parks: the path re-polls of which
// are read outside net/http.
const syncPath = "/_matrix/client/v3/sync"

// runRepoll is runServer with luxchat's router: a poll parks
// (httputil.Park, no goroutine while it waits) and /release answers
// every parked poll, each from a goroutine of its own as a parked
// /sync's timer does; the connection's next poll is then read and
// parked outside net/http.
func runRepoll(size int) error {
	body := json.RawMessage(`{"next_batch":"s1","pad":"` + strings.Repeat("x", max(size-30, 0)) + `"}`)
	var mu sync.Mutex
	var parked []*httputil.Parked
	rt := httputil.NewRouter(nil, 1<<20, slog.New(slog.NewTextHandler(io.Discard, nil)))
	rt.Handle("GET "+syncPath, httputil.AuthNone, func(r *httputil.Request) (any, error) {
		return r.Park(func(p *httputil.Parked) func() {
			mu.Lock()
			parked = append(parked, p)
			mu.Unlock()
			return func() {}
		}), nil
	})
	rt.Handle("GET /waiting", httputil.AuthNone, func(r *httputil.Request) (any, error) {
		mu.Lock()
		defer mu.Unlock()
		return json.RawMessage(strconv.Itoa(len(parked))), nil
	})
	rt.Handle("POST /release", httputil.AuthNone, func(r *httputil.Request) (any, error) {
		mu.Lock()
		ps := parked
		parked = nil
		mu.Unlock()
		for _, p := range ps {
			go p.AnswerHere(&httputil.Response{Raw: body}, nil)
		}
		return struct{}{}, nil
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr().String())
	srv := &http.Server{Handler: rt, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	return srv.Serve(rt.ParkListener(ln, srv))
}

// measure starts the server, keeps polls long polls waiting on it and
// releases them rounds times, reporting the server's CPU per release.
func measure(polls, rounds int, repoll bool) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	args := []string{"-serve"}
	flag.Visit(func(f *flag.Flag) {
		if f.Name == "raw" || f.Name == "repoll" {
			args = append(args, "-"+f.Name)
		}
		if f.Name == "size" {
			args = append(args, "-size", f.Value.String())
		}
	})
	cmd := exec.Command(self, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer cmd.Process.Kill()
	addr, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return err
	}
	base := "http://" + strings.TrimSpace(addr)
	pollPath := "/poll"
	if repoll {
		pollPath = syncPath
	}
	tr := &http.Transport{MaxIdleConnsPerHost: polls + 10, MaxConnsPerHost: polls + 10}
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	answered := make(chan struct{}, polls)
	for range polls {
		go func() {
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+pollPath, nil)
				resp, err := client.Do(req)
				if err != nil {
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				answered <- struct{}{}
			}
		}()
	}
	ctl := &http.Client{Transport: &http.Transport{}}
	waitAll := func() error {
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			resp, err := ctl.Get(base + "/waiting")
			if err != nil {
				return err
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if n, _ := strconv.Atoi(string(b)); n >= polls {
				return nil
			}
		}
		return errors.New("the polls did not all arrive within a minute")
	}
	release := func() error {
		resp, err := ctl.Post(base+"/release", "", nil)
		if err != nil {
			return err
		}
		resp.Body.Close()
		for range polls {
			<-answered
		}
		return nil
	}
	// One round unmeasured: connections set up, buffers grown.
	if err := waitAll(); err != nil {
		return err
	}
	if err := release(); err != nil {
		return err
	}
	var per []time.Duration
	for range rounds {
		if err := waitAll(); err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond) // the last requests parsed
		c0, err := procCPU(cmd.Process.Pid)
		if err != nil {
			return err
		}
		if err := release(); err != nil {
			return err
		}
		if err := waitAll(); err != nil { // the next requests read, as in a real re-poll
			return err
		}
		c1, err := procCPU(cmd.Process.Pid)
		if err != nil {
			return err
		}
		per = append(per, c1-c0)
	}
	slices.Sort(per)
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("%d polls released together, %d rounds (load %s): server CPU per release median %.1f ms (min %.1f, max %.1f), %.1f µs per poll\n",
		polls, rounds, strings.Join(strings.Fields(string(load))[:3], " "),
		ms(per[len(per)/2]), ms(per[0]), ms(per[len(per)-1]), float64(per[len(per)/2].Microseconds())/float64(polls))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// procCPU is the CPU time a process used so far (procstat.CPU).
func procCPU(pid int) (time.Duration, error) { return procstat.CPU(pid) }
