// Command logshipper is the e2e tests' log-shipper sidecar: it follows a file (created later is fine) and prints
// every line it reads to stdout, prefixed with "shipped: ". On SIGTERM it ships what is left and exits, so that
// a Job's last lines are shipped although its sidecar is stopped right after the app exits.
//
//	logshipper -file /var/log/app/app.log
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	file := flag.String("file", "/var/log/app/app.log", "the file to follow")
	flag.Parse()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	fmt.Println("logshipper: following", *file)
	f := open(*file, stop)
	if f == nil {
		return
	}
	r := bufio.NewReader(f)
	var partial []byte
	stopping := false
	for {
		line, err := r.ReadBytes('\n')
		partial = append(partial, line...)
		if err == nil {
			fmt.Printf("shipped: %s", partial)
			partial = partial[:0]
			continue
		}
		if !errors.Is(err, io.EOF) {
			fmt.Fprintln(os.Stderr, "logshipper:", err)
			os.Exit(1)
		}
		if stopping {
			return
		}
		select {
		case <-stop:
			stopping = true // one more pass up to the end of the file
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// open waits for the file to exist; nil when asked to stop first.
func open(path string, stop <-chan os.Signal) *os.File {
	for {
		f, err := os.Open(path)
		if err == nil {
			return f
		}
		select {
		case <-stop:
			return nil
		case <-time.After(100 * time.Millisecond):
		}
	}
}
