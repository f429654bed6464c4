// Package media is the media repository: uploads (direct and by
// reservation), downloads with byte ranges, thumbnails, quotas, and
// encryption at rest.
//
// Every blob, original or thumbnail, is sealed with AES-256-GCM under its
// own random key in a chunked format (crypto.go) and kept in a BlobStore
// (files under data_dir/media by default). The file keys live in the
// database wrapped by a master key (Keyring) that never does: a copy of the
// database and of the blobs without media.key reveals nothing. A blob that
// fails authentication is never served.
//
// Errors meant for clients are *errcode.Error. It imports store, config and
// internal/matrix, never HTTP packages.
package media
