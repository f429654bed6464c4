// Package appservice is the Application Service API: the registrations
// an operator lists in appservices.config_files, who an as_token acts as
// (masquerading within the namespaces), the namespaces' exclusivity, and
// everything the server sends to a service: transactions of events,
// ephemeral data and to-device messages from a persistent position,
// user and alias queries, pings and third-party look-ups.
//
// It must not import httpapi; it reads the store and asks rooms only for
// joined members.
package appservice
