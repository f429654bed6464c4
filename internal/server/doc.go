// Package server wires luxchat together: configuration, store, signing key,
// services, routes, listeners and graceful shutdown.
package server
