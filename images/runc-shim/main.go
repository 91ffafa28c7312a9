// runc-shim: a runc wrapper for hosts whose capability bounding set is reduced.
//
// Some hosts (for example VMs whose init drops CAP_SYS_RESOURCE) cannot grant every
// capability, so an OCI runtime asked for a privileged container fails with "unable to apply
// caps: operation not permitted". This wrapper removes from the OCI spec the capabilities that
// are absent from this process's bounding set, then executes the real runc with the same
// arguments. It rewrites:
//   - <bundle>/config.json for "create" and "run" (bundle from --bundle/-b, else the cwd);
//   - the --process/-p JSON file for "exec".
//
// The real runc is $RUNC_SHIM_REAL, else the first of /usr/sbin/runc, /usr/bin/runc,
// /usr/local/sbin/runc that exists (never this binary itself).
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// capNames maps capability names to their numbers (linux/capability.h).
var capNames = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3,
	"CAP_FSETID": 4, "CAP_KILL": 5, "CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8,
	"CAP_LINUX_IMMUTABLE": 9, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_BROADCAST": 11,
	"CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_IPC_LOCK": 14, "CAP_IPC_OWNER": 15,
	"CAP_SYS_MODULE": 16, "CAP_SYS_RAWIO": 17, "CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19,
	"CAP_SYS_PACCT": 20, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22, "CAP_SYS_NICE": 23,
	"CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_SYS_TTY_CONFIG": 26, "CAP_MKNOD": 27,
	"CAP_LEASE": 28, "CAP_AUDIT_WRITE": 29, "CAP_AUDIT_CONTROL": 30, "CAP_SETFCAP": 31,
	"CAP_MAC_OVERRIDE": 32, "CAP_MAC_ADMIN": 33, "CAP_SYSLOG": 34, "CAP_WAKE_ALARM": 35,
	"CAP_BLOCK_SUSPEND": 36, "CAP_AUDIT_READ": 37, "CAP_PERFMON": 38, "CAP_BPF": 39,
	"CAP_CHECKPOINT_RESTORE": 40,
}

var capSets = []string{"bounding", "effective", "inheritable", "permitted", "ambient"}

func boundingSet() (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	return 0, fmt.Errorf("no CapBnd in /proc/self/status")
}

// filterCaps removes unavailable capabilities from a "capabilities" object in place and
// reports whether anything changed.
func filterCaps(caps map[string]any, bnd uint64) bool {
	changed := false
	for _, set := range capSets {
		list, ok := caps[set].([]any)
		if !ok {
			continue
		}
		kept := make([]any, 0, len(list))
		for _, c := range list {
			name, _ := c.(string)
			if n, known := capNames[strings.ToUpper(name)]; known && bnd&(1<<n) == 0 {
				changed = true
				continue
			}
			kept = append(kept, c)
		}
		caps[set] = kept
	}
	return changed
}

// rewrite filters the capabilities of the JSON file at path; inProcess selects where the
// capabilities object lives (config.json: .process.capabilities; exec process: .capabilities).
func rewrite(path string, inProcess bool, bnd uint64) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	holder := doc
	if inProcess {
		p, ok := doc["process"].(map[string]any)
		if !ok {
			return nil
		}
		holder = p
	}
	caps, ok := holder["capabilities"].(map[string]any)
	if !ok || !filterCaps(caps, bnd) {
		return nil
	}
	out, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	tmp := path + ".runc-shim"
	if err := os.WriteFile(tmp, out, st.Mode().Perm()); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// flagsWithValue are runc's global and per-command flags that take a separate value.
var flagsWithValue = map[string]bool{
	"--root": true, "--log": true, "--log-format": true, "--criu": true, "--rootless": true,
	"--bundle": true, "-b": true, "--process": true, "-p": true, "--console-socket": true,
	"--pid-file": true, "--preserve-fds": true, "--cwd": true, "--env": true, "-e": true,
	"--user": true, "-u": true, "--additional-gids": true, "-g": true, "--cap": true,
	"-c": true, "--apparmor": true, "--process-label": true, "--cgroup": true,
}

// parse finds the subcommand and the values of --bundle/-b and --process/-p.
func parse(args []string) (cmd, bundle, process string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, value, hasValue := strings.Cut(a, "=")
		if strings.HasPrefix(a, "-") {
			if !hasValue && flagsWithValue[name] && i+1 < len(args) {
				value = args[i+1]
				i++
			}
			switch name {
			case "--bundle", "-b":
				bundle = value
			case "--process", "-p":
				process = value
			}
			continue
		}
		if cmd == "" {
			cmd = a
		}
	}
	return cmd, bundle, process
}

func realRunc() string {
	self, _ := os.Executable()
	candidates := []string{os.Getenv("RUNC_SHIM_REAL"), "/usr/sbin/runc", "/usr/bin/runc", "/usr/local/sbin/runc"}
	for _, c := range candidates {
		if c == "" {
			continue
		}
		if abs, err := filepath.EvalSymlinks(c); err == nil && abs != self {
			if st, err := os.Stat(abs); err == nil && !st.IsDir() {
				return c
			}
		}
	}
	return ""
}

func main() {
	args := os.Args[1:]
	if bnd, err := boundingSet(); err == nil {
		cmd, bundle, process := parse(args)
		var rerr error
		switch cmd {
		case "create", "run":
			if bundle == "" {
				bundle, _ = os.Getwd()
			}
			rerr = rewrite(filepath.Join(bundle, "config.json"), true, bnd)
		case "exec":
			if process != "" {
				rerr = rewrite(process, false, bnd)
			}
		}
		if rerr != nil {
			fmt.Fprintf(os.Stderr, "runc-shim: cannot filter capabilities: %v\n", rerr)
		}
	}
	runc := realRunc()
	if runc == "" {
		fmt.Fprintln(os.Stderr, "runc-shim: no real runc found (set RUNC_SHIM_REAL)")
		os.Exit(127)
	}
	err := syscall.Exec(runc, append([]string{runc}, args...), os.Environ())
	fmt.Fprintf(os.Stderr, "runc-shim: exec %s: %v\n", runc, err)
	os.Exit(127)
}
