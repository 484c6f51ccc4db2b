// Command app is the e2e tests' application. Each mode does one thing, prints what it did and exits 0 when it
// worked, non-zero when not, so that the tests can assert on exit codes and logs:
//
//	app write -file /var/log/app/app.log -lines 5   appends "line N of app <pod>" lines, then exits (or, with
//	                                                -stay, waits for SIGTERM)
//	app get -url http://127.0.0.1:15001/ -for 20s   GETs the URL until it answers 200 or the time is up, prints
//	                                                the body, then exits (or, with -stay, waits for SIGTERM)
package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fail("usage: app write|get [flags]")
	}
	switch os.Args[1] {
	case "write":
		write(os.Args[2:])
	case "get":
		get(os.Args[2:])
	default:
		fail("unknown mode %q (want write or get)", os.Args[1])
	}
}

func write(args []string) {
	fs := flag.NewFlagSet("write", flag.ExitOnError)
	file := fs.String("file", "/var/log/app/app.log", "the file to append to")
	lines := fs.Int("lines", 5, "how many lines to write")
	stay := fs.Bool("stay", false, "wait for SIGTERM after writing instead of exiting")
	_ = fs.Parse(args)
	f, err := os.OpenFile(*file, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fail("%v", err)
	}
	host, _ := os.Hostname()
	for i := 1; i <= *lines; i++ {
		if _, err := fmt.Fprintf(f, "line %d of app %s\n", i, host); err != nil {
			fail("%v", err)
		}
	}
	if err := f.Close(); err != nil {
		fail("%v", err)
	}
	fmt.Printf("app: wrote %d lines to %s\n", *lines, *file)
	if *stay {
		waitForSignal()
	}
}

func waitForSignal() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, syscall.SIGINT)
	<-c
}

func get(args []string) {
	fs := flag.NewFlagSet("get", flag.ExitOnError)
	url := fs.String("url", "http://127.0.0.1:15001/", "the URL to GET")
	wait := fs.Duration("for", 20*time.Second, "how long to retry")
	stay := fs.Bool("stay", false, "wait for SIGTERM after the answer instead of exiting")
	_ = fs.Parse(args)
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(*wait)
	for attempt := 1; ; attempt++ {
		resp, err := client.Get(*url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				fmt.Printf("app: %s answered after %d attempts: %s", *url, attempt, body)
				if *stay {
					waitForSignal()
				}
				return
			}
			err = fmt.Errorf("status %s", resp.Status)
		}
		if time.Now().After(deadline) {
			fail("%s did not answer within %s: %v", *url, *wait, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fail(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "app: "+format+"\n", a...)
	os.Exit(1)
}
