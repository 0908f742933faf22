vcl 4.1;
# Varnish 7 in front of imgproxy. Install on Debian (README "Behind Varnish"):
#   apt-get install varnish varnish-modules      # varnish-modules ships vmod_xkey
#   imgproxy config --varnish > /etc/varnish/default.vcl && systemctl restart varnish
# and in imgproxy's config, so `imgproxy purge STORE/PATH` empties this cache too:
#   [cache]
#   purge_urls = ["http://127.0.0.1:6081/"]
#
# Renditions are kept for as long as imgproxy's Cache-Control says (cache.cache_control, a
# year with `v=`), then revalidated with imgproxy's ETag (If-None-Match -> 304, no render).
# Each is tagged with its source's Surrogate-Key, so one PURGE drops every rendition of a
# source. Responses say `X-Cache: HIT` or `MISS`.

import std;
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
    if (req.url ~ "^/(healthz|readyz|metrics)(\?|$)") {
        return (pass);
    }
    # imgproxy reads no cookies; without this, Varnish passes every request a browser sends
    # with the site's cookies. (Remove it if an authorize hook of yours reads cookies.)
    unset req.http.Cookie;
    # One object per rendition, whatever spelling of its URL or Host a client sends.
    # - The query: known names, each once, with plain values (every valid value is plain)
    #   are sorted. imgproxy signs the sorted, decoded query (SPEC §3), so the signature
    #   still holds. Any other spelling (%-escapes, `+`, `&&`, unknown or repeated names) is
    #   passed uncached: imgproxy answers it from its own tiers, while each kept here would
    #   be one more object.
    if (req.url ~ "\?" && (
        req.url !~ "^[^?]*\?(bg|blur|crop|dpr|enlarge|fit|flip|fm|fx|fy|g|h|p|pad|pixelate|q|rot|s|sharpen|trim|v|w|wm)=[A-Za-z0-9._~,-]+(&(bg|blur|crop|dpr|enlarge|fit|flip|fm|fx|fy|g|h|p|pad|pixelate|q|rot|s|sharpen|trim|v|w|wm)=[A-Za-z0-9._~,-]+)*$"
        || req.url ~ "[?&](bg|blur|crop|dpr|enlarge|fit|flip|fm|fx|fy|g|h|p|pad|pixelate|q|rot|s|sharpen|trim|v|w|wm)=[^&]*&(.*&)?\1=")) {
        return (pass);
    }
    set req.url = std.querysort(req.url);
    # - Accept: fm=auto renditions vary on it (imgproxy's Vary), which Varnish compares as
    #   sent, so each made-up value would be one more object. imgproxy only asks whether
    #   image/avif and image/webp are named with a q above 0 (imgproxy/negotiation.py: the
    #   items complete within the first 1024 characters; `q=0`, `Q = 0.00`, `q=.0` exclude),
    #   so the header becomes the one of four values that gets the same answer: a client
    #   that refused a format never gets it from here. (Whether AVIF also needs webp named
    #   depends on imgproxy's Pillow, hence four and not three.)
    std.collect(req.http.Accept, ", ");
    if (req.http.Accept ~ "^[\s\S]{1025}") {
        set req.http.Accept = regsub(req.http.Accept, "^([\s\S]{0,1023}),[\s\S]*$", "\1");
        if (req.http.Accept ~ "^[\s\S]{1025}") {
            set req.http.Accept = "";
        }
    }
    if (req.http.Accept ~ "(?i)(^|,)[ \t]*image/avif[ \t]*(;(?![ \t]*q[ \t]*=[ \t]*(0+(\.0*)?|\.0+)[ \t]*(;|,|$))[^;,]*)*(,|$)") {
        if (req.http.Accept ~ "(?i)(^|,)[ \t]*image/webp[ \t]*(;(?![ \t]*q[ \t]*=[ \t]*(0+(\.0*)?|\.0+)[ \t]*(;|,|$))[^;,]*)*(,|$)") {
            set req.http.Accept = "image/avif,image/webp";
        } else {
            set req.http.Accept = "image/avif";
        }
    } elsif (req.http.Accept ~ "(?i)(^|,)[ \t]*image/webp[ \t]*(;(?![ \t]*q[ \t]*=[ \t]*(0+(\.0*)?|\.0+)[ \t]*(;|,|$))[^;,]*)*(,|$)") {
        set req.http.Accept = "image/webp";
    } else {
        set req.http.Accept = "*/*";
    }
    # Client hints (SPEC §15.4), snapped as imgproxy snaps them and sent under one name each:
    # a client varying them reaches a short ladder of variants (DPR 1.25..4 in steps of 0.25,
    # widths in steps of 64 px up to 4096: raise that with limits.max_output_dimension), not
    # one variant per raw value. A malformed hint, or DPR 1, is dropped: imgproxy ignores it.
    if (!req.http.Sec-CH-DPR) {
        set req.http.Sec-CH-DPR = req.http.DPR;
    }
    unset req.http.DPR;
    set req.http.Sec-CH-DPR = regsuball(req.http.Sec-CH-DPR, "^[ \t]+|[ \t]+$", "");
    if (req.http.Sec-CH-DPR !~ "^[0-9]{1,3}(\.[0-9]{1,8})?$"
        || std.real(req.http.Sec-CH-DPR, 1.0) < 1.125) {
        unset req.http.Sec-CH-DPR;
    } elsif (std.real(req.http.Sec-CH-DPR, 1.0) >= 4.0) {
        set req.http.Sec-CH-DPR = "4";
    } else {
        set req.http.Sec-CH-DPR = std.round(std.real(req.http.Sec-CH-DPR, 1.0) * 4) / 4;
    }
    if (!req.http.Sec-CH-Width) {
        set req.http.Sec-CH-Width = req.http.Width;
    }
    unset req.http.Width;
    set req.http.Sec-CH-Width = regsuball(req.http.Sec-CH-Width, "^[ \t]+|[ \t]+$", "");
    if (req.http.Sec-CH-Width !~ "^[0-9]{1,9}$") {
        unset req.http.Sec-CH-Width;
    } elsif (std.integer(req.http.Sec-CH-Width, 1) > 4032) {
        set req.http.Sec-CH-Width = "4096";
    } elsif (std.integer(req.http.Sec-CH-Width, 1) < 1) {
        set req.http.Sec-CH-Width = "64";
    } else {
        set req.http.Sec-CH-Width = (std.integer(req.http.Sec-CH-Width, 1) + 63) / 64 * 64;
    }
    # The rest is Varnish's built-in logic: GET and HEAD are looked up, with Authorization
    # they are passed, other methods go to imgproxy (which answers 405).
}

# - Host: imgproxy never reads it (the path alone names the store), so it is no part of the
#   key: one object for every name this cache is reached by. (Hash it too if an authorize
#   hook of yours reads it.)
sub vcl_hash {
    hash_data(req.url);
    return (lookup);
}

sub vcl_backend_response {
    # vmod_xkey indexes the `xkey` header: the source's id, shared by all its renditions.
    if (beresp.http.Surrogate-Key) {
        set beresp.http.xkey = beresp.http.Surrogate-Key;
    }
    # Once stale, a rendition is served for up to an hour while one background fetch
    # revalidates it; it is kept a week past that so a fetch can still revalidate it (a 304
    # from imgproxy costs no render). fm=auto renditions vary by Accept: imgproxy says so in
    # Vary, which Varnish honours over the four values vcl_recv leaves.
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
