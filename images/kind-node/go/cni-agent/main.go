// cni-agent: the minimal pod network of pytest-vcluster's kind node image.
//
// Runs as a host-network DaemonSet pod on every node. Every few seconds it reads the Node
// objects from the API server and
//   - writes a ptp + host-local + portmap CNI conflist for this node's podCIDR(s)
//     (ptp's ipMasq masquerades traffic leaving the pod network);
//   - routes every other node's podCIDR via that node's InternalIP (busybox "ip route replace").
//
// Configuration (environment): NODE_NAME (downward API), CONTROL_PLANE_ENDPOINT (host:port,
// set by kind; else KUBERNETES_SERVICE_HOST/PORT), CNI_CONF_DIR (default /etc/cni/net.d),
// CNI_MTU (default 1500), SYNC_SECONDS (default 5). Standard library only.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

type nodeList struct {
	Items []node `json:"items"`
}

type node struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		PodCIDR  string   `json:"podCIDR"`
		PodCIDRs []string `json:"podCIDRs"`
	} `json:"spec"`
	Status struct {
		Addresses []struct {
			Type    string `json:"type"`
			Address string `json:"address"`
		} `json:"addresses"`
	} `json:"status"`
}

func (n node) cidrs() []string {
	if len(n.Spec.PodCIDRs) > 0 {
		return n.Spec.PodCIDRs
	}
	if n.Spec.PodCIDR != "" {
		return []string{n.Spec.PodCIDR}
	}
	return nil
}

func (n node) internalIP(v6 bool) string {
	for _, a := range n.Status.Addresses {
		ip := net.ParseIP(a.Address)
		if a.Type == "InternalIP" && ip != nil && (ip.To4() == nil) == v6 {
			return a.Address
		}
	}
	return ""
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func apiBase() string {
	if ep := os.Getenv("CONTROL_PLANE_ENDPOINT"); ep != "" {
		return "https://" + ep
	}
	host, port := os.Getenv("KUBERNETES_SERVICE_HOST"), env("KUBERNETES_SERVICE_PORT", "443")
	return "https://" + net.JoinHostPort(host, port)
}

func client() (*http.Client, error) {
	ca, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}},
	}, nil
}

func listNodes(c *http.Client, base string) ([]node, error) {
	token, err := os.ReadFile(filepath.Join(saDir, "token")) // re-read: tokens rotate
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodGet, base+"/api/v1/nodes", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/nodes: %s", resp.Status)
	}
	var nl nodeList
	if err := json.NewDecoder(resp.Body).Decode(&nl); err != nil {
		return nil, err
	}
	return nl.Items, nil
}

func conflist(cidrs []string, mtu int) ([]byte, error) {
	ranges := make([]any, 0, len(cidrs))
	routes := make([]any, 0, 2)
	for _, c := range cidrs {
		ranges = append(ranges, []any{map[string]string{"subnet": c}})
		if strings.Contains(c, ":") {
			routes = append(routes, map[string]string{"dst": "::/0"})
		} else {
			routes = append(routes, map[string]string{"dst": "0.0.0.0/0"})
		}
	}
	conf := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "kind-node-ptp",
		"plugins": []any{
			map[string]any{
				"type":   "ptp",
				"ipMasq": true,
				"mtu":    mtu,
				"ipam": map[string]any{
					"type":    "host-local",
					"dataDir": "/run/cni-ipam-state",
					"routes":  routes,
					"ranges":  ranges,
				},
			},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}},
		},
	}
	return json.MarshalIndent(conf, "", "  ")
}

func writeIfChanged(path string, data []byte) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		return false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

func routeReplace(cidr, via string) error {
	out, err := exec.Command("ip", "route", "replace", cidr, "via", via).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip route replace %s via %s: %v: %s", cidr, via, err, out)
	}
	return nil
}

func sync(c *http.Client, base, self, confPath string, mtu int, routed map[string]string) error {
	nodes, err := listNodes(c, base)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if n.Metadata.Name == self {
			cidrs := n.cidrs()
			if len(cidrs) == 0 {
				return fmt.Errorf("node %s has no podCIDR yet", self)
			}
			data, err := conflist(cidrs, mtu)
			if err != nil {
				return err
			}
			changed, err := writeIfChanged(confPath, data)
			if err != nil {
				return err
			}
			if changed {
				log.Printf("wrote %s for %v", confPath, cidrs)
			}
			continue
		}
		for _, cidr := range n.cidrs() {
			via := n.internalIP(strings.Contains(cidr, ":"))
			if via == "" || routed[cidr] == via {
				continue
			}
			if err := routeReplace(cidr, via); err != nil {
				log.Print(err)
				continue
			}
			routed[cidr] = via
			log.Printf("route %s via %s (node %s)", cidr, via, n.Metadata.Name)
		}
	}
	return nil
}

func main() {
	self := os.Getenv("NODE_NAME")
	if self == "" {
		log.Fatal("NODE_NAME is not set")
	}
	mtu, _ := strconv.Atoi(env("CNI_MTU", "1500"))
	period, _ := strconv.Atoi(env("SYNC_SECONDS", "5"))
	confPath := filepath.Join(env("CNI_CONF_DIR", "/etc/cni/net.d"), "10-kind-node.conflist")
	c, err := client()
	if err != nil {
		log.Fatal(err)
	}
	base := apiBase()
	routed := map[string]string{}
	log.Printf("cni-agent for node %s, API %s", self, base)
	for {
		if err := sync(c, base, self, confPath, mtu, routed); err != nil {
			log.Print(err)
			time.Sleep(time.Second)
			continue
		}
		time.Sleep(time.Duration(period) * time.Second)
	}
}
