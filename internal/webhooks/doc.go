// Package webhooks serves incoming webhooks for alerts: an operator makes
// a hook for a room (luxchat webhook create, or the admin API) and gets a
// secret URL; Prometheus Alertmanager's webhook JSON, Grafana alerting's,
// or a generic {"text", "html"} posted to it becomes messages of the
// server's alerts bot in that room. Each alert is one message; a later
// notification of the same alert edits it (m.replace) when what it shows
// changed, is left out when nothing did, and a resolution edits the
// firing message and answers it (m.in_reply_to). What each alert became
// is kept in the store (webhook_alerts), so this holds across restarts.
//
// The hooks post through a Poster: by default the bot's events go through
// the one event pipeline (rooms.Send); an encrypting Poster may be given
// for encrypted rooms, which are refused without one.
//
// It uses store and rooms; it must not import httpapi.
package webhooks
