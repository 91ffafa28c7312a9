// iptables-wrapper: pick the iptables backend (legacy or nft) the node already uses.
//
// Installed as iptables, iptables-save, iptables-restore and their ip6tables twins in
// pytest-vcluster's kube-proxy image. On first use it counts the rules each backend holds
// in this network namespace (the node's: kube-proxy runs with hostNetwork), chooses the one
// with more rules (nft on a tie), points every name at xtables-<mode>-multi so later calls go
// straight there, and executes the requested command.
package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

const sbin = "/usr/sbin"

var names = []string{
	"iptables", "iptables-save", "iptables-restore",
	"ip6tables", "ip6tables-save", "ip6tables-restore",
}

func countRules(multi string) int {
	n := 0
	for _, applet := range []string{"iptables-save", "ip6tables-save"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(sbin, multi))
		cmd.Args[0] = applet
		out, _ := cmd.Output()
		cancel()
		for _, line := range bytes.Split(out, []byte("\n")) {
			if bytes.HasPrefix(line, []byte("-")) {
				n++
			}
		}
	}
	return n
}

func main() {
	mode := os.Getenv("IPTABLES_MODE")
	if mode == "" {
		mode = "nft"
		if countRules("xtables-legacy-multi") > countRules("xtables-nft-multi") {
			mode = "legacy"
		}
	}
	target := filepath.Join(sbin, "xtables-"+mode+"-multi")
	for _, name := range names {
		link := filepath.Join(sbin, name)
		tmp := link + ".wrapper-tmp"
		_ = os.Remove(tmp)
		if err := os.Symlink("xtables-"+mode+"-multi", tmp); err == nil {
			_ = os.Rename(tmp, link)
		}
	}
	argv := append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...)
	err := syscall.Exec(target, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "iptables-wrapper: exec %s: %v\n", target, err)
	os.Exit(127)
}
