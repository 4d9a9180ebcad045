// A stand-in peer for `npm run bench -- --peer`, not part of chaperone (never built by CI, never
// shipped): a Go OpenID Connect impersonating proxy with kube-oidc-proxy's design and flags, since
// the Go module proxy serves no version of github.com/jetstack/kube-oidc-proxy. The API server's
// own OIDC token authenticator (k8s.io/apiserver, no result cache), then
// net/http/httputil.ReverseProxy over client-go's transport (HTTP/2) with the proxy's service
// account, the person as Impersonate-* headers. No SubjectAccessReview, no audit log.
//
//	cd bench/peer-standin && go build -o /tmp/peers/go-oidc-impersonator .
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/request/bearertoken"
	"k8s.io/apiserver/pkg/server/dynamiccertificates"
	"k8s.io/apiserver/plugin/pkg/authenticator/token/oidc"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

func main() {
	issuer := flag.String("oidc-issuer-url", "", "")
	clientID := flag.String("oidc-client-id", "", "")
	caFile := flag.String("oidc-ca-file", "", "")
	usernameClaim := flag.String("oidc-username-claim", "sub", "")
	groupsClaim := flag.String("oidc-groups-claim", "", "")
	certFile := flag.String("tls-cert-file", "", "")
	keyFile := flag.String("tls-private-key-file", "", "")
	kubeconfig := flag.String("kubeconfig", "", "")
	bindAddress := flag.String("bind-address", "0.0.0.0", "")
	securePort := flag.Int("secure-port", 6443, "")
	readinessPort := flag.Int("readiness-probe-port", 8080, "")
	flag.Parse()

	ca, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	caContent, err := dynamiccertificates.NewStaticCAContent("oidc-ca", ca)
	if err != nil {
		log.Fatal(err)
	}
	empty := ""
	jwt := apiserver.JWTAuthenticator{
		Issuer: apiserver.Issuer{URL: *issuer, Audiences: []string{*clientID}},
		ClaimMappings: apiserver.ClaimMappings{
			Username: apiserver.PrefixedClaimOrExpression{Claim: *usernameClaim, Prefix: &empty},
			Groups:   apiserver.PrefixedClaimOrExpression{Claim: *groupsClaim, Prefix: &empty},
		},
	}
	ctx := context.Background()
	tokens, err := oidc.New(ctx, oidc.Options{JWTAuthenticator: jwt, CAContentProvider: caContent, SupportedSigningAlgs: []string{"RS256"}})
	if err != nil {
		log.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); tokens.HealthCheck() != nil; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			log.Fatalf("OIDC provider not ready: %v", tokens.HealthCheck())
		}
	}
	authn := bearertoken.New(tokens)

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	transport, err := rest.TransportFor(config)
	if err != nil {
		log.Fatal(err)
	}
	upstream, err := url.Parse(config.Host)
	if err != nil {
		log.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:       func(r *httputil.ProxyRequest) { r.SetURL(upstream) },
		Transport:     transport,
		FlushInterval: -1,
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		for name := range req.Header {
			if strings.HasPrefix(strings.ToLower(name), "impersonate-") {
				http.Error(w, "impersonation requests are not allowed", http.StatusForbidden)
				return
			}
		}
		res, ok, err := authn.AuthenticateRequest(req)
		if err != nil || !ok {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		user := res.User
		req = req.Clone(req.Context())
		req.Header.Del("Authorization")
		req.Header.Set("Impersonate-User", user.GetName())
		for _, group := range user.GetGroups() {
			req.Header.Add("Impersonate-Group", group)
		}
		for key, values := range user.GetExtra() {
			for _, value := range values {
				req.Header.Add("Impersonate-Extra-"+url.PathEscape(key), value)
			}
		}
		proxy.ServeHTTP(w, req)
	})
	ready := http.NewServeMux()
	ready.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) })
	go func() {
		log.Fatal(http.ListenAndServe(net.JoinHostPort(*bindAddress, strconv.Itoa(*readinessPort)), ready))
	}()
	listen := net.JoinHostPort(*bindAddress, strconv.Itoa(*securePort))
	server := &http.Server{Addr: listen, Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	log.Printf("serving on %s", listen)
	log.Fatal(server.ListenAndServeTLS(*certFile, *keyFile))
}
