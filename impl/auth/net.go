package auth

import (
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// ClientAddress is the address of r's client as the gate sees it (the
// peer, or what trusted proxies forwarded), for the access log.
func (a *Auth) ClientAddress(r *http.Request) string { return a.clientIP(r) }

// clientIP returns the address of the client: the peer, unless the peer is a
// trusted proxy, in which case X-Forwarded-For is walked from the right and
// the first address that is not a trusted proxy wins. An unparsable entry
// stops the walk at the last trusted hop.
func (a *Auth) clientIP(r *http.Request) string {
	ip, ok := parseHost(r.RemoteAddr)
	if !ok {
		return r.RemoteAddr
	}
	if !a.trusted(ip) {
		return ip.String()
	}
	var hops []string
	for _, v := range r.Header.Values("X-Forwarded-For") {
		hops = append(hops, strings.Split(v, ",")...)
	}
	for i := len(hops) - 1; i >= 0; i-- {
		h, ok := parseHost(strings.TrimSpace(hops[i]))
		if !ok {
			break
		}
		if !a.trusted(h) {
			return h.String()
		}
		ip = h
	}
	return ip.String()
}

// parseHost reads "ip", "ip:port" or "[ipv6]:port"; IPv4-mapped IPv6
// addresses and zones are normalized away.
func parseHost(s string) (netip.Addr, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	if ip, err := netip.ParseAddr(s); err == nil {
		return ip.Unmap().WithZone(""), true
	}
	return netip.Addr{}, false
}

// DefaultIPv6ClientPrefix is the prefix length that groups IPv6 clients
// (Config.IPv6ClientPrefix): a /64 is what one subscriber, or one LAN,
// usually gets, and picking new addresses inside it costs nothing.
const DefaultIPv6ClientPrefix = 64

// AddressGroup returns the group an anonymous client's address counts in,
// in its display form: an IPv4 address (an IPv4-mapped IPv6 address is
// the IPv4 address) stays itself; an IPv6 address becomes its prefix of
// ipv6Bits bits (1-128; 128 is the address itself), e.g.
// 2001:db8:1:2::/64. A string that is not an address is returned as it is.
func AddressGroup(ip string, ipv6Bits int) string {
	addr, ok := parseHost(ip)
	if !ok {
		return ip
	}
	if addr.Is4() || ipv6Bits >= 128 || ipv6Bits < 1 {
		return addr.String()
	}
	p, err := addr.Prefix(ipv6Bits)
	if err != nil {
		return addr.String()
	}
	return p.String()
}

// group is AddressGroup with this server's IPv6 prefix.
func (a *Auth) group(ip string) string { return AddressGroup(ip, a.cfg.IPv6ClientPrefix) }

// addrKey is the client key of an anonymous request from ip: its address
// group (see AddressGroup), for the rate limits and the event-stream caps.
func (a *Auth) addrKey(ip string) string { return "ip:" + a.group(ip) }

func (a *Auth) trusted(ip netip.Addr) bool {
	for _, p := range a.cfg.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// maxClients is the number of client buckets kept before full (idle)
// buckets are dropped.
const maxClients = 10000

// limiter keeps one token bucket per client address.
type limiter struct {
	bucket    string // its name in the metrics (metrics.Bucket*)
	unlimited bool
	limit     rate.Limit
	burst     int

	mu      sync.Mutex
	clients map[string]*rate.Limiter
}

func newLimiter(bucket string, c, def RateLimit) *limiter {
	if c.PerSecond == 0 && c.Burst == 0 {
		c = def
	}
	if c.PerSecond < 0 {
		return &limiter{bucket: bucket, unlimited: true}
	}
	if c.PerSecond == 0 {
		c.PerSecond = def.PerSecond
	}
	if c.Burst <= 0 {
		c.Burst = max(1, int(math.Ceil(c.PerSecond)))
	}
	return &limiter{bucket: bucket, limit: rate.Limit(c.PerSecond), burst: c.Burst, clients: map[string]*rate.Limiter{}}
}

// take spends a token of client's bucket at now, or reports how long until
// one is available.
func (l *limiter) take(client string, now time.Time) (bool, time.Duration) {
	if l.unlimited {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.clients[client]
	if b == nil {
		if len(l.clients) >= maxClients {
			l.prune(now)
		}
		b = rate.NewLimiter(l.limit, l.burst)
		l.clients[client] = b
	}
	res := b.ReserveN(now, 1)
	if !res.OK() {
		return false, time.Second
	}
	wait := res.DelayFrom(now)
	if wait <= 0 {
		return true, 0
	}
	res.CancelAt(now)
	return false, wait
}

// prune drops the buckets that are full again: forgetting them loses nothing.
func (l *limiter) prune(now time.Time) {
	for k, b := range l.clients {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.clients, k)
		}
	}
}

func retryText(d time.Duration) string {
	s := int(math.Ceil(d.Seconds()))
	if s <= 1 {
		return "1 second"
	}
	return strconv.Itoa(s) + " seconds"
}

// Methods and headers answered to CORS preflights.
const (
	corsMethods = "GET, HEAD, POST, PUT, PATCH, DELETE"
	corsHeaders = "Authorization, Content-Type, X-Stackd-CSRF, If-None-Match"
	corsExpose  = "ETag, Location, Retry-After"
)

// CORS returns next wrapped with the CORS policy: requests from an origin in
// Config.CORSOrigins (exact match) get Access-Control-Allow-Origin with
// credentials, and their preflights are answered 204 here, before
// validation. Other origins get no CORS headers, so browsers keep them out.
func (a *Auth) CORS(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin == "" {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Add("Vary", "Origin")
		if !a.corsOrigins[strings.ToLower(origin)] {
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", corsMethods)
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		h.Set("Access-Control-Expose-Headers", corsExpose)
		next.ServeHTTP(w, r)
	})
}
