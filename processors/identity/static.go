package identity

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"

	"gopkg.in/yaml.v3"

	"github.com/meshlens/meshlens/model"
)

// IPResolver names the workload behind an address. port is 0 when unknown.
type IPResolver interface {
	ResolveIP(ip string, port int) (model.Identity, bool)
}

// StaticEntry is one line of the --static-identities file.
type StaticEntry struct {
	// IP is an address ("10.1.2.3") or a CIDR range ("10.1.0.0/16").
	IP string `yaml:"ip"`
	// Port, when set, makes the entry match only that port; entries with
	// a port win over entries without one.
	Port      int    `yaml:"port"`
	Service   string `yaml:"service"`
	Namespace string `yaml:"namespace"`
	Instance  string `yaml:"instance"`
	Version   string `yaml:"version"`
	Cluster   string `yaml:"cluster"`
}

// maxStaticFile bounds the file read into memory.
const maxStaticFile = 16 << 20

type ipPort struct {
	ip   netip.Addr
	port int
}

type prefixEntry struct {
	prefix netip.Prefix
	port   int
	id     model.Identity
}

// StaticResolver resolves addresses from a fixed list: databases, VMs and
// SaaS endpoints that no registry knows. It is immutable after creation,
// so concurrent lookups are safe.
type StaticResolver struct {
	exact    map[ipPort]model.Identity
	prefixes []prefixEntry // most specific first
}

// LoadStaticFile reads a YAML list of StaticEntry (see
// deploy/static-identities.example.yaml).
func LoadStaticFile(path string) (*StaticResolver, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("static identities: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxStaticFile+1))
	if err != nil {
		return nil, fmt.Errorf("static identities %s: %w", path, err)
	}
	if len(b) > maxStaticFile {
		return nil, fmt.Errorf("static identities %s: larger than %d bytes", path, maxStaticFile)
	}
	r, err := ParseStatic(b)
	if err != nil {
		return nil, fmt.Errorf("static identities %s: %w", path, err)
	}
	return r, nil
}

// ParseStatic parses the YAML form of a static identity list.
func ParseStatic(b []byte) (*StaticResolver, error) {
	var entries []StaticEntry
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&entries); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("parse YAML (want a list of {ip, port, service, namespace, instance, version, cluster}): %w", err)
	}
	return NewStaticResolver(entries)
}

// NewStaticResolver validates entries and indexes them.
func NewStaticResolver(entries []StaticEntry) (*StaticResolver, error) {
	r := &StaticResolver{exact: make(map[ipPort]model.Identity, len(entries))}
	for i, e := range entries {
		if e.Service == "" {
			return nil, fmt.Errorf("entry %d (ip %q): service is required", i+1, e.IP)
		}
		if e.Port < 0 || e.Port > 65535 {
			return nil, fmt.Errorf("entry %d (ip %q): port %d out of range", i+1, e.IP, e.Port)
		}
		id := model.Identity{
			Service: e.Service, Namespace: e.Namespace, Instance: e.Instance,
			Version: e.Version, Cluster: e.Cluster,
		}
		if addr, err := netip.ParseAddr(e.IP); err == nil {
			k := ipPort{addr.Unmap(), e.Port}
			if _, dup := r.exact[k]; dup {
				return nil, fmt.Errorf("entry %d: ip %s port %d listed twice", i+1, e.IP, e.Port)
			}
			r.exact[k] = id
			continue
		}
		p, err := netip.ParsePrefix(e.IP)
		if err != nil {
			return nil, fmt.Errorf("entry %d: ip %q is neither an address nor a CIDR range", i+1, e.IP)
		}
		r.prefixes = append(r.prefixes, prefixEntry{prefix: p.Masked(), port: e.Port, id: id})
	}
	// Longest prefix first, port-specific before port-less at equal length.
	for i := 1; i < len(r.prefixes); i++ {
		for j := i; j > 0 && morePrecise(r.prefixes[j], r.prefixes[j-1]); j-- {
			r.prefixes[j], r.prefixes[j-1] = r.prefixes[j-1], r.prefixes[j]
		}
	}
	return r, nil
}

func morePrecise(a, b prefixEntry) bool {
	if a.prefix.Bits() != b.prefix.Bits() {
		return a.prefix.Bits() > b.prefix.Bits()
	}
	return a.port != 0 && b.port == 0
}

// Len is the number of entries.
func (r *StaticResolver) Len() int { return len(r.exact) + len(r.prefixes) }

// ResolveIP implements IPResolver.
func (r *StaticResolver) ResolveIP(ip string, port int) (model.Identity, bool) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return model.Identity{}, false
	}
	addr = addr.Unmap()
	if port != 0 {
		if id, ok := r.exact[ipPort{addr, port}]; ok {
			return fill(id, ip, port), true
		}
	}
	if id, ok := r.exact[ipPort{addr, 0}]; ok {
		return fill(id, ip, port), true
	}
	for _, p := range r.prefixes {
		if (p.port == 0 || p.port == port) && p.prefix.Contains(addr) {
			return fill(p.id, ip, port), true
		}
	}
	return model.Identity{}, false
}

func fill(id model.Identity, ip string, port int) model.Identity {
	id.IP = ip
	return id
}
