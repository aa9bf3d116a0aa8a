// echo-server: a goroutine per connection echoes whatever it reads, the
// same loop as bench/greenrt/echo.cc. Listens on 127.0.0.1 (port 0: the
// kernel picks), prints "LISTENING port=N", serves until killed or until
// stdin closes. With -cert/-key it speaks TLS (crypto/tls, defaults).
package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
)

func echoServer(args []string) (map[string]float64, error) {
	fs, workers := newFlags("echo-server")
	certFile := fs.String("cert", "", "PEM certificate (enables TLS)")
	keyFile := fs.String("key", "", "PEM private key")
	parse(fs, workers, args)
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			return nil, err
		}
		listener = tls.NewListener(listener,
			&tls.Config{Certificates: []tls.Certificate{cert}})
	}
	fmt.Printf("LISTENING port=%d\n", listener.Addr().(*net.TCPAddr).Port)
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	for {
		conn, err := listener.Accept()
		if err != nil {
			return nil, err
		}
		go handle(conn)
	}
}

func handle(conn net.Conn) {
	defer conn.Close()
	buffer := make([]byte, 4096)
	for {
		n, err := conn.Read(buffer)
		if n > 0 {
			if _, err := conn.Write(buffer[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
