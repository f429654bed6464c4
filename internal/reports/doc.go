// Package reports records users' reports of events, rooms and users for
// the server's administrators (who list them with "luxchat reports list").
//
// It uses store and rooms; it must not import httpapi.
package reports
