//go:build !linux

package events

import (
	"net"
	"time"
)

// Hub serves adopted streams off their requests' goroutines on Linux
// (see Serve); elsewhere NewHub returns nil, and a nil Hub's Serve writes
// the stream on the request's goroutine (Stream).
type Hub struct{ stall time.Duration }

// NewHub returns nil: streams are written on their requests' goroutines.
func NewHub(time.Duration) (*Hub, error) { return nil, nil }

// Adopt refuses every connection.
func (h *Hub) Adopt(net.Conn, *Subscription, []byte, func(int64)) error { return ErrNotAdoptable }

// Len returns 0.
func (h *Hub) Len() int { return 0 }

// Close does nothing.
func (h *Hub) Close() {}
