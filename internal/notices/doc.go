// Package notices sends server notices (the spec's "Server Notices"
// module): a system user owns one invite-only room per recipient, tagged
// m.server_notice for them, in which only the system user may post
// m.room.message events with msgtype m.server_notice.
//
// It uses store and rooms; it must not import httpapi.
package notices
