package broker

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzRewrite: whatever headers and URL the agent sends, a request passes
// only with the real key in the binding's header and nowhere else, no
// other credential, and no placeholder left; a refused one never holds the
// key.
func FuzzRewrite(f *testing.F) {
	f.Add("X-Api-Key", placeholder, "Authorization", "", "/v1/messages")
	f.Add("X-Api-Key", "sk-other", "", "", "/")
	f.Add("x-api-key", placeholder, "X-Note", placeholder, "/?q="+placeholder)
	f.Add("X-API-KEY", placeholder, "Api-Key", "k", "/%63g-placeholder-0123456789abcdef")
	f.Fuzz(func(t *testing.T, h1, v1, h2, v2, path string) {
		u, err := url.Parse("https://example.com" + path)
		if err != nil {
			return
		}
		r := &http.Request{URL: u, Header: http.Header{}}
		for _, kv := range [][2]string{{h1, v1}, {h2, v2}} {
			if kv[0] != "" {
				r.Header.Add(kv[0], kv[1])
			}
		}
		why := anthropic.rewrite(r)
		key := 0
		for name, vals := range r.Header {
			for _, v := range vals {
				if strings.Contains(v, realKey) {
					key++
					if name != "X-Api-Key" || v != realKey {
						t.Fatalf("the key in %s: %q", name, v)
					}
				}
				if why == nil && strings.Contains(v, placeholder) {
					t.Fatalf("passed with the placeholder in %s", name)
				}
			}
		}
		if why != nil && key > 0 && !strings.Contains(v1+v2, realKey) {
			t.Fatalf("refused (%s) with the key put in", why.Detail)
		}
		if why == nil {
			if key != 1 {
				t.Fatalf("passed with the key %d times", key)
			}
			for _, h := range credentialHeaders {
				if len(r.Header.Values(h)) > 0 {
					t.Fatalf("passed with a credential in %s", h)
				}
			}
			if inURL(r.URL, placeholder) {
				t.Fatal("passed with the placeholder in the URL")
			}
		}
	})
}
