// addrsel-resolve-go: net.DefaultResolver.LookupIPAddr(NAME), which sorts with Go's own
// RFC 6724 code (GODEBUG=netdns=go) or returns the C library's order (netdns=cgo), one
// address per line. LookupHost would not sort hosts-file answers.
package main

import (
	"context"
	"fmt"
	"net"
	"os"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: addrsel-resolve-go NAME")
		os.Exit(2)
	}
	addrs, err := net.DefaultResolver.LookupIPAddr(context.Background(), os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if len(addrs) == 0 {
		// Go 1.19 answers a files-only miss with no addresses and no error.
		fmt.Fprintln(os.Stderr, "no such host")
		os.Exit(1)
	}
	for _, a := range addrs {
		fmt.Println(a.IP.String())
	}
}
