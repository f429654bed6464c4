package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

const webhookUsage = `usage:
  luxchat webhook create --room ROOM [--name NAME]   (prints the hook's secret URL)
  luxchat webhook list
  luxchat webhook rotate ID                          (prints the new URL; the old one stops)
  luxchat webhook revoke ID
each with [--token TOKEN] [--url URL] [--config FILE]`

// webhookCmd manages incoming webhooks through the running server's admin
// API: making one joins the alerts bot to the room, which only the server,
// owner of room state, can do.
func webhookCmd(cmd string, args []string, stdout io.Writer) error {
	pos, flags := splitArgs(args)
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfgPath := fs.String("config", "", "configuration file (YAML)")
	token := fs.String("token", "", "an administrator's access token (default $"+adminTokenEnv+")")
	baseURL := fs.String("url", "", "admin API base URL (default http://<listen.admin>, else http://<listen.client>)")
	room := fs.String("room", "", "create: the room id or local alias the hook posts into")
	name := fs.String("name", "", "create: a name for the hook")
	if err := fs.Parse(flags); err != nil {
		return fmt.Errorf("%w\n%s", err, webhookUsage)
	}
	var method, path string
	var body any
	switch {
	case cmd == "create" && len(pos) == 0 && *room != "":
		method, path, body = "POST", "/webhooks", map[string]string{"room": *room, "name": *name}
	case cmd == "list" && len(pos) == 0:
		method, path = "GET", "/webhooks"
	case cmd == "rotate" && len(pos) == 1:
		method, path, body = "POST", "/webhooks/"+url.PathEscape(pos[0])+"/rotate", map[string]any{}
	case cmd == "revoke" && len(pos) == 1:
		method, path = "DELETE", "/webhooks/"+url.PathEscape(pos[0])
	default:
		return errors.New(webhookUsage)
	}
	tok, base, err := adminEndpoint(*token, *baseURL, *cfgPath)
	if err != nil {
		return err
	}
	var rd io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, strings.TrimRight(base, "/")+"/_luxchat/admin/v1"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("webhook %s: %w", cmd, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Errcode string `json:"errcode"`
			Error   string `json:"error"`
		}
		_ = json.Unmarshal(data, &e)
		return fmt.Errorf("webhook %s: %s: %s %s", cmd, resp.Status, e.Errcode, e.Error)
	}
	type hook struct {
		ID        string `json:"id"`
		RoomID    string `json:"room_id"`
		Name      string `json:"name"`
		CreatedBy string `json:"created_by"`
		CreatedTS int64  `json:"created_ts"`
		Revoked   bool   `json:"revoked"`
		URL       string `json:"url"`
	}
	var out struct {
		Webhook   hook   `json:"webhook"`
		Webhooks  []hook `json:"webhooks"`
		BotUserID string `json:"bot_user_id"`
	}
	if err := json.Unmarshal(data, &out); err != nil {
		return fmt.Errorf("webhook %s: unexpected answer: %w", cmd, err)
	}
	switch cmd {
	case "create", "rotate":
		// The URL alone on stdout, for scripts (it holds the hook's id).
		fmt.Fprintln(stdout, out.Webhook.URL)
	case "list":
		for _, h := range out.Webhooks {
			state := "active"
			if h.Revoked {
				state = "revoked"
			}
			// %q: a name is an administrator's input but still must not
			// drive the terminal.
			fmt.Fprintf(stdout, "%s\t%s\t%s\t%s\t%s\t%q\n", h.ID, state, h.RoomID, time.UnixMilli(h.CreatedTS).UTC().Format(time.RFC3339), h.CreatedBy, h.Name)
		}
	}
	return nil
}
