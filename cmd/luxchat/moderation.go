package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// adminTokenEnv holds an administrator's access token for commands that
// talk to the running server.
const adminTokenEnv = "LUXCHAT_ADMIN_TOKEN"

// reportsCmd lists users' reports of events, rooms and users.
func reportsCmd(cmd string, args []string, stdout io.Writer) error {
	args = append([]string(nil), args...)
	for i, a := range args {
		if a == "--json" || a == "-json" {
			args[i] = "--json=true" // a switch: splitArgs must not take the next word as its value
		}
	}
	pos, flags := splitArgs(args)
	fs := flag.NewFlagSet("reports", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(flags); err != nil {
		return err
	}
	if cmd != "list" || len(pos) != 0 {
		return errors.New("usage: luxchat reports list [--json] [--config FILE]")
	}
	srv, err := open(*cfgPath)
	if err != nil {
		return err
	}
	defer srv.Store.Close()
	reps, err := srv.Store.Reports(context.Background())
	if err != nil {
		return err
	}
	if *asJSON {
		type report struct {
			ID       int64  `json:"id"`
			Kind     string `json:"kind"`
			Reporter string `json:"reporter"`
			RoomID   string `json:"room_id,omitempty"`
			EventID  string `json:"event_id,omitempty"`
			UserID   string `json:"user_id,omitempty"`
			Reason   string `json:"reason"`
			Score    *int64 `json:"score,omitempty"`
			TS       int64  `json:"received_ts"`
		}
		out := make([]report, 0, len(reps))
		for _, r := range reps {
			rp := report{ID: r.ID, Kind: r.Kind, Reporter: r.Reporter, RoomID: r.RoomID, EventID: r.EventID, UserID: r.UserID, Reason: r.Reason, TS: r.CreatedTS}
			if r.Score.Valid {
				rp.Score = &r.Score.Int64
			}
			out = append(out, rp)
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	for _, r := range reps {
		target := r.UserID
		switch r.Kind {
		case "event":
			target = r.RoomID + " " + r.EventID
		case "room":
			target = r.RoomID
		}
		score := "-"
		if r.Score.Valid {
			score = fmt.Sprint(r.Score.Int64)
		}
		// %q: a reason is user input and must not drive the terminal.
		fmt.Fprintf(stdout, "%d\t%s\t%s\t%s\t%s\tscore=%s\t%q\n", r.ID, time.UnixMilli(r.CreatedTS).UTC().Format(time.RFC3339), r.Kind, r.Reporter, target, score, r.Reason)
	}
	return nil
}

// noticeCmd sends a server notice through the running server's admin API:
// the server owns room state and stream positions, so the command never
// writes to the database itself.
func noticeCmd(cmd string, args []string, stdout io.Writer) error {
	pos, flags := splitArgs(args)
	fs := flag.NewFlagSet("notice", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	token := fs.String("token", "", "an administrator's access token (default $"+adminTokenEnv+")")
	baseURL := fs.String("url", "", "admin API base URL (default http://<listen.admin>, or http://<listen.client> when unset)")
	if err := fs.Parse(flags); err != nil {
		return err
	}
	if cmd != "send" || len(pos) != 2 {
		return errors.New("usage: luxchat notice send USER_ID MESSAGE [--token TOKEN] [--url URL] [--config FILE]")
	}
	tok, base, err := adminEndpoint(*token, *baseURL, *cfgPath)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(map[string]any{
		"user_id": pos[0],
		"content": map[string]string{"msgtype": "m.server_notice", "body": pos[1]},
	})
	req, err := http.NewRequest("POST", strings.TrimRight(base, "/")+"/_synapse/admin/v1/send_server_notice", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("send notice: %w", err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out struct {
		EventID string `json:"event_id"`
		Errcode string `json:"errcode"`
		Error   string `json:"error"`
	}
	_ = json.Unmarshal(data, &out)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("send notice: %s: %s %s", resp.Status, out.Errcode, out.Error)
	}
	fmt.Fprintln(stdout, out.EventID)
	return nil
}

// dialable turns a listen address into one to connect to: an unspecified
// host (":8008", "0.0.0.0:8008", "[::]:8008") means this machine.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// adminEndpoint is the token and base URL an admin command uses: the
// flags, else $LUXCHAT_ADMIN_TOKEN and the configuration's listener
// (listen.admin when set: the admin API is served there alone).
func adminEndpoint(token, baseURL, cfgPath string) (string, string, error) {
	if token == "" {
		token = os.Getenv(adminTokenEnv)
	}
	if token == "" {
		return "", "", fmt.Errorf("an administrator's access token is needed: --token or $%s", adminTokenEnv)
	}
	if baseURL != "" {
		return token, baseURL, nil
	}
	cfg, err := loadConfig(cfgPath)
	if err != nil {
		return "", "", err
	}
	addr := cfg.Listen.Client
	if cfg.Listen.Admin != "" {
		addr = cfg.Listen.Admin
	}
	return token, "http://" + dialable(addr), nil
}
