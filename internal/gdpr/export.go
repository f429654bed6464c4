package gdpr

import (
	"archive/zip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path"
	"regexp"
	"strings"
	"time"

	"luxchat/internal/media"
	"luxchat/internal/store"
)

// The export of a user (GDPR article 15): one zip archive, written as it
// is made (zip's data descriptors need no seeking), so that a user with
// 100,000 events or gigabytes of uploads costs a few buffers of memory.
// Its files are listed in Files; manifest.json, written last, says what
// each holds, how many items, for which user, by which server and when.

// Format names the archive's layout in its manifest; Version changes when
// a file changes shape.
const (
	Format  = "luxchat-user-export"
	Version = 1
)

// FileInfo is one file of an export as the manifest describes it.
type FileInfo struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	// Count is how many items the file holds (events, devices…; 1 for
	// an object; for media/, uploads), -1 when it is not a list.
	Count int64 `json:"count"`
}

// Manifest is manifest.json.
type Manifest struct {
	Format    string     `json:"format"`
	Version   int        `json:"version"`
	Server    string     `json:"server"`
	UserID    string     `json:"user_id"`
	CreatedTS int64      `json:"created_ts"`
	Created   string     `json:"created"` // RFC 3339, UTC
	Files     []FileInfo `json:"files"`
}

// Progress is told how many items (events and uploads) of total are in
// the archive so far.
type Progress func(done, total int64)

// readme is README.txt.
const readme = `Your data on the Matrix server %[1]s
=============================================

This archive holds what the server %[1]s stores about the account
%[2]s, as of %[3]s. manifest.json lists every file and what it holds.

Why are some of your messages unreadable ("m.room.encrypted")?
----------------------------------------------------------------
In end-to-end encrypted rooms your messages were encrypted by your own
device before they reached the server, with keys that only the devices of
the people in the room hold. The server never had those keys, so it can
neither read these messages nor give you their text: events.jsonl holds
them exactly as the server stores them, as ciphertext. To read them, use
your own Matrix client: it keeps the keys on your devices and, if you set
it up, in your encrypted key backup (unlocked with your security key or
passphrase, which the server does not know either).

Messages in rooms without encryption are in events.jsonl as plain text.
Files you uploaded are in media/, decrypted from the server's own storage
encryption; a file you sent in an encrypted room was encrypted by your
client before upload and is therefore still encrypted.
`

// Files describes the files of an export (media/ holds one file per
// upload, named by its media id).
var Files = []FileInfo{
	{Name: "README.txt", Description: "what this archive is, and why messages of encrypted rooms are ciphertext", Count: -1},
	{Name: "profile.json", Description: "the account: display name, avatar, creation time, status flags, single sign-on links"},
	{Name: "threepids.json", Description: "third-party identifiers (e-mail addresses, phone numbers) bound to the account"},
	{Name: "account_data.json", Description: "account data set by your clients: global (\"global\": type → content) and per room (\"rooms\": room id → type → content)"},
	{Name: "devices.json", Description: "your devices (sessions): id, name, when and from which address last seen"},
	{Name: "memberships.json", Description: "your membership of each room the server knows you in (join, invite, leave, ban…)"},
	{Name: "push_rules.json", Description: "your push rules in force (the server's defaults and your changes)"},
	{Name: "pushers.json", Description: "where notifications are pushed to (your apps' push gateways)"},
	{Name: "reports.json", Description: "the reports of content or users you made to the server's moderators"},
	{Name: "events.jsonl", Description: "every event you sent, one JSON object a line, in the order the server received them: its id, room, type, time and the event as stored (\"pdu\"; ciphertext in encrypted rooms)"},
	{Name: "media.json", Description: "the files you uploaded: media id (mxc://server/id), name, type, size, time, and the file in media/"},
	{Name: "media/", Description: "the files you uploaded, decrypted from the server's storage encryption, named by media id"},
	{Name: "manifest.json", Description: "this list, with counts, the server and the time of the export", Count: -1},
}

// Export writes the archive of a local user's data to w, reporting its
// progress (nil: none). It checks the user first (CheckUser's errors)
// and writes nothing when that fails.
func (s *Service) Export(ctx context.Context, userID string, w io.Writer, progress Progress) (*Manifest, error) {
	user, err := s.CheckUser(ctx, userID)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	nEvents, err := s.store.CountEventsBySender(ctx, userID)
	if err != nil {
		return nil, fmt.Errorf("count events: %w", err)
	}
	uploads, err := s.store.LocalMediaOf(ctx, userID)
	if err != nil {
		return nil, err
	}
	var nMedia int64
	for _, u := range uploads {
		if u.UploadedTS != 0 {
			nMedia++
		}
	}
	x := &exporter{s: s, ctx: ctx, zw: zip.NewWriter(w), now: now, userID: userID, counts: map[string]int64{},
		total: nEvents + nMedia, progress: progress}
	if progress == nil {
		x.progress = func(int64, int64) {}
	}
	x.progress(0, x.total)
	steps := []func() error{
		func() error {
			return x.text("README.txt", fmt.Sprintf(readme, s.serverName, userID, now.Format(time.RFC3339)))
		},
		func() error { return x.profile(user) },
		func() error { return x.rows("threepids.json", "user_threepids", "user_id") },
		x.accountData,
		func() error { return x.rows("devices.json", "devices", "user_id") },
		func() error { return x.rows("memberships.json", "room_members", "user_id") },
		x.pushRules,
		func() error { return x.rows("pushers.json", "pushers", "user_id") },
		func() error { return x.rows("reports.json", "content_reports", "reporter") },
		x.events,
		x.media,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	m := &Manifest{Format: Format, Version: Version, Server: s.serverName, UserID: userID, CreatedTS: now.UnixMilli(),
		Created: now.Format(time.RFC3339)}
	for _, f := range Files {
		if f.Count != -1 {
			f.Count = x.counts[f.Name]
		}
		m.Files = append(m.Files, f)
	}
	if err := x.json("manifest.json", m); err != nil {
		return nil, err
	}
	if err := x.zw.Close(); err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	return m, nil
}

// exporter is one export being written.
type exporter struct {
	s        *Service
	ctx      context.Context
	zw       *zip.Writer
	now      time.Time
	userID   string
	counts   map[string]int64
	done     int64
	total    int64
	progress Progress
}

func (x *exporter) create(name string) (io.Writer, error) {
	return x.createWith(name, zip.Deflate)
}

// createWith starts a file of the archive stored with method: uploads are
// stored as they are (mostly compressed formats already), the rest
// deflated.
func (x *exporter) createWith(name string, method uint16) (io.Writer, error) {
	w, err := x.zw.CreateHeader(&zip.FileHeader{Name: name, Method: method, Modified: x.now})
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", name, err)
	}
	return w, nil
}

func (x *exporter) text(name, s string) error {
	w, err := x.create(name)
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, s)
	return err
}

func (x *exporter) json(name string, v any) error {
	w, err := x.create(name)
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("export %s: %w", name, err)
	}
	return nil
}

// rows writes a user's rows of a table as a JSON array.
func (x *exporter) rows(name, table, column string) error {
	rows, err := x.s.store.UserRows(x.ctx, table, column, x.userID)
	if err != nil {
		return err
	}
	x.counts[name] = int64(len(rows))
	return x.json(name, rows)
}

type profileJSON struct {
	UserID       string           `json:"user_id"`
	DisplayName  *string          `json:"displayname"`
	AvatarURL    *string          `json:"avatar_url"`
	CreatedTS    int64            `json:"creation_ts"`
	Admin        bool             `json:"admin"`
	Deactivated  bool             `json:"deactivated"`
	Erased       bool             `json:"erased"`
	Locked       bool             `json:"locked"`
	Suspended    bool             `json:"suspended"`
	UserType     *string          `json:"user_type"`
	ValidUntilTS *int64           `json:"valid_until_ts"`
	ExternalIDs  []map[string]any `json:"external_ids"`
}

func (x *exporter) profile(u *store.User) error {
	p := profileJSON{UserID: u.UserID, CreatedTS: u.CreatedTS, Admin: u.IsAdmin, Deactivated: u.Deactivated, Erased: u.Erased,
		Locked: u.Locked, Suspended: u.Suspended}
	if u.DisplayName.Valid {
		p.DisplayName = &u.DisplayName.String
	}
	if u.AvatarURL.Valid {
		p.AvatarURL = &u.AvatarURL.String
	}
	if u.UserType.Valid {
		p.UserType = &u.UserType.String
	}
	if u.ValidUntilTS.Valid {
		p.ValidUntilTS = &u.ValidUntilTS.Int64
	}
	var err error
	if p.ExternalIDs, err = x.s.store.UserRows(x.ctx, "sso_links", "user_id", x.userID); err != nil {
		return err
	}
	x.counts["profile.json"] = 1
	return x.json("profile.json", p)
}

func (x *exporter) accountData() error {
	items, err := x.s.store.AccountDataSince(x.ctx, x.userID, 0, x.s.store.Streams.AccountData.Current())
	if err != nil {
		return fmt.Errorf("export account data: %w", err)
	}
	out := struct {
		Global map[string]json.RawMessage            `json:"global"`
		Rooms  map[string]map[string]json.RawMessage `json:"rooms"`
	}{map[string]json.RawMessage{}, map[string]map[string]json.RawMessage{}}
	var n int64
	for _, a := range items {
		if store.AccountDataDeleted(a.Content) || !json.Valid(a.Content) {
			continue
		}
		n++
		if a.RoomID == "" {
			out.Global[a.Type] = a.Content
			continue
		}
		if out.Rooms[a.RoomID] == nil {
			out.Rooms[a.RoomID] = map[string]json.RawMessage{}
		}
		out.Rooms[a.RoomID][a.Type] = a.Content
	}
	x.counts["account_data.json"] = n
	return x.json("account_data.json", out)
}

func (x *exporter) pushRules() error {
	rules := json.RawMessage("{}")
	if x.s.push != nil {
		var err error
		if rules, err = x.s.push.RulesEvent(x.ctx, x.userID); err != nil {
			return fmt.Errorf("export push rules: %w", err)
		}
	}
	x.counts["push_rules.json"] = 1
	return x.json("push_rules.json", rules)
}

// eventLine is one line of events.jsonl.
type eventLine struct {
	EventID        string          `json:"event_id"`
	RoomID         string          `json:"room_id"`
	Type           string          `json:"type"`
	StateKey       *string         `json:"state_key,omitempty"`
	OriginServerTS int64           `json:"origin_server_ts"`
	Redacted       bool            `json:"redacted"`
	PDU            json.RawMessage `json:"pdu"`
}

func (x *exporter) events() error {
	w, err := x.create("events.jsonl")
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	var n int64
	err = x.s.store.EachEventBySender(x.ctx, x.userID, func(row *store.EventRow) error {
		line := eventLine{EventID: row.EventID, RoomID: row.RoomID, Type: row.Type, OriginServerTS: row.OriginTS,
			Redacted: row.Redacted, PDU: row.JSON()}
		if row.StateKey.Valid {
			line.StateKey = &row.StateKey.String
		}
		if line.PDU == nil {
			line.PDU = json.RawMessage("null") // a damaged row: listed, not lost
		}
		if err := enc.Encode(line); err != nil {
			return fmt.Errorf("export events: %w", err)
		}
		n++
		x.step()
		return nil
	})
	x.counts["events.jsonl"] = n
	return err
}

// step counts an item done, reporting every 1,000 and the last.
func (x *exporter) step() {
	x.done++
	if x.done%1000 == 0 || x.done == x.total {
		x.progress(x.done, x.total)
	}
}

// mediaEntry is one upload as media.json lists it.
type mediaEntry struct {
	MediaID     string `json:"media_id"`
	MXC         string `json:"mxc"`
	File        string `json:"file,omitempty"` // in the archive; none when withheld
	UploadName  string `json:"upload_name,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Size        int64  `json:"size"`
	CreatedTS   int64  `json:"created_ts"`
	Withheld    string `json:"withheld,omitempty"` // why the file is not in the archive
}

// safeExt is a file name extension kept on the archive's file names.
var safeExt = regexp.MustCompile(`^\.[A-Za-z0-9]{1,8}$`)

func (x *exporter) media() error {
	list := []mediaEntry{}
	var files int64
	err := x.s.media.EachUpload(x.ctx, x.userID, func(u media.UserUpload, r io.Reader) error {
		e := mediaEntry{MediaID: u.MediaID, MXC: "mxc://" + x.s.serverName + "/" + u.MediaID, UploadName: u.UploadName,
			ContentType: u.ContentType, Size: u.Size, CreatedTS: u.CreatedTS}
		if r == nil {
			e.Withheld = "quarantined by the server's administrators"
		} else {
			e.File = "media/" + u.MediaID
			if ext := strings.ToLower(path.Ext(u.UploadName)); safeExt.MatchString(ext) {
				e.File += ext
			}
			w, err := x.createWith(e.File, zip.Store)
			if err != nil {
				return err
			}
			if _, err := io.Copy(w, r); err != nil {
				return fmt.Errorf("export media %s: %w", u.MediaID, err)
			}
			files++
		}
		list = append(list, e)
		x.step()
		return nil
	})
	if err != nil {
		return err
	}
	x.counts["media.json"] = int64(len(list))
	x.counts["media/"] = files
	return x.json("media.json", list)
}
