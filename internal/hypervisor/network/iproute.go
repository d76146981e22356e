package network

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
)

// Every change to the host's interfaces goes through the ip command (iproute2) run by host.Host,
// never a netlink library: a library acts on the machine the provider runs on, while ip runs on
// whichever host the instances live on, local or reached over SSH.

// link is what `ip -json -details link show` reports about one interface.
type link struct {
	Name     string   `json:"ifname"`
	Master   string   `json:"master"`
	Alias    string   `json:"ifalias"`
	Address  string   `json:"address"`
	Flags    []string `json:"flags"`
	LinkInfo struct {
		Kind string `json:"info_kind"`
		Data struct {
			Type string `json:"type"` // "tap" or "tun" for a tun device
		} `json:"info_data"`
	} `json:"linkinfo"`
}

// route is what `ip -json route show` reports about one route.
type route struct {
	Dst string `json:"dst"` // "default", a prefix, or a single address
	Dev string `json:"dev"`
}

// prefix is the route's destination as a prefix; false for the default route.
func (r route) prefix() (netip.Prefix, bool) {
	if r.Dst == "default" {
		return netip.Prefix{}, false
	}
	if p, err := netip.ParsePrefix(r.Dst); err == nil {
		return p, true
	}
	a, err := netip.ParseAddr(r.Dst)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

func (n *Network) ip(ctx context.Context, args ...string) ([]byte, error) {
	return n.h.Run(ctx, nil, append([]string{"ip"}, args...)...)
}

// links lists the host's interfaces, or only name when it is not "".
func (n *Network) links(ctx context.Context, name string) ([]link, error) {
	args := []string{"-json", "-details", "link", "show"}
	if name != "" {
		args = append(args, "dev", name)
	}
	out, err := n.ip(ctx, args...)
	if err != nil {
		return nil, err
	}
	var links []link
	if err := json.Unmarshal(out, &links); err != nil {
		return nil, fmt.Errorf("ip link show: unexpected output: %w", err)
	}
	return links, nil
}

// linkByName returns the interface called name; false when the host has none.
func (n *Network) linkByName(ctx context.Context, name string) (link, bool, error) {
	links, err := n.links(ctx, name)
	if isNoDevice(err) {
		return link{}, false, nil
	}
	if err != nil {
		return link{}, false, err
	}
	for _, l := range links {
		if l.Name == name {
			return l, true, nil
		}
	}
	return link{}, false, nil
}

// routes lists the IPv4 routes of the host's main table.
func (n *Network) routes(ctx context.Context) ([]route, error) {
	out, err := n.ip(ctx, "-json", "-4", "route", "show", "table", "main")
	if err != nil {
		return nil, fmt.Errorf("list the host's routes: %w", err)
	}
	var routes []route
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("ip route show: unexpected output: %w", err)
	}
	return routes, nil
}

// isNoDevice reports whether err is ip saying the interface does not exist; the command line
// tool has no other way to tell than its message.
func isNoDevice(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "Cannot find device") || strings.Contains(msg, "does not exist")
}
