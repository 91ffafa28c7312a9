// Command entrypoint runs the processes of a vcluster control plane in one container.
//
//	entrypoint [--grace=20s] [--seed=SRC:DST]... STEP [--- STEP]...
//	STEP = [--step=NAME] [--ready=URL] [--restart=N] BINARY ARGS...
//
// --seed copies the directory SRC to DST first, when DST does not exist yet and SRC does (the
// image's etcd template into an empty data volume: a container restart keeps its data).
// Steps start in order. A step with --ready is polled (GET, any TLS certificate accepted)
// until it answers 200 before the next step starts. A step with --restart=N is started again
// (after 1 s) the first N times it exits: kube-controller-manager gives up after ~20 s when the
// API server is slow to become healthy (a loaded node). When any other process exits, or on
// SIGTERM/SIGINT, the others get SIGTERM in reverse start order (SIGKILL after --grace);
// the exit code is 0 after a signal, 1 after a process died. Each output line is prefixed
// with the step's name. Standard library only: the image is FROM scratch.
package main

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type step struct {
	name     string
	ready    string
	restarts int
	argv     []string
}

type proc struct {
	step
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func parse(args []string) (time.Duration, [][2]string, []step, error) {
	grace := 20 * time.Second
	var seeds [][2]string
	var steps []step
	cur := step{}
	flush := func() error {
		if len(cur.argv) == 0 {
			return errors.New("empty step (a '---' without a command)")
		}
		if cur.name == "" {
			cur.name = filepath.Base(cur.argv[0])
		}
		steps = append(steps, cur)
		cur = step{}
		return nil
	}
	for _, a := range args {
		switch {
		case a == "---":
			if err := flush(); err != nil {
				return 0, nil, nil, err
			}
		case len(cur.argv) == 0 && len(steps) == 0 && cur.name == "" && cur.ready == "" && strings.HasPrefix(a, "--grace="):
			d, err := time.ParseDuration(strings.TrimPrefix(a, "--grace="))
			if err != nil {
				return 0, nil, nil, fmt.Errorf("--grace: %w", err)
			}
			grace = d
		case len(cur.argv) == 0 && len(steps) == 0 && cur.name == "" && cur.ready == "" && strings.HasPrefix(a, "--seed="):
			src, dst, ok := strings.Cut(strings.TrimPrefix(a, "--seed="), ":")
			if !ok || src == "" || dst == "" {
				return 0, nil, nil, fmt.Errorf("--seed: want SRC:DST, got %q", a)
			}
			seeds = append(seeds, [2]string{src, dst})
		case len(cur.argv) == 0 && strings.HasPrefix(a, "--step="):
			cur.name = strings.TrimPrefix(a, "--step=")
		case len(cur.argv) == 0 && strings.HasPrefix(a, "--ready="):
			cur.ready = strings.TrimPrefix(a, "--ready=")
		case len(cur.argv) == 0 && strings.HasPrefix(a, "--restart="):
			n, err := strconv.Atoi(strings.TrimPrefix(a, "--restart="))
			if err != nil || n < 0 {
				return 0, nil, nil, fmt.Errorf("--restart: want a count, got %q", a)
			}
			cur.restarts = n
		default:
			cur.argv = append(cur.argv, a)
		}
	}
	if err := flush(); err != nil {
		return 0, nil, nil, err
	}
	return grace, seeds, steps, nil
}

// seed copies the tree src to dst (directories 0700, files 0600: etcd's own modes) through a
// temporary sibling renamed at the end, so a crash never leaves half a data directory.
func seed(src, dst string) error {
	if _, err := os.Stat(dst); err == nil {
		logf("seed: %s exists: kept", dst)
		return nil
	}
	if _, err := os.Stat(src); err != nil {
		logf("seed: no %s: %s starts empty", src, dst)
		return nil
	}
	t0 := time.Now()
	tmp := dst + ".seeding"
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		out := filepath.Join(tmp, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(out, data, 0o600)
	})
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, dst); err != nil {
		return err
	}
	logf("seed: %s copied from %s in %.3fs", dst, src, time.Since(t0).Seconds())
	return nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[entrypoint] "+format+"\n", args...)
}

var outMu sync.Mutex

func prefix(name string, r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		outMu.Lock()
		fmt.Fprintf(os.Stdout, "[%s] %s\n", name, sc.Text())
		outMu.Unlock()
	}
}

func start(s step) (*proc, error) {
	cmd := exec.Command(s.argv[0], s.argv[1:]...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	go prefix(s.name, pr)
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", s.name, err)
	}
	p := &proc{step: s, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	return p, nil
}

var client = &http.Client{
	Timeout:   time.Second,
	Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, //nolint:gosec // readiness only
}

func ready(url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, resp.Body) //nolint:errcheck
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func stopAll(procs []*proc, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for i := len(procs) - 1; i >= 0; i-- {
		p := procs[i]
		select {
		case <-p.done:
			continue
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM) //nolint:errcheck
		select {
		case <-p.done:
		case <-time.After(time.Until(deadline)):
			logf("%s did not stop within the grace period: SIGKILL", p.name)
			p.cmd.Process.Kill() //nolint:errcheck
			<-p.done
		}
	}
}

func main() {
	grace, seeds, steps, err := parse(os.Args[1:])
	if err != nil {
		logf("usage: entrypoint [--grace=20s] [--seed=SRC:DST] [--step=NAME] [--ready=URL] BINARY ARGS... [--- ...]: %v", err)
		os.Exit(2)
	}
	for _, s := range seeds {
		if err := seed(s[0], s[1]); err != nil {
			logf("seed %s -> %s: %v", s[0], s[1], err)
			os.Exit(1)
		}
	}
	signals := make(chan os.Signal, 2)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	exited := make(chan *proc, len(steps))
	var procs []*proc
	t0 := time.Now()
	fail := func(code int, format string, args ...any) {
		logf(format, args...)
		stopAll(procs, grace)
		os.Exit(code)
	}
	for _, s := range steps {
		p, err := start(s)
		if err != nil {
			fail(1, "cannot start: %v", err)
		}
		procs = append(procs, p)
		go func() { <-p.done; exited <- p }()
		logf("started %s (pid %d) at %.2fs", s.name, p.cmd.Process.Pid, time.Since(t0).Seconds())
		if s.ready == "" {
			continue
		}
		tick := time.NewTicker(100 * time.Millisecond)
		for !ready(s.ready) {
			select {
			case sig := <-signals:
				fail(0, "%v while waiting for %s", sig, s.name)
			case q := <-exited:
				fail(1, "%s exited (%v) before %s was ready", q.name, q.err, s.name)
			case <-tick.C:
			}
		}
		tick.Stop()
		logf("%s ready at %.2fs", s.name, time.Since(t0).Seconds())
	}
	for {
		select {
		case sig := <-signals:
			fail(0, "%v: stopping", sig)
		case q := <-exited:
			if q.restarts <= 0 {
				fail(1, "%s exited (%v): stopping the others", q.name, q.err)
			}
			logf("%s exited (%v): starting it again (%d restart(s) left)", q.name, q.err, q.restarts-1)
			select {
			case sig := <-signals:
				fail(0, "%v: stopping", sig)
			case <-time.After(time.Second):
			}
			again := q.step
			again.restarts--
			p, err := start(again)
			if err != nil {
				fail(1, "cannot restart: %v", err)
			}
			for i := range procs {
				if procs[i] == q {
					procs[i] = p
				}
			}
			go func() { <-p.done; exited <- p }()
		}
	}
}
