// Package gdpr answers data-protection requests about local users: the
// export of what the server holds of a user (GDPR article 15: Export,
// one zip archive streamed with bounded memory) and erasure (article 17:
// Erase, which the accounts domain calls through its OnErase hook once an
// account is deactivated with erase). What erasure does and does not do
// is written down in docs/operations.md.
//
// It reads and deletes through store, media (uploads decrypted from, or
// deleted with, their sealed blobs), rooms (which serves an erased
// sender's events redacted) and notifications (push rules and pushers in
// memory). It must not import httpapi.
package gdpr
