vcl 4.1;
# Varnish 7 in front of imgproxy. Install on Debian (README "Behind Varnish"):
#   apt-get install varnish varnish-modules      # varnish-modules ships vmod_xkey
#   cp config/varnish.vcl /etc/varnish/default.vcl && systemctl restart varnish
# and in imgproxy's config, so `imgproxy purge STORE/PATH` empties this cache too:
#   [cache]
#   purge_urls = ["http://127.0.0.1:6081/"]
#
# Renditions are kept for as long as imgproxy's Cache-Control says (cache.cache_control, a
# year with `v=`), then revalidated with imgproxy's ETag (If-None-Match -> 304, no render).
# Each is tagged with its source's Surrogate-Key, so one PURGE drops every rendition of a
# source. Responses say `X-Cache: HIT` or `MISS`.

import xkey;

backend imgproxy {
    .host = "127.0.0.1";
    .port = "8080";
}

# Who may PURGE: the hosts that run `imgproxy purge`. Loopback only by default; add the
# addresses of the others, e.g. "10.0.0.0"/8. Anyone else gets 403.
acl purgers {
    "127.0.0.1";
    "::1";
}

# Who may read /metrics (per instance, passed to imgproxy): loopback only by default; add
# your Prometheus' address. Anyone else gets 403.
acl scrapers {
    "127.0.0.1";
    "::1";
}

sub vcl_recv {
    if (req.method == "PURGE") {
        if (client.ip !~ purgers) {
            return (synth(403, "Forbidden"));
        }
        if (!req.http.xkey-purge) {
            return (synth(400, "xkey-purge header required"));
        }
        set req.http.n-gone = xkey.purge(req.http.xkey-purge);
        return (synth(200, "Purged " + req.http.n-gone + " objects"));
    }
    # Never from a client: imgproxy would answer a disk hit with an empty X-Accel-Redirect
    # response (config/nginx.conf's origin server), which this cache would then keep.
    unset req.http.X-Imgproxy-Accel;
    # imgproxy's server decodes the path before it routes: `/%6Detrics` is /metrics too.
    if (req.url ~ "(?i)^/(m|%6d)(e|%65)(t|%74)(r|%72)(i|%69)(c|%63)(s|%73)(\?|$)"
        && client.ip !~ scrapers) {
        return (synth(403, "Forbidden"));
    }
    # Per-instance answers, never cached.
    if (req.url ~ "^/(healthz|metrics)(\?|$)") {
        return (pass);
    }
    # imgproxy reads no cookies; without this, Varnish passes every request a browser sends
    # with the site's cookies. (Remove it if an authorize hook of yours reads cookies.)
    unset req.http.Cookie;
    # The rest is Varnish's built-in logic: GET and HEAD are looked up, with Authorization
    # they are passed, other methods go to imgproxy (which answers 405).
}

sub vcl_backend_response {
    # vmod_xkey indexes the `xkey` header: the source's id, shared by all its renditions.
    if (beresp.http.Surrogate-Key) {
        set beresp.http.xkey = beresp.http.Surrogate-Key;
    }
    # Once stale, a rendition is served for up to an hour while one background fetch
    # revalidates it; it is kept a week past that so a fetch can still revalidate it (a 304
    # from imgproxy costs no render). fm=auto renditions vary by Accept: imgproxy says so in
    # Vary, which Varnish honours (browsers send a handful of Accept values).
    set beresp.grace = 1h;
    set beresp.keep = 7d;
    # Errors are `no-store` and never kept (Varnish's built-in logic, which runs next).
}

sub vcl_deliver {
    unset resp.http.xkey;
    if (obj.hits > 0) {
        set resp.http.X-Cache = "HIT";
    } else {
        set resp.http.X-Cache = "MISS";
    }
}
